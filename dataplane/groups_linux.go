package dataplane

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/cilium/ebpf"
)

// groupTable deduplicates ECMP sets: every route with the same set of next
// hops shares one entry of the groups map.
type groupTable struct {
	ids    map[string]uint32 // canonical set → id
	keys   map[uint32]string // id → canonical set
	refs   map[uint32]int    // id → routes using it
	values map[uint32]forwarderGroup
}

func newGroupTable() *groupTable {
	return &groupTable{ids: map[string]uint32{}, keys: map[uint32]string{}, refs: map[uint32]int{}, values: map[uint32]forwarderGroup{}}
}

// canonical sorts and deduplicates an ECMP set, so that equal sets share a
// group and flows hash the same way across restarts, and returns its key in
// the group table.
func canonical(nhs []NextHop) ([]NextHop, string, error) {
	if len(nhs) == 0 || len(nhs) > MaxNextHops {
		return nil, "", fmt.Errorf("%d next hops (1 to %d): %w", len(nhs), MaxNextHops, ErrTooManyNextHops)
	}
	sorted := slices.Clone(nhs)
	slices.SortFunc(sorted, func(a, b NextHop) int {
		if c := a.Endpoint.Compare(b.Endpoint); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Label, b.Label); c != 0 {
			return c
		}
		return cmp.Compare(a.Encap, b.Encap)
	})
	sorted = slices.Compact(sorted)
	key := make([]byte, 0, 9*len(sorted))
	for _, nh := range sorted {
		a, err := ipv4(nh.Endpoint)
		if err != nil {
			return nil, "", fmt.Errorf("next hop endpoint: %w", err)
		}
		if nh.Label >= 1<<20 {
			return nil, "", fmt.Errorf("next hop label %d: more than 20 bits", nh.Label)
		}
		if nh.Encap != EncapMPLSoUDP && nh.Encap != EncapMPLSoMPLS {
			return nil, "", fmt.Errorf("next hop encap %v: unsupported", nh.Encap)
		}
		key = append(key, a[:]...)
		key = binary.BigEndian.AppendUint32(key, nh.Label)
		key = append(key, byte(nh.Encap))
	}
	return sorted, string(key), nil
}

// encodeGroup builds the map value of a canonical ECMP set, giving every
// endpoint a slot.
func (d *Dataplane) encodeGroup(sorted []NextHop) (forwarderGroup, error) {
	var g forwarderGroup
	g.Count = uint32(len(sorted))
	for i, nh := range sorted {
		slot, err := d.endpointSlot(nh.Endpoint)
		if err != nil {
			return g, fmt.Errorf("next hop: %w", err)
		}
		g.Nexthops[i] = forwarderNexthop{Endpoint: slot, Label: nh.Label | uint32(nh.Encap)<<24}
	}
	return g, nil
}

// decodeGroupKey rebuilds the table key of a pinned group.
func (d *Dataplane) decodeGroupKey(g *forwarderGroup) (string, bool) {
	addrs := make(map[uint32]netip.Addr, len(d.epSlots))
	for a, s := range d.epSlots {
		addrs[s] = a
	}
	var nhs []NextHop
	for _, nh := range g.Nexthops[:g.Count] {
		a, ok := addrs[nh.Endpoint]
		if !ok {
			return "", false
		}
		nhs = append(nhs, NextHop{Endpoint: a, Label: nh.Label & 0xfffff, Encap: Encap(nh.Label >> 24)})
	}
	_, key, err := canonical(nhs)
	return key, err == nil
}

// acquireGroup returns the id of the group for nhs, writing it to the map
// when it is new.
func (d *Dataplane) acquireGroup(nhs []NextHop) (uint32, error) {
	sorted, key, err := canonical(nhs)
	if err != nil {
		return 0, err
	}
	t := d.groups
	if id, ok := t.ids[key]; ok {
		t.refs[id]++
		return id, nil
	}
	g, err := d.encodeGroup(sorted)
	if err != nil {
		return 0, err
	}
	id := uint32(0)
	for i := uint32(1); i < maxGroups; i++ {
		if _, used := t.keys[i]; !used {
			id = i
			break
		}
	}
	if id == 0 {
		return 0, fmt.Errorf("add next-hop group: all %d groups in use", maxGroups-1)
	}
	if err := d.maps.Groups.Put(id, &g); err != nil {
		return 0, fmt.Errorf("add next-hop group %d: %w", id, err)
	}
	t.ids[key], t.keys[id], t.refs[id], t.values[id] = id, key, 1, g
	for _, nh := range g.Nexthops[:g.Count] {
		d.epRefs[nh.Endpoint]++
	}
	return id, nil
}

func (d *Dataplane) releaseGroup(id uint32) error {
	t := d.groups
	if t.refs[id]--; t.refs[id] > 0 {
		return nil
	}
	g := t.values[id]
	delete(t.ids, t.keys[id])
	delete(t.keys, id)
	delete(t.refs, id)
	delete(t.values, id)
	if err := d.maps.Groups.Put(id, &forwarderGroup{}); err != nil {
		return fmt.Errorf("clear next-hop group %d: %w", id, err)
	}
	for _, nh := range g.Nexthops[:g.Count] {
		if d.epRefs[nh.Endpoint]--; d.epRefs[nh.Endpoint] > 0 {
			continue
		}
		delete(d.epRefs, nh.Endpoint)
		for addr, s := range d.epSlots {
			if s == nh.Endpoint {
				if err := d.releaseEndpoint(addr); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (d *Dataplane) loadGroups() error {
	// The array has an entry for every id, used or not: read it in batches
	// (one system call for 1,024 entries, where iterating takes two for
	// each; 16,384 entries took 60 ms of every Open).
	const batch = 1024
	ids := make([]uint32, batch)
	groups := make([]forwarderGroup, batch)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := d.maps.Groups.BatchLookup(&cursor, ids, groups, nil)
		for i := range n {
			d.adoptGroup(ids[i], &groups[i])
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil // the end of the array
		}
		if err != nil {
			return fmt.Errorf("read next-hop groups: %w", err)
		}
	}
}

// adoptGroup takes a pinned next-hop group into the group table.
func (d *Dataplane) adoptGroup(id uint32, g *forwarderGroup) {
	if g.Count == 0 || g.Count > MaxNextHops {
		return
	}
	key, ok := d.decodeGroupKey(g)
	if !ok {
		d.log.Warn("pinned next-hop group names an unknown endpoint", "group", id)
		return
	}
	d.groups.ids[key] = id
	d.groups.keys[id] = key
	d.groups.values[id] = *g
	for _, nh := range g.Nexthops[:g.Count] {
		d.epRefs[nh.Endpoint]++
	}
}
