package nos

import (
	"slices"

	"github.com/openconfig/gnmi/ctree"
)

// cacheWatcher is one function registered with WatchCache.
type cacheWatcher struct {
	fn func(*ctree.Leaf)
}

// WatchCache registers fn to be called with every leaf the telemetry
// cache changes (updates and deletes), in the goroutine that changed it,
// which may hold the core's locks: fn must not block, and must not call
// back into the core. The cache has a single client slot, which the core
// fills with its own fan-out, so each caller (a gNMI server, a test) owns
// its watcher and removes it with the returned function.
func (c *Core) WatchCache(fn func(*ctree.Leaf)) (remove func()) {
	w := &cacheWatcher{fn: fn}
	c.watchMu.Lock()
	var cur []*cacheWatcher
	if p := c.watchers.Load(); p != nil {
		cur = *p
	}
	next := append(slices.Clone(cur), w)
	c.watchers.Store(&next)
	c.watchMu.Unlock()
	return func() {
		c.watchMu.Lock()
		defer c.watchMu.Unlock()
		p := c.watchers.Load()
		if p == nil {
			return
		}
		next := slices.DeleteFunc(slices.Clone(*p), func(x *cacheWatcher) bool { return x == w })
		c.watchers.Store(&next)
	}
}

// notifyWatchers is the cache's client: it passes each changed leaf to
// every registered watcher.
func (c *Core) notifyWatchers(l *ctree.Leaf) {
	p := c.watchers.Load()
	if p == nil {
		return
	}
	for _, w := range *p {
		w.fn(l)
	}
}
