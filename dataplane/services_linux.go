package dataplane

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sync"

	"github.com/cilium/ebpf"
)

// Sizes that must match bpf/flow.h.
const (
	maxServiceSlots = 16384   // MAX_SERVICES
	maxBackendSlots = 1 << 17 // MAX_BACKENDS
	flowHints       = 65536   // FLOW_HINTS
	serviceAffinity = 1       // SERVICE_F_AFFINITY
	serviceExtAll   = 2       // SERVICE_F_EXT_ALL
	hintService     = 1       // HINT_SERVICE
	hintBackend     = 2       // HINT_BACKEND
)

// ErrUnknownService is returned for a service that is not programmed.
var ErrUnknownService = errors.New("unknown service")

// serviceTable is the Go side of the services, backends and flow hints
// maps. It is guarded by the Dataplane's mu and rebuilt from the pinned
// maps the first time a process uses it, so that slots (which flows and
// counters name) survive a restart.
type serviceTable struct {
	ids      *slotAllocator // service slots
	slots    *slotAllocator // backend slots
	services map[ServiceKey]*serviceEntry
	hints    map[uint32][2]int // hint index → services, backends hashing there
	perVRF   map[uint32]int    // VRF → services (labels' LABEL_F_NO_SERVICES)
}

type serviceEntry struct {
	id       uint32
	vrf      uint32
	affinity bool
	extAll   bool
	backends map[BackendKey]uint32 // → slot
	applied  []Backend
}

// services returns the service table, adopting the pinned state on first
// use. d.mu must be held.
func (d *Dataplane) services() (*serviceTable, error) {
	if d.svc != nil {
		return d.svc, nil
	}
	st := &serviceTable{
		ids:      newSlotAllocator(maxServiceSlots),
		slots:    newSlotAllocator(maxBackendSlots),
		services: map[ServiceKey]*serviceEntry{},
		hints:    map[uint32][2]int{},
		perVRF:   map[uint32]int{},
	}
	names := map[uint32]string{}
	for name, id := range d.vrfs {
		names[id] = name
	}
	byID := map[uint32]*serviceEntry{}
	var k forwarderServiceKey
	var v forwarderService
	it := d.maps.Services.Iterate()
	for it.Next(&k, &v) {
		name, ok := names[k.Vrf]
		if !ok {
			continue
		}
		key := ServiceKey{VRF: name, Addr: addrOf(k.Addr), Proto: Protocol(k.Proto), Port: port16(k.Port)}
		e := &serviceEntry{id: v.Id, vrf: k.Vrf, affinity: v.Flags&serviceAffinity != 0, extAll: v.Flags&serviceExtAll != 0, backends: map[BackendKey]uint32{}}
		st.services[key] = e
		st.perVRF[k.Vrf]++
		byID[v.Id] = e
		st.ids.take(v.Id)
		st.hint(k.Vrf, key.Addr, 0, 1)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read pinned services: %w", err)
	}
	var slot uint32
	var be forwarderBackend
	bit := d.maps.Backends.Iterate()
	for bit.Next(&slot, &be) {
		e := byID[be.Service]
		if be.Addr == 0 || e == nil {
			continue
		}
		bk := BackendKey{Addr: addrOf(be.Addr), Port: port16(be.Port)}
		e.backends[bk] = slot
		e.applied = append(e.applied, Backend{BackendKey: bk})
		st.slots.take(slot)
		st.hint(e.vrf, bk.Addr, 1, 1)
	}
	if err := bit.Err(); err != nil {
		return nil, fmt.Errorf("read pinned backends: %w", err)
	}
	if err := d.writeHints(st, nil); err != nil {
		return nil, err
	}
	d.svc = st
	return st, nil
}

// hint changes the count of services (kind 0) or backends (kind 1) whose
// address hashes to (vrf, addr)'s hint and returns the index.
func (st *serviceTable) hint(vrf uint32, addr netip.Addr, kind, delta int) uint32 {
	i := flowHintIndex(vrf, addr)
	c := st.hints[i]
	c[kind] += delta
	if c == [2]int{} {
		delete(st.hints, i)
	} else {
		st.hints[i] = c
	}
	return i
}

// writeHints writes the hint entries at idx, or every entry when idx is nil.
func (d *Dataplane) writeHints(st *serviceTable, idx []uint32) error {
	if idx == nil {
		idx = make([]uint32, flowHints)
		for i := range idx {
			idx[i] = uint32(i)
		}
	}
	vals := make([]uint32, len(idx))
	for n, i := range idx {
		c := st.hints[i]
		if c[0] > 0 {
			vals[n] |= hintService
		}
		if c[1] > 0 {
			vals[n] |= hintBackend
		}
	}
	if len(idx) == 0 {
		return nil
	}
	if _, err := d.maps.FlowHints.BatchUpdate(idx, vals, nil); err != nil {
		return fmt.Errorf("write flow hints: %w", err)
	}
	return nil
}

// flowHintIndex mirrors flow_hint_of in bpf/flow.h.
func flowHintIndex(vrf uint32, addr netip.Addr) uint32 {
	a := be32(addr.As4())
	return mix32(a^(vrf*0x9e3779b9)) & (flowHints - 1)
}

// mix32 mirrors mix32 in bpf/types.h, the finalizer of every hash the
// forwarder computes.
func mix32(h uint32) uint32 {
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}

func addrOf(a uint32) netip.Addr {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], a)
	return netip.AddrFrom4(b)
}

// be16 is a port in network byte order as the forwarder reads it.
func be16(p uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], p)
	return binary.NativeEndian.Uint16(b[:])
}

func port16(p uint16) uint16 { return be16(p) }

func (k ServiceKey) mapKey(vrf uint32) (forwarderServiceKey, error) {
	a, err := ipv4(k.Addr)
	if err != nil {
		return forwarderServiceKey{}, err
	}
	if k.Proto != TCP && k.Proto != UDP {
		return forwarderServiceKey{}, fmt.Errorf("service %v: protocol %d is not TCP or UDP", k, k.Proto)
	}
	if k.Port == 0 {
		return forwarderServiceKey{}, fmt.Errorf("service %v: port 0", k)
	}
	return forwarderServiceKey{Vrf: vrf, Addr: be32(a), Port: be16(k.Port), Proto: uint8(k.Proto)}, nil
}

func (k ServiceKey) String() string {
	p := "tcp"
	if k.Proto == UDP {
		p = "udp"
	}
	return fmt.Sprintf("%s %s %s:%d", k.VRF, p, k.Addr, k.Port)
}

// SetServices programs services, adding them or replacing their backends
// and tables. Flows of a backend that a service no longer has are deleted
// (the client's next packet picks a live backend, which for TCP answers
// with a reset); flows of backends that stay keep their backend, whatever
// the new table says. A service is programmed whole or, on error, not
// changed.
func (d *Dataplane) SetServices(svcs []Service) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	st, err := d.services()
	if err != nil {
		return err
	}
	// Check everything before changing anything, so that bad input leaves
	// nothing half-programmed.
	for _, s := range svcs {
		if _, err := s.mapKey(0); err != nil {
			return err
		}
		for _, b := range s.Backends {
			if _, err := ipv4(b.Addr); err != nil {
				return fmt.Errorf("service %v: backend: %w", s.ServiceKey, err)
			}
			if b.Port == 0 {
				return fmt.Errorf("service %v: backend %v: port 0", s.ServiceKey, b.Addr)
			}
		}
	}
	before := st.serviceVRFs()
	var keys []forwarderServiceKey
	var entries []*serviceEntry
	var beSlots []uint32
	var beVals []forwarderBackend
	var gone []uint32
	hintIdx := []uint32{} // not nil: nil asks writeHints for all 65,536 entries
	for _, s := range svcs {
		vrf, err := d.vrfID(s.VRF, true)
		if err != nil {
			return err
		}
		mk, err := s.mapKey(vrf)
		if err != nil {
			return err
		}
		e := st.services[s.ServiceKey]
		if e == nil {
			id, err := st.ids.alloc()
			if err != nil {
				return fmt.Errorf("add service %v: %w", s.ServiceKey, err)
			}
			e = &serviceEntry{id: id, vrf: vrf, backends: map[BackendKey]uint32{}}
			st.services[s.ServiceKey] = e
			st.perVRF[vrf]++
			hintIdx = append(hintIdx, st.hint(vrf, s.Addr, 0, 1))
		}
		e.affinity, e.extAll = s.Affinity, s.ExternalAll
		want := map[BackendKey]bool{}
		for _, b := range s.Backends {
			a, err := ipv4(b.Addr)
			if err != nil {
				return fmt.Errorf("service %v: backend: %w", s.ServiceKey, err)
			}
			if b.Port == 0 {
				return fmt.Errorf("service %v: backend %v: port 0", s.ServiceKey, b.Addr)
			}
			want[b.BackendKey] = true
			slot, ok := e.backends[b.BackendKey]
			if !ok {
				if slot, err = st.slots.alloc(); err != nil {
					return fmt.Errorf("service %v: add backend %v: %w", s.ServiceKey, b.BackendKey, err)
				}
				e.backends[b.BackendKey] = slot
				hintIdx = append(hintIdx, st.hint(vrf, b.Addr, 1, 1))
			}
			beSlots = append(beSlots, slot)
			beVals = append(beVals, forwarderBackend{Addr: be32(a), Port: be16(b.Port), Service: e.id})
		}
		for bk, slot := range e.backends {
			if !want[bk] {
				gone = append(gone, slot)
				delete(e.backends, bk)
				hintIdx = append(hintIdx, st.hint(vrf, bk.Addr, 1, -1))
			}
		}
		e.applied = append([]Backend(nil), s.Backends...)
		keys = append(keys, mk)
		entries = append(entries, e)
	}
	vals := serviceValues(entries)
	if err := d.relabelServiceVRFs(serviceVRFChanges(before, st.serviceVRFs())); err != nil {
		return err
	}
	if len(beSlots) > 0 {
		if _, err := d.maps.Backends.BatchUpdate(beSlots, beVals, nil); err != nil {
			return fmt.Errorf("write backends: %w", err)
		}
	}
	if len(keys) > 0 {
		if _, err := d.maps.Services.BatchUpdate(keys, vals, nil); err != nil {
			return fmt.Errorf("write services: %w", err)
		}
	}
	if err := d.writeHints(st, hintIdx); err != nil {
		return err
	}
	return d.dropBackends(st, gone)
}

// serviceValues builds the forwarder's entries of services on every CPU:
// the Maglev tables are most of the work of programming many services.
func serviceValues(entries []*serviceEntry) []forwarderService {
	vals := make([]forwarderService, len(entries))
	workers := min(runtime.GOMAXPROCS(0), len(entries))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(entries); i += workers {
				vals[i] = entries[i].value()
			}
		}()
	}
	wg.Wait()
	return vals
}

// value builds the forwarder's entry of a service: its Maglev tables over
// the eligible backends and over the eligible local ones, as slots.
func (e *serviceEntry) value() forwarderService {
	v := forwarderService{Id: e.id}
	if e.affinity {
		v.Flags |= serviceAffinity
	}
	if e.extAll {
		v.Flags |= serviceExtAll
	}
	all := eligible(e.applied)
	var local []Backend
	for _, b := range all {
		if b.Local {
			local = append(local, b)
		}
	}
	fill := func(table *[maglevSize]uint32, bes []Backend) {
		slots := make([]uint32, len(bes))
		for i, b := range bes {
			slots[i] = e.backends[b.BackendKey]
		}
		for i, b := range maglevTable(bes, maglevSize) {
			table[i] = slots[b]
		}
	}
	if len(all) > 0 {
		v.Count = uint32(len(all))
		fill(&v.Table, all)
	}
	switch {
	case len(local) == len(all):
		v.LocalCount, v.Local = v.Count, v.Table
	case len(local) > 0:
		v.LocalCount = uint32(len(local))
		fill(&v.Local, local)
	}
	return v
}

// DeleteServices removes services, their backends and their flows.
func (d *Dataplane) DeleteServices(keys []ServiceKey) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	st, err := d.services()
	if err != nil {
		return err
	}
	before := st.serviceVRFs()
	var gone []uint32
	hintIdx := []uint32{} // not nil: nil asks writeHints for all 65,536 entries
	for _, k := range keys {
		e := st.services[k]
		if e == nil {
			continue
		}
		mk, err := k.mapKey(e.vrf)
		if err != nil {
			return err
		}
		if err := d.maps.Services.Delete(&mk); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete service %v: %w", k, err)
		}
		for bk, slot := range e.backends {
			gone = append(gone, slot)
			hintIdx = append(hintIdx, st.hint(e.vrf, bk.Addr, 1, -1))
		}
		hintIdx = append(hintIdx, st.hint(e.vrf, k.Addr, 0, -1))
		delete(st.services, k)
		if st.perVRF[e.vrf]--; st.perVRF[e.vrf] <= 0 {
			delete(st.perVRF, e.vrf)
		}
		if err := d.resetServiceCounters(e.id); err != nil {
			return err
		}
		st.ids.release(e.id)
	}
	if err := d.writeHints(st, hintIdx); err != nil {
		return err
	}
	if err := d.dropBackends(st, gone); err != nil {
		return err
	}
	return d.relabelServiceVRFs(serviceVRFChanges(before, st.serviceVRFs()))
}

// dropBackends deletes the flows of backends that are no longer in their
// service's tables, then clears and frees their slots.
func (d *Dataplane) dropBackends(st *serviceTable, slots []uint32) error {
	if len(slots) == 0 {
		return nil
	}
	set := map[uint32]bool{}
	for _, s := range slots {
		set[s] = true
	}
	if _, err := d.deleteFlows(func(k forwarderFlowKey, f *forwarderFlow) bool { return set[f.Backend] }); err != nil {
		return err
	}
	n, err := possibleCPUs()
	if err != nil {
		return err
	}
	zero := make([]forwarderSvcStats, n)
	for _, s := range slots {
		if err := d.maps.Backends.Put(s, forwarderBackend{}); err != nil {
			return fmt.Errorf("clear backend slot %d: %w", s, err)
		}
		if err := d.maps.BackendCounters.Put(s, zero); err != nil {
			return fmt.Errorf("reset counters of backend slot %d: %w", s, err)
		}
		st.slots.release(s)
	}
	return nil
}

func (d *Dataplane) resetServiceCounters(id uint32) error {
	n, err := possibleCPUs()
	if err != nil {
		return err
	}
	if err := d.maps.ServiceCounters.Put(id, make([]forwarderSvcStats, n)); err != nil {
		return fmt.Errorf("reset counters of service slot %d: %w", id, err)
	}
	return nil
}

// ServiceKeys lists the programmed services.
func (d *Dataplane) ServiceKeys() ([]ServiceKey, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st, err := d.services()
	if err != nil {
		return nil, err
	}
	out := make([]ServiceKey, 0, len(st.services))
	for k := range st.services {
		out = append(out, k)
	}
	return out, nil
}

// ServiceCounters are packets and bytes translated (both directions) and
// flows created, summed over CPUs.
type ServiceCounters struct {
	Packets, Bytes, Flows uint64
}

// ServiceStats returns the counters of a service and of each of its
// backends.
func (d *Dataplane) ServiceStats(k ServiceKey) (ServiceCounters, map[BackendKey]ServiceCounters, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st, err := d.services()
	if err != nil {
		return ServiceCounters{}, nil, err
	}
	e := st.services[k]
	if e == nil {
		return ServiceCounters{}, nil, fmt.Errorf("%v: %w", k, ErrUnknownService)
	}
	total, err := readSvcStats(d.maps.ServiceCounters, e.id)
	if err != nil {
		return total, nil, err
	}
	per := make(map[BackendKey]ServiceCounters, len(e.backends))
	for bk, slot := range e.backends {
		if per[bk], err = readSvcStats(d.maps.BackendCounters, slot); err != nil {
			return total, nil, err
		}
	}
	return total, per, nil
}

func readSvcStats(m *ebpf.Map, slot uint32) (ServiceCounters, error) {
	var per []forwarderSvcStats
	if err := m.Lookup(slot, &per); err != nil {
		return ServiceCounters{}, fmt.Errorf("read counters of slot %d: %w", slot, err)
	}
	var c ServiceCounters
	for _, s := range per {
		c.Packets += s.Packets
		c.Bytes += s.Bytes
		c.Flows += s.Flows
	}
	return c, nil
}

// slotAllocator hands out slots 1..max-1 in constant time: never-used
// slots from a cursor, then freed ones. Services and backends come in
// the tens of thousands, where a scan for a free slot would be quadratic.
type slotAllocator struct {
	max  uint32
	next uint32          // lowest slot never handed out
	free []uint32        // freed slots
	used map[uint32]bool // slots in use
}

func newSlotAllocator(max uint32) *slotAllocator {
	return &slotAllocator{max: max, next: 1, used: map[uint32]bool{}}
}

func (a *slotAllocator) alloc() (uint32, error) {
	for len(a.free) > 0 {
		s := a.free[len(a.free)-1]
		a.free = a.free[:len(a.free)-1]
		if !a.used[s] {
			a.used[s] = true
			return s, nil
		}
	}
	for a.next < a.max {
		s := a.next
		a.next++
		if !a.used[s] {
			a.used[s] = true
			return s, nil
		}
	}
	return 0, fmt.Errorf("all %d slots in use", a.max-1)
}

// take marks a slot adopted from pinned state as used.
func (a *slotAllocator) take(s uint32) { a.used[s] = true }

func (a *slotAllocator) release(s uint32) {
	if a.used[s] {
		delete(a.used, s)
		a.free = append(a.free, s)
	}
}
