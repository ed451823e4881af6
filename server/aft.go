package server

import (
	"cmp"
	"context"
	"slices"
	"strconv"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"

	"github.com/isthmus-net/isthmus/nos"
)

// The forwarding table (nos.AFT, isthmus-aft.yang) is not in the telemetry
// cache: a million routes would be a million notifications there and in
// every subscriber's queue. Subscriptions whose paths reach into
// .../network-instance/afts read it from the core's AFT instead: the
// initial sync from a snapshot of its keys, looked up in batches; STREAM
// changes from an nos.AFTSubscription, a queue of changed keys that
// holds each item once, so a slow client never slows programming and
// always converges to the current table. Values are read when they are
// sent, so a change the client has not read yet is sent once, as it is
// then.

// aftBatch is how many AFT items are looked up and sent at a time.
const aftBatch = 1000

// aftPattern is the cache-form path of the AFT of any network instance.
var aftPattern = query{"network-instances", "network-instance", "*", "afts"}

// aftQueries returns the queries of qs that can match AFT leaves, and
// the VRFs they can match (nil: any).
func aftQueries(qs []query) (out []query, want func(string) bool) {
	vrfs := map[string]bool{}
	all := false
	for _, q := range qs {
		n := min(len(q), len(aftPattern))
		if !slices.EqualFunc(q[:n], aftPattern[:n], func(a, b string) bool { return a == "*" || b == "*" || a == b }) {
			continue
		}
		out = append(out, q)
		if len(q) < 3 || q[2] == "*" {
			all = true
		} else {
			vrfs[q[2]] = true
		}
	}
	if all {
		return out, func(string) bool { return true }
	}
	return out, func(v string) bool { return vrfs[v] }
}

// aftSend looks up keys and sends the leaves of what exists, and deletes
// of what went, that one of qs matches: new next hops and groups before
// the entries that use them, gone ones last.
func (s *Server) aftSend(ctx context.Context, snd *sender, qs []query, keys []nos.AFTKey, items []nos.AFTItem) ([]nos.AFTItem, error) {
	items = s.core.AFT().Lookup(keys, items[:0])
	rank := func(it nos.AFTItem) int {
		switch {
		case it.Key.Kind == nos.AFTEntry:
			return 2
		case it.Present:
			return int(3 - it.Key.Kind) // next hops, then groups
		default:
			return int(it.Key.Kind) + 1 // groups, then next hops
		}
	}
	slices.SortStableFunc(items, func(a, b nos.AFTItem) int { return cmp.Compare(rank(a), rank(b)) })
	ts := time.Now().UnixNano()
	for _, it := range items {
		for _, l := range aftLeaves(it) {
			if !l.wanted(qs) {
				continue
			}
			if err := snd.add(ctx, ts, leaf{path: l.path, val: l.val}); err != nil {
				return items, err
			}
		}
	}
	return items, snd.flush(ctx)
}

func matchesAny(qs []query, p []string) bool {
	for _, q := range qs {
		if q.matches(p) {
			return true
		}
	}
	return false
}

// wanted reports whether a subscription with queries qs takes the leaf:
// an update when a query matches it, a delete when one matches a leaf
// below it.
func (l aftLeaf) wanted(qs []query) bool {
	if l.val == nil {
		return overlapsAny(qs, l.cache)
	}
	return matchesAny(qs, l.cache)
}

// overlapsAny reports whether the subtree at p holds leaves one of qs
// matches: the delete of an item reaches a subscription to any of its
// leaves.
func overlapsAny(qs []query, p []string) bool {
	for _, q := range qs {
		n := min(len(q), len(p))
		if slices.EqualFunc(q[:n], p[:n], func(a, b string) bool { return a == "*" || a == b }) {
			return true
		}
	}
	return false
}

// aftDump sends the current AFT leaves that qs match (ONCE, POLL, and the
// initial sync of STREAM).
func (s *Server) aftDump(ctx context.Context, snd *sender, qs []query) error {
	qs, want := aftQueries(qs)
	if len(qs) == 0 {
		return nil
	}
	keys := s.core.AFT().Keys(want, nil)
	var items []nos.AFTItem
	for len(keys) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(aftBatch, len(keys))
		var err error
		if items, err = s.aftSend(ctx, snd, qs, keys[:n], items); err != nil {
			return err
		}
		keys = keys[n:]
	}
	return nil
}

// aftStream is the AFT part of one STREAM subscription.
type aftStream struct {
	qs    []query
	sub   *nos.AFTSubscription
	keys  []nos.AFTKey
	items []nos.AFTItem
}

// aftWatch subscribes to the AFT changes that qs can match, or returns
// nil when they match none.
func (s *Server) aftWatch(qs []query) *aftStream {
	qs, want := aftQueries(qs)
	if len(qs) == 0 {
		return nil
	}
	return &aftStream{qs: qs, sub: s.core.AFT().Subscribe(want, false)}
}

// ready is signalled when changes wait; nil (never) without a watch.
func (a *aftStream) ready() <-chan struct{} {
	if a == nil {
		return nil
	}
	return a.sub.Ready()
}

func (a *aftStream) close() {
	if a != nil {
		a.sub.Close()
	}
}

// send sends one batch of waiting changes; Ready is signalled again while
// more wait.
func (s *Server) aftChanges(ctx context.Context, snd *sender, a *aftStream) error {
	a.keys, _ = a.sub.Take(aftBatch, a.keys[:0])
	if len(a.keys) == 0 {
		return nil
	}
	var err error
	a.items, err = s.aftSend(ctx, snd, a.qs, a.keys, a.items)
	return err
}

// aftLeaf is one leaf of an AFT item: its gNMI path, its path in cache
// form (for matching queries) and its value (nil: a delete of the item).
type aftLeaf struct {
	path  *gpb.Path
	cache []string
	val   *gpb.TypedValue
}

// aftLeaves renders an item as leaves, or, when it is gone, as the delete
// of its list entry.
func aftLeaves(it nos.AFTItem) []aftLeaf {
	k := it.Key
	base := []*gpb.PathElem{
		{Name: "network-instances"},
		{Name: "network-instance", Key: map[string]string{"name": k.VRF}},
		{Name: "afts"},
	}
	cache := []string{"network-instances", "network-instance", k.VRF, "afts"}
	var keyName, keyVal string
	switch k.Kind {
	case nos.AFTEntry:
		keyName, keyVal = "prefix", k.Prefix().String()
		base = append(base, &gpb.PathElem{Name: "ipv4-unicast"}, &gpb.PathElem{Name: "ipv4-entry", Key: map[string]string{keyName: keyVal}})
		cache = append(cache, "ipv4-unicast", "ipv4-entry", keyVal)
	case nos.AFTGroup:
		keyName, keyVal = "id", strconv.FormatUint(k.ID, 10)
		base = append(base, &gpb.PathElem{Name: "next-hop-groups"}, &gpb.PathElem{Name: "next-hop-group", Key: map[string]string{keyName: keyVal}})
		cache = append(cache, "next-hop-groups", "next-hop-group", keyVal)
	default:
		keyName, keyVal = "index", strconv.FormatUint(k.ID, 10)
		base = append(base, &gpb.PathElem{Name: "next-hops"}, &gpb.PathElem{Name: "next-hop", Key: map[string]string{keyName: keyVal}})
		cache = append(cache, "next-hops", "next-hop", keyVal)
	}
	if !it.Present {
		return []aftLeaf{{path: &gpb.Path{Elem: base}, cache: cache}}
	}
	var out []aftLeaf
	add := func(val *gpb.TypedValue, names ...string) {
		p := slices.Clip(base)
		c := slices.Clip(cache)
		for _, n := range names {
			p = append(p, &gpb.PathElem{Name: n})
			c = append(c, n)
		}
		out = append(out, aftLeaf{path: &gpb.Path{Elem: p}, cache: c, val: val})
	}
	str := func(v string) *gpb.TypedValue { return &gpb.TypedValue{Value: &gpb.TypedValue_StringVal{StringVal: v}} }
	u64 := func(v uint64) *gpb.TypedValue { return &gpb.TypedValue{Value: &gpb.TypedValue_UintVal{UintVal: v}} }
	strs := func(vs []string) *gpb.TypedValue {
		l := &gpb.ScalarArray{}
		for _, v := range vs {
			l.Element = append(l.Element, str(v))
		}
		return &gpb.TypedValue{Value: &gpb.TypedValue_LeaflistVal{LeaflistVal: l}}
	}
	switch k.Kind {
	case nos.AFTEntry:
		add(str(keyVal), "prefix")
		add(str(keyVal), "state", "prefix")
		add(u64(it.Group), "state", "next-hop-group")
		add(str(it.Origin.String()), "state", "origin-protocol")
		if len(it.RDs) > 0 {
			add(strs(it.RDs), "state", "route-distinguisher")
		}
		if len(it.RTs) > 0 {
			add(strs(it.RTs), "state", "route-target")
		}
	case nos.AFTGroup:
		add(u64(k.ID), "id")
		add(u64(k.ID), "state", "id")
		for _, nh := range it.NextHops {
			id := strconv.FormatUint(nh, 10)
			p := slices.Clip(base)
			c := slices.Clip(cache)
			p = append(p, &gpb.PathElem{Name: "next-hops"}, &gpb.PathElem{Name: "next-hop", Key: map[string]string{"index": id}})
			c = append(c, "next-hops", "next-hop", id)
			for _, l := range []struct {
				names []string
				val   *gpb.TypedValue
			}{{[]string{"index"}, u64(nh)}, {[]string{"state", "index"}, u64(nh)}, {[]string{"state", "weight"}, u64(1)}} {
				lp, lc := slices.Clip(p), slices.Clip(c)
				for _, n := range l.names {
					lp = append(lp, &gpb.PathElem{Name: n})
					lc = append(lc, n)
				}
				out = append(out, aftLeaf{path: &gpb.Path{Elem: lp}, cache: lc, val: l.val})
			}
		}
	default:
		add(u64(k.ID), "index")
		add(u64(k.ID), "state", "index")
		if it.Interface != "" {
			add(str(it.Interface), "interface-ref", "state", "interface")
			break
		}
		add(str(it.Hop.Endpoint.String()), "state", "ip-address")
		add(str(it.Hop.Encap.String()), "state", "encapsulate-header")
		add(&gpb.TypedValue{Value: &gpb.TypedValue_LeaflistVal{LeaflistVal: &gpb.ScalarArray{Element: []*gpb.TypedValue{u64(uint64(it.Hop.Label))}}}}, "state", "pushed-mpls-label-stack")
	}
	return out
}
