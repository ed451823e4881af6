package dataplane

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// labelNoServices must match LABEL_F_NO_SERVICES in bpf/types.h: the
// label's VRF has no service, so decapsulation skips the flow hints.
const labelNoServices = 1

// serviceVRFs returns the VRFs that have at least one service.
func (st *serviceTable) serviceVRFs() map[uint32]bool {
	out := make(map[uint32]bool, len(st.perVRF))
	for v := range st.perVRF {
		out[v] = true
	}
	return out
}

// labelFlags returns the flags of a label into vrf. d.mu is held.
func (d *Dataplane) labelFlags(vrf uint32) (uint8, error) {
	st, err := d.services()
	if err != nil {
		return 0, err
	}
	if st.perVRF[vrf] > 0 {
		return 0, nil
	}
	return labelNoServices, nil
}

// relabelServiceVRFs brings the no-services flag of every label into one
// of vrfs (VRF → whether it has services now) up to date, also labels an
// earlier process left behind. A VRF that gains its first service is
// relabelled before the service is written, one that loses its last after
// it is gone, so that no packet to a service skips the flow table.
// d.mu is held.
func (d *Dataplane) relabelServiceVRFs(vrfs map[uint32]bool) error {
	if len(vrfs) == 0 {
		return nil
	}
	const batch = 1 << 16
	keys := make([]uint32, batch)
	vals := make([]forwarderLabelTarget, batch)
	var change []uint32
	var changed []forwarderLabelTarget
	var cursor ebpf.MapBatchCursor
	for {
		n, err := d.maps.Labels.BatchLookup(&cursor, keys, vals, nil)
		for i := range n {
			has, ok := vrfs[vals[i].Vrf]
			if !ok || vals[i].Kind == 0 {
				continue
			}
			v := vals[i]
			if has {
				v.Flags &^= labelNoServices
			} else {
				v.Flags |= labelNoServices
			}
			if v != vals[i] {
				change = append(change, keys[i])
				changed = append(changed, v)
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			break
		}
		if err != nil {
			return fmt.Errorf("relabel service vrfs: read labels: %w", err)
		}
	}
	if len(change) == 0 {
		return nil
	}
	if _, err := d.maps.Labels.BatchUpdate(change, changed, nil); err != nil {
		return fmt.Errorf("relabel service vrfs: write labels: %w", err)
	}
	return nil
}

// serviceVRFChanges returns the VRFs whose having services differs
// between before and after, as relabelServiceVRFs takes them.
func serviceVRFChanges(before, after map[uint32]bool) map[uint32]bool {
	out := map[uint32]bool{}
	for v := range after {
		if !before[v] {
			out[v] = true
		}
	}
	for v := range before {
		if !after[v] {
			out[v] = false
		}
	}
	return out
}
