package dataplane

import (
	"fmt"
	"net/netip"
	"sort"
)

// The endpoint × VRF allow set (endpoint_vrfs in bpf/maps.h): a
// decapsulated packet is delivered only when the VRF of its label has
// routes through the endpoint that sent it. One bit per (endpoint slot,
// VRF id), 64 VRFs per word, so the check on the hot path is one inlined
// array access.

// endpointVRFWords must match ENDPOINT_VRF_WORDS in bpf/types.h.
const endpointVRFWords = maxVRFs / 64

func endpointVRFWord(slot, vrf uint32) (uint32, uint64) {
	return slot*endpointVRFWords + vrf/64, 1 << (vrf % 64)
}

// AllowEndpoint lets the endpoint at addr send packets into vrf. The
// endpoint must have been added (SetEndpoint or a route's next hop); the
// VRF is created if needed.
func (d *Dataplane) AllowEndpoint(addr netip.Addr, vrf string) error {
	return d.setEndpointVRF(addr, vrf, true)
}

// DenyEndpoint stops the endpoint at addr from sending packets into vrf;
// unknown endpoints and VRFs are ignored.
func (d *Dataplane) DenyEndpoint(addr netip.Addr, vrf string) error {
	return d.setEndpointVRF(addr, vrf, false)
}

func (d *Dataplane) setEndpointVRF(addr netip.Addr, vrf string, allow bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	what := "deny"
	if allow {
		what = "allow"
	}
	slot, ok := d.epSlots[addr]
	if !ok {
		if !allow {
			return nil
		}
		return fmt.Errorf("%s endpoint %v in %q: %w", what, addr, vrf, ErrUnknownEndpoint)
	}
	id, err := d.vrfID(vrf, allow)
	if err != nil {
		if !allow {
			return nil
		}
		return fmt.Errorf("%s endpoint %v in %q: %w", what, addr, vrf, err)
	}
	i, bit := endpointVRFWord(slot, id)
	var w uint64
	if err := d.maps.EndpointVrfs.Lookup(i, &w); err != nil {
		return fmt.Errorf("%s endpoint %v in %q: %w", what, addr, vrf, err)
	}
	nw := w &^ bit
	if allow {
		nw = w | bit
	}
	if nw == w {
		return nil
	}
	if err := d.maps.EndpointVrfs.Put(i, nw); err != nil {
		return fmt.Errorf("%s endpoint %v in %q: %w", what, addr, vrf, err)
	}
	return nil
}

// clearEndpointVRFs empties the allow set of a slot, when the slot is
// given to an endpoint or taken back.
func (d *Dataplane) clearEndpointVRFs(slot uint32) error {
	keys := make([]uint32, endpointVRFWords)
	vals := make([]uint64, endpointVRFWords)
	for i := range keys {
		keys[i] = slot*endpointVRFWords + uint32(i)
	}
	if _, err := batchUpdate(d.maps.EndpointVrfs, keys, vals); err != nil {
		return fmt.Errorf("clear vrfs of endpoint slot %d: %w", slot, err)
	}
	return nil
}

// EndpointVRFs returns the VRFs each endpoint may send into, sorted.
func (d *Dataplane) EndpointVRFs() (map[netip.Addr][]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	names := make(map[uint32]string, len(d.vrfs))
	for n, id := range d.vrfs {
		names[id] = n
	}
	out := map[netip.Addr][]string{}
	for addr, slot := range d.epSlots {
		for i := range uint32(endpointVRFWords) {
			var w uint64
			if err := d.maps.EndpointVrfs.Lookup(slot*endpointVRFWords+i, &w); err != nil {
				return nil, fmt.Errorf("read vrfs of endpoint %v: %w", addr, err)
			}
			for b := range uint32(64) {
				if w&(1<<b) == 0 {
					continue
				}
				if n, ok := names[i*64+b]; ok {
					out[addr] = append(out[addr], n)
				}
			}
		}
		sort.Strings(out[addr])
	}
	return out, nil
}
