package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netns"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// ReconcilerConfig configures the dataplane reconciler.
type ReconcilerConfig struct {
	Config
	// StateInterval is how often counters are published as state; 0 means
	// 5 seconds.
	StateInterval time.Duration
	// NeighborInterval is how often endpoint MACs are re-resolved; 0 means
	// 1 second.
	NeighborInterval time.Duration
	// StaleGrace is how long routes pinned by an earlier process and not
	// (yet) confirmed by the configuration or the FIB keep forwarding after
	// Start; 0 means 2 minutes, which covers BGP graceful restart.
	StaleGrace time.Duration
}

// Reconciler is the dataplane's nos.Reconciler: it opens (or adopts) the
// pinned forwarder in Start, programs committed VRFs, pod interfaces,
// static routes, labels and the tunnel in Apply, programs the routes that
// the control plane puts in the FIB, and publishes counters as state.
type Reconciler struct {
	cfg ReconcilerConfig
	log *slog.Logger

	cancel context.CancelFunc
	wg     sync.WaitGroup

	retry chan struct{} // asks retryLoop for another programming pass

	pubMu           sync.Mutex          // guards published, tunnelPublished
	published       map[netip.Addr]bool // endpoints whose state was written
	tunnelPublished bool                // tunnel/state was written

	flowsMu sync.Mutex // serializes writes of services' state/flows (periodic and on request)

	// visits counts the network instances Validate and Apply looked at
	// (every one in full, those a commit changes by delta), for tests.
	visits atomic.Int64

	mu         sync.Mutex // guards every field below
	dp         *Dataplane
	core       *nos.Core
	applied    intent
	ifindex    map[string]int               // attached pod interface name → ifindex
	attached   map[string]podIntent         // attached pod interfaces, as attached
	waiting    map[string]struct{}          // configured pods whose interface is absent
	labels     map[labelTarget]uint32       // programmed labels
	local      map[RouteKey]int             // programmed local routes → ifindex
	fib        map[RouteKey][]NextHop       // learnt FIB routes, also those a local route hides
	remote     map[RouteKey][]NextHop       // programmed FIB routes
	dirty      map[RouteKey]struct{}        // FIB routes whose programming may differ from fib
	endpoints  map[netip.Addr]int           // endpoint → FIB next hops using it
	epReady    map[netip.Addr]bool          // endpoints programmed
	epDirty    map[netip.Addr]struct{}      // endpoints to add or delete
	allowed    map[endpointVRF]int          // (endpoint, VRF) → FIB next hops: may send into the VRF
	allowReady map[endpointVRF]bool         // allow-set entries programmed
	allowDirty map[endpointVRF]struct{}     // allow-set entries to add or delete
	known      map[RouteKey]struct{}        // routes confirmed since Start
	failing    error                        // last programming failure, nil once all is programmed
	attempts   int                          // programming passes since failing was set
	services   map[serviceName]namedService // programmed service ports (services_reconciler_linux.go)
	external   *externalState               // external connectivity (nat_reconciler_linux.go)
	aft        aftState                     // the forwarding table as programmed (aft_linux.go)
	policy     policyIntent                 // ACL policy to program (policy_reconciler_linux.go)
	pcache     policyCompileCache           // compiled ACL entries (policy_compile_cache.go)
	vrfPods    map[string]map[string]bool   // applied pods by VRF (reconciler_delta_linux.go)
	podRoute   map[RouteKey]string          // applied pods by their own route
	down       map[string]bool              // pod interfaces whose host link was set down (podlink_linux.go)
	releasing  map[string]struct{}          // VRFs gone from the config whose ids wait to be released (vrfrelease_linux.go)
}

var _ nos.Reconciler = (*Reconciler)(nil)

// New returns the dataplane reconciler; nothing is loaded before Start.
func New(cfg ReconcilerConfig) *Reconciler {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.StateInterval == 0 {
		cfg.StateInterval = 5 * time.Second
	}
	if cfg.NeighborInterval == 0 {
		cfg.NeighborInterval = time.Second
	}
	if cfg.StaleGrace == 0 {
		cfg.StaleGrace = 2 * time.Minute
	}
	return &Reconciler{
		cfg:        cfg,
		log:        cfg.Logger.With("reconciler", "dataplane"),
		retry:      make(chan struct{}, 1),
		published:  map[netip.Addr]bool{},
		ifindex:    map[string]int{},
		attached:   map[string]podIntent{},
		waiting:    map[string]struct{}{},
		labels:     map[labelTarget]uint32{},
		local:      map[RouteKey]int{},
		fib:        map[RouteKey][]NextHop{},
		remote:     map[RouteKey][]NextHop{},
		dirty:      map[RouteKey]struct{}{},
		endpoints:  map[netip.Addr]int{},
		epReady:    map[netip.Addr]bool{},
		epDirty:    map[netip.Addr]struct{}{},
		allowed:    map[endpointVRF]int{},
		allowReady: map[endpointVRF]bool{},
		allowDirty: map[endpointVRF]struct{}{},
		known:      map[RouteKey]struct{}{},
		vrfPods:    map[string]map[string]bool{},
		podRoute:   map[RouteKey]string{},
	}
}

// ID implements nos.Reconciler.
func (r *Reconciler) ID() string { return "dataplane" }

// Dataplane returns the forwarder once Start has opened it.
func (r *Reconciler) Dataplane() *Dataplane {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dp
}

// Start opens or adopts the pinned forwarder and starts the FIB
// subscription, the neighbor resolver, the counter publisher and the sweep
// of stale pinned routes. It must be called in the host's network
// namespace.
func (r *Reconciler) Start(ctx context.Context, core *nos.Core) error {
	dp, err := Open(r.cfg.Config)
	if err != nil {
		return fmt.Errorf("start dataplane: %w", err)
	}
	// The retry loop may attach a pod interface that appeared late, by
	// ifindex, so it runs in this namespace.
	here, err := netns.Get()
	if err != nil {
		dp.Close()
		return fmt.Errorf("start dataplane: find network namespace: %w", err)
	}
	r.mu.Lock()
	r.dp, r.core = dp, core
	r.mu.Unlock()
	ctx, r.cancel = context.WithCancel(ctx)
	core.RefreshOnRequest(ctx, "/network-instances/network-instance/services/service/state/flows", r.refreshFlows)
	core.RefreshOnRequest(ctx, "/network-instances/network-instance/state/acl-flows", r.refreshPolicyFlows)
	core.AFT().SetSource(r)
	r.wg.Add(5)
	go func() {
		defer r.wg.Done()
		defer here.Close()
		runtime.LockOSThread() // never unlocked: the thread ends with the loop
		r.retryLoop(ctx, func() error { return netns.Set(here) })
	}()
	go func() {
		defer r.wg.Done()
		core.FIB().Subscribe(ctx, r.applyFIB)
	}()
	go func() {
		defer r.wg.Done()
		dp.ResolveNeighbors(ctx, r.cfg.NeighborInterval)
	}()
	go func() {
		defer r.wg.Done()
		r.publishLoop(ctx)
	}()
	go func() {
		defer r.wg.Done()
		select {
		case <-ctx.Done():
		case <-time.After(r.cfg.StaleGrace):
			if err := r.sweep(); err != nil {
				r.log.Warn("sweep stale routes", "err", err)
			}
			// The FIB has had its grace period: an upgrade that
			// replaced the route maps moves the links now (a failure
			// is retried by the next apply).
			if err := dp.upgradeStep(false, true); err != nil {
				r.log.Warn("finish upgrade", "err", err)
			}
		}
	}()
	return nil
}

// Stop ends the background work and closes this process's handles;
// pinned state keeps forwarding.
func (r *Reconciler) Stop(ctx context.Context) error {
	if r.cancel != nil {
		r.cancel()
	}
	r.wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dp == nil {
		return nil
	}
	if r.core != nil {
		r.core.AFT().SetSource(nil)
	}
	return r.dp.Close()
}

// Validate implements nos.Reconciler.
func (r *Reconciler) Validate(intended *gen.Device) error {
	return r.validate(intended, nil)
}

// validate is Validate for a candidate that differs from the running
// configuration by d (nil: not known).
func (r *Reconciler) validate(intended *gen.Device, d *nos.Delta) error {
	r.visits.Add(int64(len(nos.NetworkInstances(intended))))
	in, err := intentOf(intended)
	if err != nil {
		return err
	}
	p, err := r.pcache.compile(intended, d, true)
	if err != nil {
		return err
	}
	if err := p.checkLimits(); err != nil {
		return err
	}
	if err := r.checkPodMACs(intended, nil, true); err != nil {
		return err
	}
	return in.validate()
}

// Apply implements nos.Reconciler: it moves the forwarder from the intent
// it last applied to intended (old is not needed: the reconciler remembers
// what it programmed, including across a failed Apply). Pod interfaces
// that are configured but not present yet, and the routes and labels that
// lead to them, do not fail the commit: they are programmed when the
// interface appears.
func (r *Reconciler) Apply(ctx context.Context, old, intended *gen.Device) error {
	return r.apply(ctx, old, intended, nil)
}

// apply is Apply for old → intended, which differ by d (nil: not known).
func (r *Reconciler) apply(ctx context.Context, old, intended *gen.Device, d *nos.Delta) error {
	r.visits.Add(int64(len(nos.NetworkInstances(intended))))
	want, err := intentOf(intended)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dp == nil {
		return errors.New("apply dataplane: not started")
	}
	have := r.applied
	switch {
	case want.Tunnel != nil && (have.Tunnel == nil || *want.Tunnel != *have.Tunnel):
		if err := r.dp.SetTunnel(*want.Tunnel); err != nil {
			return err
		}
	case want.Tunnel == nil && have.Tunnel != nil:
		if err := r.dp.ClearTunnel(); err != nil {
			return err
		}
	}
	if !maps.Equal(want.Neighbors, have.Neighbors) {
		for ep := range r.epReady {
			if err := r.dp.SetEndpoint(Endpoint{Addr: ep, TransportLabel: want.Neighbors[ep]}); err != nil {
				return err
			}
		}
	}
	if err := r.converge(want); err != nil {
		return err
	}
	if err := r.applyServices(intended, want.Pods); err != nil {
		return err
	}
	if err := r.applyExternal(intended); err != nil {
		return err
	}
	if err := r.applyPolicy(intended, d); err != nil {
		return err
	}
	// After an upgrade across an ABI change, the links move to the new
	// programs once their maps hold the configuration (upgrade_linux.go).
	if err := r.dp.upgradeStep(true, false); err != nil {
		return err
	}
	r.applied = want
	r.indexPods(want)
	r.releaseUnconfigured(intended) // their ids are released in sync
	r.sync()                        // learnt routes that local ones hid or uncovered
	return nil
}

// converge programs pod interfaces, local routes and labels toward want.
// Pods that are configured with a MAC but have no interface yet wait in
// r.waiting; the retry loop calls converge again for them. r.mu is held.
func (r *Reconciler) converge(want intent) error {
	// A disabled pod's link goes down before its program goes.
	if err := r.podLinks(want, nil, false); err != nil {
		return err
	}
	// Pods that go, or change VRF or MAC, are detached after everything
	// that leads to them is gone.
	var detach []string
	for ifname, p := range r.attached {
		if w, ok := want.Pods[ifname]; !ok || w.VRF != p.VRF || w.PeerMAC != p.PeerMAC {
			detach = append(detach, ifname)
		}
	}
	going := func(ifname string) bool { return slices.Contains(detach, ifname) }

	// Local routes that go: deleted, and a learnt route they hid comes back.
	wantRoutes := want.localRoutes()
	var gone []RouteKey
	for k, i := range r.local {
		if w, ok := wantRoutes[k]; !ok || going(w) || r.ifindex[w] != i {
			gone = append(gone, k)
		}
	}
	var errs []error
	for k, err := range r.deleteRoutes(gone) {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		delete(r.local, k)
		r.dirty[k] = struct{}{}
		r.aftTouch(k)
	}
	wantLabels := want.labelTargets()
	for lt, label := range r.labels {
		if _, ok := wantLabels[lt]; ok && !going(lt.Interface) {
			continue
		}
		if err := r.dp.DeleteLabel(label); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(r.labels, lt)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := r.detach(detach); err != nil {
		return err
	}
	clear(r.waiting)
	for ifname, p := range want.Pods {
		if p.PeerMAC == "" {
			continue // not plugged yet: a later commit brings the MAC
		}
		if err := r.attachPod(ifname, p); err != nil {
			return err
		}
	}
	// Routes to pods that are attached; the others wait for their pod.
	var routes []Route
	for k, ifname := range wantRoutes {
		r.known[k] = struct{}{}
		i, ok := r.ifindex[ifname]
		if !ok || r.local[k] == i {
			continue
		}
		routes = append(routes, Route{RouteKey: k, Interface: i})
	}
	for k, err := range r.setRoutes(routes) {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r.local[k] = r.ifindex[wantRoutes[k]]
		delete(r.remote, k)
		delete(r.dirty, k)
		r.aftTouch(k)
	}
	errs = append(errs, r.installLabels(wantLabels), r.programPolicy(), // pods attached late get their policy
		r.podLinks(want, nil, true)) // an enabled pod's link comes up once it is attached
	return errors.Join(errs...)
}

// installLabels makes sure every wanted label is allocated (by the core,
// which BGP advertises from) and programmed; per-prefix labels of pods
// that are not attached yet wait for them. Every failure is returned.
func (r *Reconciler) installLabels(want map[labelTarget]struct{}) error {
	if r.core == nil {
		return nil
	}
	var errs []error
	for lt := range want {
		var label uint32
		var err error
		target := LabelTarget{VRF: lt.VRF}
		if lt.Prefix.IsValid() {
			i, ok := r.ifindex[lt.Interface]
			if !ok {
				continue // the interface comes later
			}
			target.Interface = i
			label, err = r.core.Labels().Prefix(lt.VRF, lt.Prefix)
		} else {
			label, err = r.core.Labels().VRF(lt.VRF)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("allocate label of %q: %w", lt.VRF, err))
			continue
		}
		if old, ok := r.labels[lt]; ok && old == label {
			continue
		}
		if err := r.dp.SetLabel(label, target); err != nil {
			errs = append(errs, err)
			continue
		}
		r.labels[lt] = label
	}
	return errors.Join(errs...)
}
