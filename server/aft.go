package server

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"time"

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

// aftSend looks up keys and sends, with w, the leaves of what exists and
// the deletes of what went: new next hops and groups before the entries
// that use them, gone ones last.
func (s *Server) aftSend(ctx context.Context, w *aftWriter, keys []nos.AFTKey, items []nos.AFTItem) ([]nos.AFTItem, error) {
	// Keys come in the order the dataplane's map gave them; sorted, the
	// lookups (BGP's RIB above all, whose slots follow the order routes
	// arrived in) read memory close to the last one instead of anywhere,
	// and a batch's entries go out in prefix order.
	slices.SortFunc(keys, func(a, b nos.AFTKey) int {
		if c := strings.Compare(a.VRF, b.VRF); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Kind, b.Kind); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
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
		if err := w.write(ctx, ts, it); err != nil {
			return items, err
		}
	}
	return items, w.snd.flush(ctx)
}

func matchesAny(qs []query, p []string) bool {
	for _, q := range qs {
		if q.matches(p) {
			return true
		}
	}
	return false
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
	aft := s.core.AFT()
	keys := aft.Keys(want, nil)
	w := newAFTWriter(snd, qs)
	var items []nos.AFTItem
	for len(keys) > 0 {
		start := time.Now()
		n := min(aftBatch, len(keys))
		var err error
		if items, err = s.aftSend(ctx, w, keys[:n], items); err != nil {
			return err
		}
		keys = keys[n:]
		if err := sleep(ctx, aft.Pause(time.Since(start))); err != nil {
			return err
		}
	}
	return nil
}

// sleep waits for d, or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// aftStream is the AFT part of one STREAM subscription. After each batch
// it may pause (nos.AFT.Pause) while the table is being programmed: then
// it does not take changes until its hold timer fires, and the stream
// serves its other parts meanwhile.
type aftStream struct {
	qs    []query
	w     *aftWriter // created with the stream's sender on first use
	sub   *nos.AFTSubscription
	keys  []nos.AFTKey
	items []nos.AFTItem
	hold  *time.Timer // set while paused
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

// ready is signalled when changes wait; nil (never) without a watch or
// while paused.
func (a *aftStream) ready() <-chan struct{} {
	if a == nil || a.hold != nil {
		return nil
	}
	return a.sub.Ready()
}

// resumed fires when a pause ends; nil (never) when not paused.
func (a *aftStream) resumed() <-chan time.Time {
	if a == nil || a.hold == nil {
		return nil
	}
	return a.hold.C
}

// resume ends the pause (its timer fired).
func (a *aftStream) resume() { a.hold = nil }

func (a *aftStream) close() {
	if a == nil {
		return
	}
	if a.hold != nil {
		a.hold.Stop()
	}
	a.sub.Close()
}

// aftChanges sends one batch of waiting changes; Ready is signalled
// again while more wait.
func (s *Server) aftChanges(ctx context.Context, snd *sender, a *aftStream) error {
	start := time.Now()
	a.keys, _ = a.sub.Take(aftBatch, a.keys[:0])
	if len(a.keys) == 0 {
		return nil
	}
	if a.w == nil {
		a.w = newAFTWriter(snd, a.qs)
	}
	var err error
	if a.items, err = s.aftSend(ctx, a.w, a.keys, a.items); err != nil {
		return err
	}
	if d := s.core.AFT().Pause(time.Since(start)); d > 0 {
		a.hold = time.NewTimer(d)
	}
	return nil
}
