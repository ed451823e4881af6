package dataplane

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net/netip"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Sizes that must match bpf/types.h.
const (
	maxVRFs    = 16384
	maxGroups  = 16384
	vrfNameLen = 64

	routeLocal  = 1
	routeRemote = 2
)

// routeKey is the Go-side key of an installed route, packed into one word
// (a million of them are hashed per batch): vrf<<40 | bits<<32 | address.
type routeKey uint64

func makeRouteKey(vrf uint32, addr [4]byte, bits uint8) routeKey {
	return routeKey(uint64(vrf)<<40 | uint64(bits)<<32 | uint64(binary.BigEndian.Uint32(addr[:])))
}

func (k routeKey) vrf() uint32 { return uint32(k >> 40) }
func (k routeKey) bits() uint8 { return uint8(k >> 32) }
func (k routeKey) addr() [4]byte {
	var a [4]byte
	binary.BigEndian.PutUint32(a[:], uint32(k))
	return a
}

// wire returns v as the C side stores a network-order field: the uint32
// whose in-memory bytes are v in big endian.
func wire(v uint32) uint32 {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return binary.NativeEndian.Uint32(b[:])
}

func (k routeKey) bpf() forwarderRouteKey {
	return forwarderRouteKey{Prefixlen: 32 + uint32(k.bits()), Vrf: wire(k.vrf()), Addr: wire(uint32(k))}
}

func (k routeKey) host() forwarderHostKey {
	return forwarderHostKey{Vrf: k.vrf(), Addr: wire(uint32(k))}
}

func routeKeyFromHost(k forwarderHostKey) routeKey {
	return routeKey(uint64(k.Vrf)<<40 | 32<<32 | uint64(wire(k.Addr)))
}

// routeEntry is the Go-side record of an installed route.
type routeEntry struct {
	gid  uint32 // next-hop group, 0 for a local route
	host bool   // in host_routes rather than the trie
}

func routeKeyFromBPF(k forwarderRouteKey) routeKey {
	return routeKey(uint64(wire(k.Vrf))<<40 | uint64(k.Prefixlen-32)<<32 | uint64(wire(k.Addr)))
}

// be32 returns the uint32 whose in-memory bytes are a in network order, the
// way the C side stores addresses.
func be32(a [4]byte) uint32 { return binary.NativeEndian.Uint32(a[:]) }

func vrfKey(name string) ([vrfNameLen]byte, error) {
	var k [vrfNameLen]byte
	if name == "" || len(name) >= vrfNameLen {
		return k, fmt.Errorf("vrf name %q: must be 1 to %d bytes", name, vrfNameLen-1)
	}
	copy(k[:], name)
	return k, nil
}

func (d *Dataplane) loadVRFs() error {
	var k [vrfNameLen]byte
	var id uint32
	it := d.vrfIDs.Iterate()
	for it.Next(&k, &id) {
		name := string(bytes.TrimRight(k[:], "\x00"))
		d.vrfs[name], d.vrfNames[id] = id, name
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read vrf ids: %w", err)
	}
	return nil
}

// vrfID returns the id of a VRF, allocating one when create is set.
// Id 0 is reserved for drops that happen before a VRF is known.
func (d *Dataplane) vrfID(name string, create bool) (uint32, error) {
	if id, ok := d.vrfs[name]; ok {
		return id, nil
	}
	if !create {
		return 0, fmt.Errorf("vrf %q: %w", name, ErrUnknownVRF)
	}
	k, err := vrfKey(name)
	if err != nil {
		return 0, err
	}
	// The search starts after the id last handed out, so allocating
	// costs about one lookup however many VRFs there are.
	space := d.vrfSpace
	if space == 0 {
		space = maxVRFs
	}
	for i := uint32(0); i < space-1; i++ {
		id := 1 + (d.vrfNext+i)%(space-1)
		if _, used := d.vrfNames[id]; used {
			continue
		}
		if err := d.vrfIDs.Put(k, id); err != nil {
			return 0, fmt.Errorf("add vrf %q: %w", name, err)
		}
		d.vrfs[name], d.vrfNames[id] = id, name
		d.vrfNext = id
		return id, nil
	}
	return 0, fmt.Errorf("add vrf %q: all %d vrf ids in use", name, space-1)
}

// DeleteVRF releases a VRF's id (vrfrelease_linux.go). Its routes, pod
// interfaces and services must be removed first (else ErrVRFInUse).
func (d *Dataplane) DeleteVRF(name string) error {
	gone, err := d.ReleaseVRFs([]string{name})
	if err != nil {
		return fmt.Errorf("delete vrf %q: %w", name, err)
	}
	if len(gone) == 0 {
		return fmt.Errorf("delete vrf %q: %w", name, ErrVRFInUse)
	}
	return nil
}

// VRFs returns the VRFs the dataplane knows, by id.
func (d *Dataplane) VRFs() map[string]uint32 {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]uint32, len(d.vrfs))
	for k, v := range d.vrfs {
		out[k] = v
	}
	return out
}

func (d *Dataplane) loadRoutes() error {
	add := func(k routeKey, v forwarderRoute, host bool) {
		e := routeEntry{host: host}
		if v.Kind == routeRemote {
			e.gid = v.Id
			d.groups.refs[e.gid]++
		}
		d.routes[k] = e
	}
	var k forwarderRouteKey
	var v forwarderRoute
	it := d.maps.Routes.Iterate()
	for it.Next(&k, &v) {
		add(routeKeyFromBPF(k), v, false)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read routes: %w", err)
	}
	var hk forwarderHostKey
	hit := d.maps.HostRoutes.Iterate()
	for hit.Next(&hk, &v) {
		add(routeKeyFromHost(hk), v, true)
	}
	if err := hit.Err(); err != nil {
		return fmt.Errorf("read host routes: %w", err)
	}
	return nil
}

func (d *Dataplane) routeKey(k RouteKey, create bool) (routeKey, error) {
	vrf, err := d.vrfID(k.VRF, create)
	if err != nil {
		return 0, err
	}
	if !k.Prefix.IsValid() || !k.Prefix.Addr().Is4() {
		return 0, fmt.Errorf("prefix %v: %w", k.Prefix, ErrNotIPv4)
	}
	p := k.Prefix.Masked()
	return makeRouteKey(vrf, p.Addr().As4(), uint8(p.Bits())), nil
}

// nexthopSlice identifies a caller's slice of next hops within one call.
type nexthopSlice struct {
	first *NextHop
	n     int
}

// routeBatch is one chunk of SetRoutes on its way to the kernel.
type routeBatch struct {
	hostKeys []forwarderHostKey
	hostVals []forwarderRoute
	keys     []forwarderRouteKey
	vals     []forwarderRoute
}

func (b *routeBatch) len() int { return len(b.hostKeys) + len(b.keys) }

// writeRoutes writes batches to the kernel until in is closed. /32 routes
// that do not fit the exact-match table come back in overflow. After an
// error it drains in and returns the first error.
func (d *Dataplane) writeRoutes(in <-chan routeBatch) (overflow routeBatch, err error) {
	full := false
	for b := range in {
		if err != nil {
			continue
		}
		n := 0
		if !full {
			n, err = batchUpdate(d.maps.HostRoutes, b.hostKeys, b.hostVals)
			if errors.Is(err, unix.E2BIG) {
				full, err = true, nil
			}
			if err != nil {
				err = fmt.Errorf("set %d host routes: %w", len(b.hostKeys), err)
				continue
			}
		}
		overflow.hostKeys = append(overflow.hostKeys, b.hostKeys[n:]...)
		overflow.hostVals = append(overflow.hostVals, b.hostVals[n:]...)
		if _, e := batchUpdate(d.maps.Routes, b.keys, b.vals); e != nil {
			err = fmt.Errorf("set %d routes: %w", len(b.keys), e)
		}
	}
	return overflow, err
}

// SetRoutes installs or replaces routes in one batch. /32 routes go to the
// exact-match table while it has room, the others to the LPM trie. Large
// batches are written by a second goroutine in chunks while the next chunk
// is prepared.
func (d *Dataplane) SetRoutes(routes []Route) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.routes) == 0 && len(routes) > 1024 {
		d.routes = make(map[routeKey]routeEntry, len(routes))
	}
	type result struct {
		overflow routeBatch
		err      error
	}
	ch, done := make(chan routeBatch, 1), make(chan result, 1)
	go func() {
		o, err := d.writeRoutes(ch)
		done <- result{o, err}
	}()
	var (
		cur     routeBatch
		release []uint32
		prepErr error
		// Routes built from one next-hop slice share its canonical form.
		memo = map[nexthopSlice]uint32{}
	)
	for _, r := range routes {
		k, err := d.routeKey(r.RouteKey, true)
		if err != nil {
			prepErr = fmt.Errorf("set route %v in %q: %w", r.Prefix, r.VRF, err)
			break
		}
		var v forwarderRoute
		var gid uint32
		switch {
		case len(r.NextHops) > 0 && r.Interface == 0:
			ms := nexthopSlice{&r.NextHops[0], len(r.NextHops)}
			if id, ok := memo[ms]; ok {
				gid = id
				d.groups.refs[gid]++
			} else if gid, err = d.acquireGroup(r.NextHops); err == nil {
				memo[ms] = gid
			}
			v = forwarderRoute{Kind: routeRemote, Id: gid}
		case len(r.NextHops) == 0 && r.Interface > 0:
			var slot uint32
			slot, err = d.ifaceSlot(r.Interface)
			v = forwarderRoute{Kind: routeLocal, Id: slot}
		default:
			err = errors.New("need either an interface or next hops")
		}
		if err != nil {
			prepErr = fmt.Errorf("set route %v in %q: %w", r.Prefix, r.VRF, err)
			break
		}
		old, exists := d.routes[k]
		if exists && old.gid != 0 {
			release = append(release, old.gid)
		}
		// A route stays in the table it was first installed in.
		host := k.bits() == 32 && (!exists || old.host)
		d.routes[k] = routeEntry{gid: gid, host: host}
		if host {
			cur.hostKeys, cur.hostVals = append(cur.hostKeys, k.host()), append(cur.hostVals, v)
		} else {
			cur.keys, cur.vals = append(cur.keys, k.bpf()), append(cur.vals, v)
		}
		if cur.len() >= batchChunk {
			ch <- cur
			cur = routeBatch{}
		}
	}
	if cur.len() > 0 {
		ch <- cur
	}
	close(ch)
	res := <-done
	if n := len(res.overflow.hostKeys); n > 0 && res.err == nil {
		d.log.Warn("host route table full, using the trie", "routes", n)
		keys := make([]forwarderRouteKey, n)
		for i, hk := range res.overflow.hostKeys {
			rk := routeKeyFromHost(hk)
			d.routes[rk] = routeEntry{gid: d.routes[rk].gid}
			keys[i] = rk.bpf()
		}
		if _, err := batchUpdate(d.maps.Routes, keys, res.overflow.hostVals); err != nil {
			res.err = fmt.Errorf("set %d routes: %w", n, err)
		}
	}
	// Invalidate cached lookups before a released group can be reused.
	genErr := d.bumpRouteGen()
	for _, id := range release {
		if err := d.releaseGroup(id); err != nil {
			return err
		}
	}
	return errors.Join(prepErr, res.err, genErr)
}

// DeleteRoutes removes routes; missing ones are ignored.
func (d *Dataplane) DeleteRoutes(keys []RouteKey) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var bk []forwarderRouteKey
	var hk []forwarderHostKey
	var release []uint32
	for _, rk := range keys {
		k, err := d.routeKey(rk, false)
		if errors.Is(err, ErrUnknownVRF) {
			continue
		}
		if err != nil {
			return fmt.Errorf("delete route %v in %q: %w", rk.Prefix, rk.VRF, err)
		}
		e, ok := d.routes[k]
		if !ok {
			continue
		}
		delete(d.routes, k)
		if e.gid != 0 {
			release = append(release, e.gid)
		}
		if e.host {
			hk = append(hk, k.host())
		} else {
			bk = append(bk, k.bpf())
		}
	}
	// Deleted entries leave tombstones that slow every later lookup; a
	// table that lost most of its routes is rebuilt.
	if d.routeDeletes += len(hk) + len(bk); d.routeDeletes > 2*len(d.routes)+4096 {
		d.routes = maps.Clone(d.routes)
		d.routeDeletes = 0
	}
	err := errors.Join(batchDelete(d.maps.HostRoutes, hk), batchDelete(d.maps.Routes, bk))
	// Invalidate cached lookups, also after a partial failure, and before
	// a released group can be reused.
	if err = errors.Join(err, d.bumpRouteGen()); err != nil {
		return fmt.Errorf("delete %d routes: %w", len(hk)+len(bk), err)
	}
	for _, id := range release {
		if err := d.releaseGroup(id); err != nil {
			return err
		}
	}
	return nil
}

// bumpRouteGen invalidates every CPU's route cache (route_cache in
// bpf/types.h) after the route tables changed.
func (d *Dataplane) bumpRouteGen() error {
	var zero, gen uint32
	if err := d.maps.RouteGen.Lookup(zero, &gen); err != nil {
		return fmt.Errorf("read route generation: %w", err)
	}
	if err := d.maps.RouteGen.Put(zero, gen+1); err != nil {
		return fmt.Errorf("bump route generation: %w", err)
	}
	return nil
}

// Routes returns the number of installed routes.
func (d *Dataplane) Routes() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.routes)
}

// batchChunk bounds the size of one BPF_MAP_UPDATE_BATCH call.
const batchChunk = 1 << 16

// batchUpdate writes keys and values in chunks and returns how many were
// written.
func batchUpdate[K, V any](m *ebpf.Map, keys []K, vals []V) (int, error) {
	done := 0
	for start := 0; start < len(keys); start += batchChunk {
		end := min(start+batchChunk, len(keys))
		n, err := m.BatchUpdate(keys[start:end], vals[start:end], nil)
		if errors.Is(err, ebpf.ErrNotSupported) {
			for i := start; i < end; i++ {
				if err := m.Put(&keys[i], &vals[i]); err != nil {
					return done, err
				}
				done++
			}
			continue
		}
		done += n
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// batchDelete deletes keys in chunks; keys must exist.
func batchDelete[K any](m *ebpf.Map, keys []K) error {
	for start := 0; start < len(keys); start += batchChunk {
		end := min(start+batchChunk, len(keys))
		_, err := m.BatchDelete(keys[start:end], nil)
		if errors.Is(err, ebpf.ErrNotSupported) {
			for i := start; i < end; i++ {
				if err := m.Delete(&keys[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
					return err
				}
			}
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// RouteKeys returns the keys of the installed routes.
func (d *Dataplane) RouteKeys() []RouteKey {
	d.mu.Lock()
	defer d.mu.Unlock()
	names := make(map[uint32]string, len(d.vrfs))
	for n, id := range d.vrfs {
		names[id] = n
	}
	out := make([]RouteKey, 0, len(d.routes))
	for k := range d.routes {
		out = append(out, RouteKey{VRF: names[k.vrf()], Prefix: netip.PrefixFrom(netip.AddrFrom4(k.addr()), int(k.bits()))})
	}
	return out
}
