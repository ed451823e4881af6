// Package ipam allocates pod addresses per VRF from the VRF's address pools
// and persists every allocation in the daemon's bbolt store, so an address
// is never handed out twice, even across concurrent requests (bbolt runs one
// write transaction at a time) and daemon restarts.
//
// Layout, under the top-level bucket "cni-ipam":
//
//	<vrf>/addr/<address bytes> → owner
//	<vrf>/owner/<owner>        → address bytes
//	<vrf>/cursor               → last address handed out
//
// New allocations continue after the cursor, so a released address is not
// reused until the pools wrap around.
package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// Bucket is the top-level bbolt bucket IPAM owns.
var Bucket = []byte("cni-ipam")

var (
	subAddr   = []byte("addr")
	subOwner  = []byte("owner")
	keyCursor = []byte("cursor")
)

// ErrExhausted is returned when no address is free in a VRF's pools.
var ErrExhausted = errors.New("address pool exhausted")

// ErrNoPool is returned when a VRF has no usable pool.
var ErrNoPool = errors.New("no address pool")

// Init creates IPAM's bucket; call it once with a write transaction.
func Init(tx *bolt.Tx) error {
	if _, err := tx.CreateBucketIfNotExists(Bucket); err != nil {
		return fmt.Errorf("create bucket %q: %w", Bucket, err)
	}
	return nil
}

func vrfBucket(tx *bolt.Tx, vrf string, create bool) (addr, owner, top *bolt.Bucket, err error) {
	root := tx.Bucket(Bucket)
	if root == nil {
		return nil, nil, nil, fmt.Errorf("bucket %q missing", Bucket)
	}
	if !create {
		top = root.Bucket([]byte(vrf))
		if top == nil {
			return nil, nil, nil, nil
		}
		return top.Bucket(subAddr), top.Bucket(subOwner), top, nil
	}
	if top, err = root.CreateBucketIfNotExists([]byte(vrf)); err != nil {
		return nil, nil, nil, fmt.Errorf("create vrf bucket %q: %w", vrf, err)
	}
	if addr, err = top.CreateBucketIfNotExists(subAddr); err != nil {
		return nil, nil, nil, fmt.Errorf("create addr bucket of %q: %w", vrf, err)
	}
	if owner, err = top.CreateBucketIfNotExists(subOwner); err != nil {
		return nil, nil, nil, fmt.Errorf("create owner bucket of %q: %w", vrf, err)
	}
	return addr, owner, top, nil
}

// Allocate gives owner an address in vrf from pools and returns it. If
// owner already holds an address in vrf, that address is returned again.
// It must run in a write transaction.
func Allocate(tx *bolt.Tx, vrf string, pools []netip.Prefix, owner string) (netip.Addr, error) {
	if owner == "" {
		return netip.Addr{}, errors.New("allocate address: empty owner")
	}
	addrs, owners, top, err := vrfBucket(tx, vrf, true)
	if err != nil {
		return netip.Addr{}, err
	}
	if held := owners.Get([]byte(owner)); held != nil {
		a, ok := netip.AddrFromSlice(held)
		if !ok {
			return netip.Addr{}, fmt.Errorf("vrf %q owner %q: corrupt address %x", vrf, owner, held)
		}
		return a, nil
	}
	ranges := usable(pools)
	if len(ranges) == 0 {
		return netip.Addr{}, fmt.Errorf("vrf %q: %w", vrf, ErrNoPool)
	}
	var cursor netip.Addr
	if b := top.Get(keyCursor); b != nil {
		cursor, _ = netip.AddrFromSlice(b)
	}
	a, ok := search(ranges, cursor, func(a netip.Addr) bool { return addrs.Get(a.AsSlice()) == nil })
	if !ok {
		return netip.Addr{}, fmt.Errorf("vrf %q: %w", vrf, ErrExhausted)
	}
	if err := addrs.Put(a.AsSlice(), []byte(owner)); err != nil {
		return netip.Addr{}, fmt.Errorf("record %s in vrf %q: %w", a, vrf, err)
	}
	if err := owners.Put([]byte(owner), a.AsSlice()); err != nil {
		return netip.Addr{}, fmt.Errorf("record owner %q in vrf %q: %w", owner, vrf, err)
	}
	if err := top.Put(keyCursor, a.AsSlice()); err != nil {
		return netip.Addr{}, fmt.Errorf("move cursor of vrf %q: %w", vrf, err)
	}
	return a, nil
}

// Release frees the address owner holds in vrf and returns it; ok is false
// if owner held none. It must run in a write transaction.
func Release(tx *bolt.Tx, vrf, owner string) (a netip.Addr, ok bool, err error) {
	addrs, owners, _, err := vrfBucket(tx, vrf, false)
	if err != nil || owners == nil {
		return netip.Addr{}, false, err
	}
	held := owners.Get([]byte(owner))
	if held == nil {
		return netip.Addr{}, false, nil
	}
	a, _ = netip.AddrFromSlice(held)
	if err := addrs.Delete(held); err != nil {
		return netip.Addr{}, false, fmt.Errorf("free %s in vrf %q: %w", a, vrf, err)
	}
	if err := owners.Delete([]byte(owner)); err != nil {
		return netip.Addr{}, false, fmt.Errorf("forget owner %q in vrf %q: %w", owner, vrf, err)
	}
	return a, true, nil
}

// Lookup returns the address owner holds in vrf.
func Lookup(tx *bolt.Tx, vrf, owner string) (netip.Addr, bool) {
	_, owners, _, err := vrfBucket(tx, vrf, false)
	if err != nil || owners == nil {
		return netip.Addr{}, false
	}
	a, ok := netip.AddrFromSlice(owners.Get([]byte(owner)))
	return a, ok
}

// Allocated returns every address allocated in vrf with its owner.
func Allocated(tx *bolt.Tx, vrf string) (map[netip.Addr]string, error) {
	addrs, _, _, err := vrfBucket(tx, vrf, false)
	out := make(map[netip.Addr]string)
	if err != nil || addrs == nil {
		return out, err
	}
	err = addrs.ForEach(func(k, v []byte) error {
		a, ok := netip.AddrFromSlice(k)
		if !ok {
			return fmt.Errorf("vrf %q: corrupt address key %x", vrf, k)
		}
		out[a] = string(v)
		return nil
	})
	return out, err
}

// span is an inclusive range of usable host addresses.
type span struct{ first, last netip.Addr }

// usable turns pools into sorted, non-overlapping spans of host addresses.
// In pools shorter than /31 (or /127) the all-zeros and all-ones addresses
// are left out, as hosts on such subnets expect.
func usable(pools []netip.Prefix) []span {
	var spans []span
	for _, p := range pools {
		if !p.IsValid() {
			continue
		}
		p = p.Masked()
		first, last := p.Addr(), lastAddr(p)
		if p.Bits() < p.Addr().BitLen()-1 {
			first, last = first.Next(), last.Prev()
		}
		spans = append(spans, span{first, last})
	}
	slices.SortFunc(spans, func(a, b span) int { return a.first.Compare(b.first) })
	out := spans[:0]
	for _, s := range spans {
		if n := len(out); n > 0 && s.first.Compare(out[n-1].last) <= 0 {
			if s.last.Compare(out[n-1].last) > 0 {
				out[n-1].last = s.last
			}
			continue
		}
		out = append(out, s)
	}
	return out
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// search walks the spans starting after cursor, wrapping around once, and
// returns the first address free says is free.
func search(spans []span, cursor netip.Addr, free func(netip.Addr) bool) (netip.Addr, bool) {
	start, startSpan := spans[0].first, 0
	if cursor.IsValid() {
		for i, s := range spans {
			if cursor.Compare(s.first) >= 0 && cursor.Compare(s.last) <= 0 {
				if cursor != s.last {
					start, startSpan = cursor.Next(), i
				} else {
					start, startSpan = spans[(i+1)%len(spans)].first, (i+1)%len(spans)
				}
				break
			}
		}
	}
	// Two passes over the spans: from start to the end, then from the
	// beginning back up to start.
	for pass := 0; pass <= len(spans); pass++ {
		i := (startSpan + pass) % len(spans)
		s := spans[i]
		from := s.first
		if pass == 0 {
			from = start
		}
		for a := from; a.IsValid() && a.Compare(s.last) <= 0; a = a.Next() {
			if pass == len(spans) && a.Compare(start) >= 0 {
				return netip.Addr{}, false
			}
			if free(a) {
				return a, true
			}
		}
	}
	return netip.Addr{}, false
}
