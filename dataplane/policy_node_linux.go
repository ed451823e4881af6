package dataplane

import "fmt"

// InterfaceNodePassed returns the packets the pod interface ifindex sent
// to its own node's stack past its egress policy (bpf/policy_node.h: the
// node may always reach its pods), summed over CPUs.
func (d *Dataplane) InterfaceNodePassed(ifindex int) (uint64, error) {
	d.mu.Lock()
	slot, err := d.ifaceSlot(ifindex)
	d.mu.Unlock()
	if err != nil {
		return 0, err
	}
	var per []uint64
	if err := d.maps.PolNodePassed.Lookup(slot, &per); err != nil {
		return 0, fmt.Errorf("read node counters of interface %d: %w", ifindex, err)
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	return n, nil
}

// resetNodePassed zeroes the node counter of a newly allocated interface
// slot (n CPUs): a reused slot starts without the previous pod's.
func (d *Dataplane) resetNodePassed(slot uint32, n int) error {
	if err := d.maps.PolNodePassed.Put(slot, make([]uint64, n)); err != nil {
		return fmt.Errorf("reset node counters of slot %d: %w", slot, err)
	}
	return nil
}
