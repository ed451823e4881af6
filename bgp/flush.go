package bgp

import (
	"context"
	"slices"
	"time"

	"github.com/isthmus-net/isthmus/nos"
)

// maxSyncWait bounds how long routes from before a restart are kept when
// a peer never sends End-of-RIB.
const maxSyncWait = 2 * time.Minute

// flushLoop drains import into the FIB. Changes pile up in the RIB while a
// batch is being written, so the batches grow with the load: one FIB
// update per burst, not per path.
func (r *Reconciler) flushLoop(ctx context.Context) {
	deadline := time.NewTimer(maxSyncWait)
	defer deadline.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.flushWake:
		case <-deadline.C:
			r.finishSync("timeout")
		}
		changes := r.rib.flush()
		changes = r.dropUnchanged(changes)
		if len(changes) > 0 {
			r.fib().Update(changes)
			r.signalState()
		}
		if r.allEOR() {
			r.finishSync("end-of-rib")
		}
	}
}

func (r *Reconciler) fib() *nos.FIB {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.core.FIB()
}

// dropUnchanged removes, while routes from before a restart are being
// confirmed, the changes that would rewrite a route with the next hops it
// already has: the dataplane sees no churn from our restart.
func (r *Reconciler) dropUnchanged(changes []nos.RouteChange) []nos.RouteChange {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.stale) == 0 {
		return changes
	}
	fib := r.core.FIB()
	out := changes[:0]
	for _, c := range changes {
		if r.stale[c.RouteKey] {
			delete(r.stale, c.RouteKey)
			if cur, ok := fib.Lookup(c.RouteKey); ok && !c.Deleted && slices.Equal(cur, c.NextHops) {
				continue
			}
		}
		out = append(out, c)
	}
	return out
}

// allEOR reports whether every configured neighbor that is established has
// sent its End-of-RIB, and at least one has.
func (r *Reconciler) allEOR() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.synced || r.applied == nil || len(r.applied.neighbors) == 0 {
		return false
	}
	for addr := range r.applied.neighbors {
		if !r.eor[addr] {
			return false
		}
	}
	return true
}

// finishSync ends the restart window: routes kept from before the restart
// that no peer announced again are deleted from the FIB.
func (r *Reconciler) finishSync(why string) {
	r.mu.Lock()
	if r.synced {
		r.mu.Unlock()
		return
	}
	r.synced = true
	r.restart = false // neighbors added from now on are not restarting
	var del []nos.RouteChange
	for k := range r.stale {
		if !r.rib.has(k) {
			del = append(del, nos.RouteChange{Route: nos.Route{RouteKey: k}, Deleted: true})
		}
	}
	clear(r.stale)
	fib := r.core.FIB()
	r.mu.Unlock()
	if len(del) > 0 {
		fib.Update(del)
	}
	r.log.Info("bgp initial sync done", "reason", why, "stale_removed", len(del))
}

// fibKeys returns the keys of every route in the FIB.
func fibKeys(ctx context.Context, fib *nos.FIB) []nos.RouteKey {
	if n, _ := fib.Len(); n == 0 {
		return nil
	}
	sub, cancel := context.WithCancel(ctx)
	defer cancel()
	got := make(chan []nos.RouteKey, 1)
	go fib.Subscribe(sub, func(batch []nos.RouteChange) {
		keys := make([]nos.RouteKey, 0, len(batch))
		for _, c := range batch {
			if !c.Deleted {
				keys = append(keys, c.RouteKey)
			}
		}
		select {
		case got <- keys:
		default:
		}
		cancel()
	})
	select {
	case keys := <-got:
		return keys
	case <-ctx.Done():
		return nil
	case <-time.After(5 * time.Second):
		return nil
	}
}
