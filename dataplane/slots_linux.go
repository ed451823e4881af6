package dataplane

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
)

// Slots number pod interfaces and endpoints densely so that the hot path
// reaches them, and their per-CPU counters, through arrays. Slot 0 is never
// used. Sizes must match MAX_IFACES and MAX_ENDPOINTS in bpf/types.h.
const (
	maxIfaceSlots    = 16384
	maxEndpointSlots = 4096
)

// slotTable allocates slots. It is guarded by the Dataplane's mu.
type slotTable struct {
	max  uint32
	used map[uint32]bool
}

func newSlotTable(max uint32) *slotTable { return &slotTable{max: max, used: map[uint32]bool{}} }

func (t *slotTable) alloc() (uint32, error) {
	for s := uint32(1); s < t.max; s++ {
		if !t.used[s] {
			t.used[s] = true
			return s, nil
		}
	}
	return 0, fmt.Errorf("all %d slots in use", t.max-1)
}

func (t *slotTable) free(s uint32) { delete(t.used, s) }

// endpointSlot returns the slot of an endpoint, allocating one (and
// programming its address, so that packets from it are accepted) when it
// has none.
func (d *Dataplane) endpointSlot(addr netip.Addr) (uint32, error) {
	if s, ok := d.epSlots[addr]; ok {
		return s, nil
	}
	a, err := ipv4(addr)
	if err != nil {
		return 0, err
	}
	s, err := d.epTable.alloc()
	if err != nil {
		return 0, fmt.Errorf("add endpoint %v: %w", addr, err)
	}
	if err := d.initEndpointSlot(s, a); err != nil {
		d.epTable.free(s)
		return 0, fmt.Errorf("add endpoint %v: %w", addr, err)
	}
	d.epSlots[addr] = s
	return s, nil
}

// initEndpointSlot resets a new slot's counters and allow set and makes
// the address it now stands for accepted.
func (d *Dataplane) initEndpointSlot(s uint32, a [4]byte) error {
	n, err := possibleCPUs()
	if err != nil {
		return err
	}
	if err := d.maps.EndpointCounters.Put(s, make([]forwarderEndpointStats, n)); err != nil {
		return fmt.Errorf("reset counters: %w", err)
	}
	// A new endpoint may send into no VRF until it is allowed to.
	if err := d.clearEndpointVRFs(s); err != nil {
		return err
	}
	if err := d.maps.Endpoints.Put(s, &forwarderEndpoint{Addr: be32(a)}); err != nil {
		return err
	}
	return d.indexEndpoint(a, s)
}

// releaseEndpoint frees an endpoint's slot once neither the configuration
// nor any next-hop group uses it.
func (d *Dataplane) releaseEndpoint(addr netip.Addr) error {
	s, ok := d.epSlots[addr]
	if !ok || d.epRefs[s] > 0 {
		return nil
	}
	if _, configured := d.endpoints[addr]; configured {
		return nil
	}
	var old forwarderEndpoint
	if err := d.maps.Endpoints.Lookup(s, &old); err == nil && old.Mac != ([6]byte{}) {
		if err := d.unindexMAC(old.Mac); err != nil {
			return fmt.Errorf("release endpoint %v: %w", addr, err)
		}
	}
	if err := d.unindexEndpoint(addr.As4()); err != nil {
		return fmt.Errorf("release endpoint %v: %w", addr, err)
	}
	if err := d.maps.Endpoints.Put(s, &forwarderEndpoint{}); err != nil {
		return fmt.Errorf("clear endpoint %v: %w", addr, err)
	}
	if err := d.clearEndpointVRFs(s); err != nil {
		return fmt.Errorf("release endpoint %v: %w", addr, err)
	}
	delete(d.epSlots, addr)
	delete(d.resolved, addr)
	delete(d.withdrawn, addr)
	d.epTable.free(s)
	return nil
}

// loadEndpoints rebuilds the endpoint slots from pinned state and
// remembers the MACs a previous loader resolved, so that re-applying an
// endpoint without a MAC keeps forwarding to it.
func (d *Dataplane) loadEndpoints() error {
	var k, s uint32
	it := d.maps.EndpointIndex.Iterate()
	for it.Next(&k, &s) {
		var a [4]byte
		binary.NativeEndian.PutUint32(a[:], k)
		addr := netip.AddrFrom4(a)
		d.epSlots[addr] = s
		d.epTable.used[s] = true
		var v forwarderEndpoint
		if err := d.maps.Endpoints.Lookup(s, &v); err == nil && v.Mac != ([6]byte{}) {
			mac := v.Mac
			d.resolved[addr] = net.HardwareAddr(mac[:])
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read endpoints: %w", err)
	}
	return nil
}

// loadInterfaces rebuilds the interface slots from pinned state.
func (d *Dataplane) loadInterfaces() error {
	var k uint32
	var v forwarderIface
	it := d.maps.Ifaces.Iterate()
	for it.Next(&k, &v) {
		d.ifSlots[int(k)] = v.Slot
		d.ifTable.used[v.Slot] = true
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read interfaces: %w", err)
	}
	return nil
}
