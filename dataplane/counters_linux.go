package dataplane

import (
	"fmt"
	"net/netip"
)

// InterfaceCounters returns a pod interface's counters summed over CPUs.
// Its drops are the forwarder's (counted by reason in the VRF as well)
// plus what the interface's policy refused: egress as RxDrops, ingress as
// TxDrops.
func (d *Dataplane) InterfaceCounters(ifindex int) (InterfaceCounters, error) {
	d.mu.Lock()
	slot, err := d.ifaceSlot(ifindex)
	d.mu.Unlock()
	if err != nil {
		return InterfaceCounters{}, fmt.Errorf("read counters: %w", err)
	}
	var per []forwarderIfaceStats
	if err := d.maps.IfaceCounters.Lookup(slot, &per); err != nil {
		return InterfaceCounters{}, fmt.Errorf("read counters of interface %d: %w", ifindex, err)
	}
	var c InterfaceCounters
	for _, p := range per {
		c.RxPackets += p.RxPackets
		c.RxBytes += p.RxBytes
		c.TxPackets += p.TxPackets
		c.TxBytes += p.TxBytes
		c.RxDrops += p.RxDrops
		c.TxDrops += p.TxDrops
	}
	denied, err := sumDenied(d.maps.PolIfaceDenied, slot)
	if err != nil {
		return InterfaceCounters{}, fmt.Errorf("read counters of interface %d: %w", ifindex, err)
	}
	c.RxDrops += denied.Egress
	c.TxDrops += denied.Ingress
	return c, nil
}

// EndpointCounters returns the counters of a remote endpoint.
func (d *Dataplane) EndpointCounters(addr netip.Addr) (EndpointCounters, error) {
	d.mu.Lock()
	slot, ok := d.epSlots[addr]
	d.mu.Unlock()
	if !ok {
		return EndpointCounters{}, fmt.Errorf("read counters of endpoint %v: %w", addr, ErrUnknownEndpoint)
	}
	var per []forwarderEndpointStats
	if err := d.maps.EndpointCounters.Lookup(slot, &per); err != nil {
		return EndpointCounters{}, fmt.Errorf("read counters of endpoint %v: %w", addr, err)
	}
	var c EndpointCounters
	for _, p := range per {
		c.TxPackets += p.TxPackets
		c.TxBytes += p.TxBytes
		c.RxPackets += p.RxPackets
		c.RxBytes += p.RxBytes
	}
	return c, nil
}

// Drops returns a VRF's drop counters. The empty name reads the drops that
// happened before a VRF was known (unknown endpoint, unknown label,
// malformed outer headers).
func (d *Dataplane) Drops(vrf string) (DropCounters, error) {
	id := uint32(0)
	if vrf != "" {
		d.mu.Lock()
		var err error
		id, err = d.vrfID(vrf, false)
		d.mu.Unlock()
		if err != nil {
			return DropCounters{}, fmt.Errorf("read drops: %w", err)
		}
	}
	var per []forwarderDrops
	if err := d.maps.VrfDrops.Lookup(id, &per); err != nil {
		return DropCounters{}, fmt.Errorf("read drops of vrf %q: %w", vrf, err)
	}
	var r [8]uint64
	for _, p := range per {
		for i := range r {
			r[i] += p.Reason[i]
		}
	}
	return DropCounters{
		NoRoute: r[0], TTL: r[1], UnknownLabel: r[2], UnknownEndpoint: r[3],
		Malformed: r[4], MTU: r[5], NoNeighbor: r[6], Error: r[7],
	}, nil
}
