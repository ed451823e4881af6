package dataplane

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/cilium/ebpf"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// Releasing VRF ids. A VRF's id indexes every per-VRF slot of the
// forwarder (drop, NAT, policy and tunnel-reject counters, NAT and policy
// configuration, the endpoint × VRF allow set) and names it in labels and
// flow entries. When a VRF leaves the configuration and nothing leads to it
// any more, its id is given back: every such slot is reset and the id is
// removed from the pinned vrf_ids map, so a VRF that is given the id later
// (or by a restarted process) starts clean.

// ErrVRFInUse is returned by DeleteVRF for a VRF that still has routes,
// pod interfaces or services.
var ErrVRFInUse = errors.New("vrf still in use")

// ReleaseVRFs gives back the ids of the named VRFs that have no routes, pod
// interfaces or services left: their labels, flow entries, floating IP
// bindings, allow-set bits, counters, NAT and policy slots are reset, then
// the id is freed. It returns the names that hold no id any more (those
// released and those that had none); the others keep theirs.
func (d *Dataplane) ReleaseVRFs(names []string) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.releaseVRFs(names)
}

// releaseVRFs is ReleaseVRFs with d.mu held.
func (d *Dataplane) releaseVRFs(names []string) ([]string, error) {
	var gone []string
	ids := map[uint32]string{}
	for _, n := range names {
		if id, ok := d.vrfs[n]; ok {
			ids[id] = n
		} else {
			gone = append(gone, n)
		}
	}
	if err := d.dropVRFsInUse(ids); err != nil || len(ids) == 0 {
		return gone, err
	}
	if err := d.resetVRFSlots(ids); err != nil {
		return gone, err
	}
	for id, name := range ids {
		k, err := vrfKey(name)
		if err != nil {
			return gone, err
		}
		if err := d.vrfIDs.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return gone, fmt.Errorf("release vrf %q: %w", name, err)
		}
		delete(d.vrfNames, id)
		delete(d.vrfs, name)
		gone = append(gone, name)
	}
	return gone, nil
}

// dropVRFsInUse removes from ids the VRFs that routes, pod interfaces or
// services still name. d.mu is held.
func (d *Dataplane) dropVRFsInUse(ids map[uint32]string) error {
	for k := range d.routes {
		if len(ids) == 0 {
			return nil
		}
		delete(ids, k.vrf())
	}
	var slot uint32
	var ifc forwarderIface
	it := d.maps.IfaceSlots.Iterate()
	for it.Next(&slot, &ifc) {
		if ifc.Ifindex != 0 {
			delete(ids, ifc.Vrf)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("release vrfs: read interfaces: %w", err)
	}
	var sk forwarderServiceKey
	sv := make([]byte, d.maps.Services.ValueSize())
	st := d.maps.Services.Iterate()
	for st.Next(&sk, sv) {
		delete(ids, sk.Vrf)
	}
	if err := st.Err(); err != nil {
		return fmt.Errorf("release vrfs: read services: %w", err)
	}
	return nil
}

// resetVRFSlots clears everything of the forwarder that ids index or
// name. d.mu is held.
func (d *Dataplane) resetVRFSlots(ids map[uint32]string) error {
	if err := d.resetVRFLabels(ids); err != nil {
		return err
	}
	// The allow set: a slot not given to an endpoint is cleared when it is.
	for _, slot := range d.epSlots {
		for id := range ids {
			i, bit := endpointVRFWord(slot, id)
			var w uint64
			if err := d.maps.EndpointVrfs.Lookup(i, &w); err != nil {
				return fmt.Errorf("release vrf %q: read allow set: %w", ids[id], err)
			}
			if w&bit == 0 {
				continue
			}
			if err := d.maps.EndpointVrfs.Put(i, w&^bit); err != nil {
				return fmt.Errorf("release vrf %q: clear allow set: %w", ids[id], err)
			}
		}
	}
	if _, err := d.deleteFlows(func(k forwarderFlowKey, _ *forwarderFlow) bool {
		_, ok := ids[k.Vrf]
		return ok
	}); err != nil {
		return fmt.Errorf("release vrfs: %w", err)
	}
	if err := d.resetVRFFloating(ids); err != nil {
		return err
	}
	n, err := possibleCPUs()
	if err != nil {
		return err
	}
	for id, name := range ids {
		errs := []error{
			d.maps.NatVrfs.Put(id, natVRF{}),
			d.maps.PolVrfs.Put(id, polVRF{}),
			d.maps.VrfDrops.Put(id, make([]forwarderDrops, n)),
			d.maps.NatCounters.Put(id, make([]natStats, n)),
			d.maps.PolVrfDenied.Put(id, make([]forwarderPolDenied, n)),
			d.maps.PolTunnelAnswers.Put(id, make([]forwarderPolTunnelAnswers, n)),
		}
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("release vrf %q: reset its slots: %w", name, err)
		}
		if d.pol != nil {
			delete(d.pol.vrfs, id)
		}
	}
	if d.pol != nil {
		// Verdicts cached for the old VRF's flows stop being valid.
		d.pol.gen++
		if err := d.maps.PolGen.Put(uint32(0), d.pol.gen); err != nil {
			return fmt.Errorf("release vrfs: bump policy generation: %w", err)
		}
	}
	return nil
}

// resetVRFLabels points every label that leads into one of ids nowhere,
// also labels an earlier process left behind. d.mu is held.
func (d *Dataplane) resetVRFLabels(ids map[uint32]string) error {
	const batch = 1 << 16
	keys := make([]uint32, batch)
	vals := make([]forwarderLabelTarget, batch)
	var stale []uint32
	var cursor ebpf.MapBatchCursor
	for {
		n, err := d.maps.Labels.BatchLookup(&cursor, keys, vals, nil)
		for i := range n {
			if _, ok := ids[vals[i].Vrf]; ok && vals[i].Kind != 0 {
				stale = append(stale, keys[i])
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			break
		}
		if err != nil {
			return fmt.Errorf("release vrfs: read labels: %w", err)
		}
	}
	for _, label := range stale {
		if err := d.maps.Labels.Put(label, forwarderLabelTarget{}); err != nil {
			return fmt.Errorf("release vrfs: clear label %d: %w", label, err)
		}
	}
	return nil
}

// resetVRFFloating deletes floating IP bindings into or out of ids.
// d.mu is held.
func (d *Dataplane) resetVRFFloating(ids map[uint32]string) error {
	in := func(id uint32) bool { _, ok := ids[id]; return ok }
	var errs []error
	var addr uint32
	var fp floatingPod
	var staleIn []uint32
	it := d.maps.FloatingIn.Iterate()
	for it.Next(&addr, &fp) {
		if in(fp.VRF) || in(fp.Ext) {
			staleIn = append(staleIn, addr)
		}
	}
	errs = append(errs, it.Err())
	var hk forwarderHostKey
	var a uint32
	var staleOut []forwarderHostKey
	ot := d.maps.FloatingOut.Iterate()
	for ot.Next(&hk, &a) {
		if in(hk.Vrf) {
			staleOut = append(staleOut, hk)
		}
	}
	errs = append(errs, ot.Err())
	var fe floatingExt
	var staleVPN []forwarderHostKey
	vt := d.maps.FloatingVpn.Iterate()
	for vt.Next(&hk, &fe) {
		if in(hk.Vrf) || in(fe.Ext) {
			staleVPN = append(staleVPN, hk)
		}
	}
	errs = append(errs, vt.Err())
	for _, k := range staleIn {
		errs = append(errs, ignoreMissing(d.maps.FloatingIn.Delete(k)))
	}
	for _, k := range staleOut {
		errs = append(errs, ignoreMissing(d.maps.FloatingOut.Delete(k)))
	}
	for _, k := range staleVPN {
		errs = append(errs, ignoreMissing(d.maps.FloatingVpn.Delete(k)))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("release vrfs: clear floating ips: %w", err)
	}
	return nil
}

func ignoreMissing(err error) error {
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil
	}
	return err
}

// releaseUnconfigured marks every VRF the dataplane holds an id for and
// intended does not configure to be released (in sync, once nothing the
// reconciler programmed leads to it). r.mu is held.
func (r *Reconciler) releaseUnconfigured(intended *gen.Device) {
	nis := nos.NetworkInstances(intended)
	r.releasing = map[string]struct{}{}
	for name := range r.dp.VRFs() {
		if _, ok := nis[name]; !ok {
			r.releasing[name] = struct{}{}
		}
	}
}

// releaseRemoved marks the network instances a delta changed or removed
// and intended does not configure to be released, and unmarks those it
// configures. r.mu is held.
func (r *Reconciler) releaseRemoved(intended *gen.Device, changed, removed []string) {
	nis := nos.NetworkInstances(intended)
	for _, names := range [][]string{changed, removed} {
		for _, name := range names {
			if _, ok := nis[name]; ok {
				delete(r.releasing, name)
				continue
			}
			if r.releasing == nil {
				r.releasing = map[string]struct{}{}
			}
			r.releasing[name] = struct{}{}
		}
	}
}

// releaseVRFs gives back the ids of the VRFs marked to be released that
// no programmed label, pod interface, route or allow-set entry names any
// more; the others wait for a later pass. r.mu is held.
func (r *Reconciler) releaseVRFs() error {
	if len(r.releasing) == 0 || r.dp == nil {
		return nil
	}
	free := maps.Clone(r.releasing)
	for lt := range r.labels {
		delete(free, lt.VRF)
	}
	for _, p := range r.attached {
		delete(free, p.VRF)
	}
	for ev := range r.allowReady {
		delete(free, ev.VRF)
	}
	for _, routes := range []map[RouteKey][]NextHop{r.fib, r.remote} {
		for k := range routes {
			if len(free) == 0 {
				return nil
			}
			delete(free, k.VRF)
		}
	}
	for k := range r.local {
		delete(free, k.VRF)
	}
	if len(free) == 0 {
		return nil
	}
	gone, err := r.dp.ReleaseVRFs(slices.Sorted(maps.Keys(free)))
	for _, name := range gone {
		delete(r.releasing, name)
	}
	if err != nil {
		return fmt.Errorf("release vrf ids: %w", err)
	}
	return nil
}
