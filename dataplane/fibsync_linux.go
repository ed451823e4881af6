package dataplane

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/isthmus-net/isthmus/nos"
)

// How the reconciler keeps the maps in step with the FIB. applyFIB records
// every learnt route in r.fib, even one that a local route hides, and
// marks its key dirty; sync then moves the maps toward what r.fib and the
// local routes ask for and records in r.remote only what was really
// programmed. Whatever failed stays dirty and is retried with backoff by
// retryLoop, so the maps and the reconciler's view never drift apart for
// good.

// Retry backoff bounds of failed programming.
const (
	retryMin = 100 * time.Millisecond
	retryMax = 30 * time.Second
)

// endpointVRF is one element of the endpoint × VRF allow set: the VRF has
// routes through the endpoint, so the endpoint may send into it.
type endpointVRF struct {
	Endpoint netip.Addr
	VRF      string
}

// applyFIB takes a batch of FIB changes into r.fib and programs them.
func (r *Reconciler) applyFIB(changes []nos.RouteChange) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range changes {
		k := RouteKey{VRF: c.VRF, Prefix: c.Prefix.Masked()}
		for _, nh := range r.fib[k] {
			r.refEndpoint(nh.Endpoint, k.VRF, -1)
		}
		delete(r.fib, k)
		r.dirty[k] = struct{}{}
		if c.Deleted || len(c.NextHops) == 0 {
			continue
		}
		nhs := slices.Clone(c.NextHops)
		if len(nhs) > MaxNextHops {
			nhs = nhs[:MaxNextHops]
		}
		for _, nh := range nhs {
			r.refEndpoint(nh.Endpoint, k.VRF, 1)
		}
		r.fib[k] = nhs
		r.known[k] = struct{}{}
	}
	r.sync()
}

// refEndpoint counts a next hop of vrf through ep in or out of the
// endpoint and allow-set reference counts, marking what changed dirty.
func (r *Reconciler) refEndpoint(ep netip.Addr, vrf string, delta int) {
	if r.endpoints[ep] += delta; r.endpoints[ep] == 0 || (delta > 0 && r.endpoints[ep] == 1) {
		r.epDirty[ep] = struct{}{}
	}
	if r.endpoints[ep] == 0 {
		delete(r.endpoints, ep)
	}
	ev := endpointVRF{ep, vrf}
	if r.allowed[ev] += delta; r.allowed[ev] == 0 || (delta > 0 && r.allowed[ev] == 1) {
		r.allowDirty[ev] = struct{}{}
	}
	if r.allowed[ev] == 0 {
		delete(r.allowed, ev)
	}
}

// sync programs what is dirty: endpoints the FIB needs, the allow set,
// routes, then endpoints no route needs any more. r.mu is held. failed are
// errors of the caller's own programming (nil ones are ignored). It
// returns whether everything is now programmed; otherwise it schedules a
// retry.
func (r *Reconciler) sync(failed ...error) bool {
	if r.dp == nil {
		return false
	}
	var errs []error
	for _, err := range failed {
		if err != nil {
			errs = append(errs, err)
		}
	}
	for ep := range r.epDirty {
		if _, want := r.endpoints[ep]; !want || r.epReady[ep] {
			continue
		}
		if err := r.dp.SetEndpoint(Endpoint{Addr: ep, TransportLabel: r.applied.Neighbors[ep]}); err != nil {
			errs = append(errs, err)
			continue
		}
		r.epReady[ep] = true
	}
	for ev := range r.allowDirty {
		_, want := r.allowed[ev]
		var err error
		switch {
		case want && !r.allowReady[ev]:
			if err = r.dp.AllowEndpoint(ev.Endpoint, ev.VRF); err == nil {
				r.allowReady[ev] = true
			}
		case !want && r.allowReady[ev]:
			if err = r.dp.DenyEndpoint(ev.Endpoint, ev.VRF); err == nil {
				delete(r.allowReady, ev)
			}
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		delete(r.allowDirty, ev)
	}
	var set []Route
	var del []RouteKey
	for k := range r.dirty {
		if _, local := r.local[k]; local {
			delete(r.dirty, k) // a local pod or static route wins over a learnt one
			continue
		}
		nhs, learnt := r.fib[k]
		have, programmed := r.remote[k]
		switch {
		case learnt && !(programmed && slices.Equal(nhs, have)):
			set = append(set, Route{RouteKey: k, NextHops: nhs})
		case !learnt && programmed:
			del = append(del, k)
		default:
			delete(r.dirty, k)
		}
	}
	for k, err := range r.setRoutes(set) {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r.remote[k] = r.fib[k]
		delete(r.dirty, k)
		r.aftTouch(k)
	}
	for k, err := range r.deleteRoutes(del) {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		delete(r.remote, k)
		delete(r.dirty, k)
		r.aftTouch(k)
	}
	for ep := range r.epDirty {
		if _, want := r.endpoints[ep]; want {
			if r.epReady[ep] {
				delete(r.epDirty, ep)
			}
			continue
		}
		if r.epReady[ep] {
			if err := r.dp.DeleteEndpoint(ep); err != nil {
				errs = append(errs, err)
				continue
			}
			delete(r.epReady, ep)
		}
		delete(r.epDirty, ep)
	}
	if err := r.releaseVRFs(); err != nil { // VRFs gone from the config, once nothing leads to them
		errs = append(errs, err)
	}
	r.aftFlush()
	return r.settle(errs)
}

// settle records the outcome of a programming pass: the first failure is
// logged, later ones only counted until it recovers, and a retry is
// scheduled. r.mu is held.
func (r *Reconciler) settle(errs []error) bool {
	pending := len(r.dirty) + len(r.epDirty) + len(r.allowDirty) + len(r.waiting)
	if len(errs) == 0 && pending == 0 {
		if r.failing != nil {
			r.log.Info("forwarding programmed after failures", "attempts", r.attempts)
		}
		r.failing, r.attempts = nil, 0
		return true
	}
	if len(errs) > 0 {
		if r.failing == nil {
			r.log.Warn("program forwarding, will retry", "pending", pending, "err", errors.Join(errs...))
		}
		r.failing = errors.Join(errs...)
		r.attempts++
	}
	select {
	case r.retry <- struct{}{}:
	default:
	}
	return false
}

// retryAlone bounds the routes of a failed batch that are programmed one
// by one in a row while each fails: past it, the failure is taken to be the
// table's, not the route's, and the rest of the batch is reported failed
// without trying (r.mu is held, and commits wait for it).
const retryAlone = 64

// setRoutes programs routes in one batch and, when the batch fails, one by
// one, so that the caller learns which ones are in the maps. It yields each
// route's key with nil or its error. A route reported failed may still be
// in the maps; it is programmed again on the next pass.
func (r *Reconciler) setRoutes(routes []Route) func(func(RouteKey, error) bool) {
	return func(yield func(RouteKey, error) bool) {
		if len(routes) == 0 {
			return
		}
		batchErr := r.dp.SetRoutes(routes)
		failedInRow := 0
		for _, rt := range routes {
			err := batchErr
			if err != nil && failedInRow < retryAlone {
				if err = r.dp.SetRoutes([]Route{rt}); err != nil {
					failedInRow++
				} else {
					failedInRow = 0
				}
			}
			if err != nil {
				err = fmt.Errorf("program route %v in %q: %w", rt.Prefix, rt.VRF, err)
			}
			if !yield(rt.RouteKey, err) {
				return
			}
		}
	}
}

// deleteRoutes is setRoutes for deletions.
func (r *Reconciler) deleteRoutes(keys []RouteKey) func(func(RouteKey, error) bool) {
	return func(yield func(RouteKey, error) bool) {
		if len(keys) == 0 {
			return
		}
		batchErr := r.dp.DeleteRoutes(keys)
		failedInRow := 0
		for _, k := range keys {
			err := batchErr
			if err != nil && failedInRow < retryAlone {
				if err = r.dp.DeleteRoutes([]RouteKey{k}); err != nil {
					failedInRow++
				} else {
					failedInRow = 0
				}
			}
			if err != nil {
				err = fmt.Errorf("delete route %v in %q: %w", k.Prefix, k.VRF, err)
			}
			if !yield(k, err) {
				return
			}
		}
	}
}

// retryLoop retries failed programming with exponential backoff until ctx
// is done. It runs on a thread in the namespace Start was called in
// (enter), because attaching a pod interface that appeared late attaches
// a program by ifindex.
func (r *Reconciler) retryLoop(ctx context.Context, enter func() error) {
	if err := enter(); err != nil {
		r.log.Error("retry forwarding programming", "err", err)
		return
	}
	backoff := retryMin
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.retry:
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		r.mu.Lock()
		done := r.sync(r.converge(r.applied))
		r.mu.Unlock()
		if done {
			backoff = retryMin
		} else {
			backoff = min(2*backoff, retryMax)
		}
	}
}

// Pending returns how many routes, endpoints, allow-set entries and pod
// interfaces wait to be programmed, and the last programming error (nil
// when the last attempt succeeded).
func (r *Reconciler) Pending() (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.dirty) + len(r.epDirty) + len(r.allowDirty) + len(r.waiting), r.failing
}

// sweep deletes routes that an earlier process pinned and that neither the
// configuration nor the FIB has confirmed since Start, and allow-set
// entries that no FIB route backs.
func (r *Reconciler) sweep() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var stale []RouteKey
	for _, k := range r.dp.RouteKeys() {
		if _, ok := r.known[k]; !ok {
			stale = append(stale, k)
		}
	}
	slices.SortFunc(stale, func(a, b RouteKey) int { return a.Prefix.Addr().Compare(b.Prefix.Addr()) })
	if len(stale) > 0 {
		r.log.Info("sweep stale routes", "routes", len(stale))
	}
	errs := []error{r.dp.DeleteRoutes(stale)}
	allowed, err := r.dp.EndpointVRFs()
	errs = append(errs, err)
	for ep, vrfs := range allowed {
		for _, vrf := range vrfs {
			ev := endpointVRF{ep, vrf}
			if _, ok := r.allowed[ev]; !ok {
				errs = append(errs, r.dp.DenyEndpoint(ep, vrf))
				delete(r.allowReady, ev)
			}
		}
	}
	errs = append(errs, r.releaseVRFs()) // VRFs whose stale routes held their ids
	return errors.Join(errs...)
}
