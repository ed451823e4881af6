package server

import (
	"strings"
	"sync"

	"github.com/openconfig/gnmi/ctree"
	"github.com/openconfig/gnmi/match"
	"github.com/openconfig/gnmi/metadata"
	"github.com/openconfig/gnmi/path"
	gpb "github.com/openconfig/gnmi/proto/gnmi"

	"github.com/isthmus-net/isthmus/nos"
)

// maxPending bounds the distinct leaf paths waiting in one subscriber's
// queue. The queue coalesces by path, so it only grows past the number of
// leaves in the cache when paths come and go faster than the client
// reads; past the bound the subscription ends with ResourceExhausted and
// the client resubscribes, getting a fresh initial sync.
const maxPending = 1 << 18

// fanout delivers each change of the core's telemetry cache to this
// server's STREAM subscriptions whose paths match it. It belongs to one
// Server and watches the core's cache only while it has subscriptions.
type fanout struct {
	core *nos.Core
	m    *match.Match

	mu      sync.Mutex // guards count, unwatch
	count   int        // registered watchers
	unwatch func()     // removes the cache watch; nil while count is 0
}

func newFanout(core *nos.Core) *fanout {
	return &fanout{core: core, m: match.New()}
}

// change is one update or delete of one leaf, as it travels from the
// cache to the subscribers' queues. It is shared between them.
type change struct {
	n    *gpb.Notification // the cache's notification: one update or one delete
	path []string          // the leaf's path in cache form
	// key is path joined, the coalescing key. It is computed by the first
	// queue the change reaches; all of them are reached from the cache
	// writer's goroutine, one after the other, so it needs no lock.
	key string
}

// coalescingKey returns c.key, computing it the first time.
func (c *change) coalescingKey() string {
	if c.key == "" {
		c.key = strings.Join(c.path, "\x00")
	}
	return c.key
}

// update is the cache watch: it runs in the goroutine that changed the
// cache and must never block.
func (f *fanout) update(l *ctree.Leaf) {
	n, ok := l.Value().(*gpb.Notification)
	if !ok {
		return
	}
	for _, u := range n.GetUpdate() {
		f.deliver(n, u.GetPath())
	}
	for _, d := range n.GetDelete() {
		f.deliver(n, d)
	}
}

func (f *fanout) deliver(n *gpb.Notification, p *gpb.Path) {
	full := cachePath(n.GetPrefix(), p)
	if len(full) == 0 || full[0] == metadata.Root {
		return // the cache's own metadata, or a whole-target delete
	}
	f.m.Update(&change{n: n, path: full}, full)
}

// cachePath returns the path of a leaf as the cache indexes it: element
// names and key values (sorted by key name), prefix elements first,
// without target and origin.
func cachePath(prefix, p *gpb.Path) []string {
	if len(prefix.GetElement()) > 0 || len(p.GetElement()) > 0 {
		return append(path.ToStrings(prefix, false), path.ToStrings(p, false)...)
	}
	n := 0
	for _, es := range [][]*gpb.PathElem{prefix.GetElem(), p.GetElem()} {
		for _, e := range es {
			n += 1 + len(e.GetKey())
		}
	}
	out := make([]string, 0, n)
	for _, es := range [][]*gpb.PathElem{prefix.GetElem(), p.GetElem()} {
		for _, e := range es {
			out = append(out, e.GetName())
			switch keys := e.GetKey(); len(keys) {
			case 0:
			case 1:
				for _, v := range keys {
					out = append(out, v)
				}
			default:
				// Several keys: the cache's own rule (values in key name order).
				out = append(out, path.ToStrings(&gpb.Path{Elem: []*gpb.PathElem{e}}, false)[1:]...)
			}
		}
	}
	return out
}

// watch registers q for the leaves under each of qs, except those under
// any of exclude, and returns a function that unregisters it.
func (f *fanout) watch(q *queue, qs, exclude []query) (remove func()) {
	w := &watcher{q: q, exclude: exclude}
	f.mu.Lock()
	if f.count == 0 {
		f.unwatch = f.core.WatchCache(f.update)
	}
	f.count++
	f.mu.Unlock()
	var removes []func()
	for _, qu := range qs {
		removes = append(removes, f.m.AddQuery(qu, w))
	}
	return func() {
		for _, r := range removes {
			r()
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.count--; f.count == 0 {
			f.unwatch()
			f.unwatch = nil
		}
	}
}

// watcher is one ON_CHANGE (or TARGET_DEFINED) subscription's registration
// in the fanout.
type watcher struct {
	q       *queue
	exclude []query // leaves sampled rather than streamed
}

// Update implements match.Client.
func (w *watcher) Update(v any) {
	c, ok := v.(*change)
	if !ok {
		return
	}
	for _, x := range w.exclude {
		if x.matches(c.path) {
			return
		}
	}
	w.q.push(c)
}

// queue is one subscriber's pending changes, at most one per leaf path:
// a newer change of a path replaces the older one in place (latest value
// or delete wins), so a slow client sees fewer intermediate values but
// converges, and the cache is never blocked.
type queue struct {
	ready chan struct{} // holds a token when pending is non-empty

	mu       sync.Mutex // guards pending, index, overflow
	pending  []*change
	index    map[string]int // key → position in pending
	overflow bool           // more than maxPending distinct paths waited
}

func newQueue() *queue {
	return &queue{ready: make(chan struct{}, 1), index: map[string]int{}}
}

// push adds c, replacing a pending change of the same leaf.
func (q *queue) push(c *change) {
	key := c.coalescingKey()
	q.mu.Lock()
	if i, ok := q.index[key]; ok {
		q.pending[i] = c
	} else if len(q.pending) >= maxPending {
		q.overflow = true
	} else {
		q.index[key] = len(q.pending)
		q.pending = append(q.pending, c)
	}
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// take returns the pending changes in arrival order and whether the queue
// overflowed; spare (emptied) becomes the next pending buffer.
func (q *queue) take(spare []*change) ([]*change, bool) {
	clear(spare)
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.pending
	q.pending = spare[:0]
	clear(q.index)
	return out, q.overflow
}
