package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

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

	mu        sync.Mutex // guards every field below
	dp        *Dataplane
	core      *nos.Core
	applied   intent
	ifindex   map[string]int         // attached interface name → ifindex
	labels    map[labelTarget]uint32 // installed labels
	fib       map[RouteKey][]NextHop // FIB routes installed
	endpoints map[netip.Addr]int     // endpoint → FIB next hops using it
	known     map[RouteKey]struct{}  // routes confirmed since Start
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
		cfg:       cfg,
		log:       cfg.Logger.With("reconciler", "dataplane"),
		ifindex:   map[string]int{},
		labels:    map[labelTarget]uint32{},
		fib:       map[RouteKey][]NextHop{},
		endpoints: map[netip.Addr]int{},
		known:     map[RouteKey]struct{}{},
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
	r.mu.Lock()
	r.dp, r.core = dp, core
	r.mu.Unlock()
	ctx, r.cancel = context.WithCancel(ctx)
	r.wg.Add(4)
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
	return r.dp.Close()
}

// Validate implements nos.Reconciler.
func (r *Reconciler) Validate(intended *gen.Device) error {
	in, err := intentOf(intended)
	if err != nil {
		return err
	}
	return in.validate()
}

// Apply implements nos.Reconciler: it moves the forwarder from the intent
// it last applied to intended (old is not needed: the reconciler remembers
// what it programmed, including across a failed Apply).
func (r *Reconciler) Apply(ctx context.Context, old, intended *gen.Device) error {
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
		for ep := range r.endpoints {
			if err := r.dp.SetEndpoint(Endpoint{Addr: ep, TransportLabel: want.Neighbors[ep]}); err != nil {
				return err
			}
		}
	}
	// Routes and labels that go away first, then interfaces.
	wantRoutes, haveRoutes := want.localRoutes(), have.localRoutes()
	var gone []RouteKey
	for k, ifname := range haveRoutes {
		if w, ok := wantRoutes[k]; !ok || w != ifname {
			if _, remote := r.fib[k]; !remote {
				gone = append(gone, k)
			}
		}
	}
	if err := r.dp.DeleteRoutes(gone); err != nil {
		return err
	}
	wantLabels := want.labelTargets()
	for lt, label := range r.labels {
		if _, ok := wantLabels[lt]; !ok {
			if err := r.dp.DeleteLabel(label); err != nil {
				return err
			}
			delete(r.labels, lt)
		}
	}
	for ifname, p := range have.Pods {
		if w, ok := want.Pods[ifname]; ok && w.VRF == p.VRF && w.PeerMAC == p.PeerMAC {
			continue
		}
		if i, ok := r.ifindex[ifname]; ok {
			if err := r.dp.DetachInterface(i); err != nil {
				return err
			}
			delete(r.ifindex, ifname)
		}
	}
	for ifname, p := range want.Pods {
		if p.PeerMAC == "" {
			continue // not plugged yet
		}
		i, err := r.dp.LinkIndex(ifname)
		if err != nil {
			r.log.Warn("pod interface not present", "interface", ifname, "err", err)
			continue
		}
		mac, _ := net.ParseMAC(p.PeerMAC)
		if err := r.dp.AttachInterface(Interface{Index: i, VRF: p.VRF, PeerMAC: mac}); err != nil {
			return err
		}
		r.ifindex[ifname] = i
	}
	var routes []Route
	for k, ifname := range wantRoutes {
		i, err := r.interfaceIndex(ifname)
		if err != nil {
			r.log.Warn("route to an absent interface", "vrf", k.VRF, "prefix", k.Prefix, "interface", ifname)
			continue
		}
		routes = append(routes, Route{RouteKey: k, Interface: i})
		r.known[k] = struct{}{}
	}
	if err := r.dp.SetRoutes(routes); err != nil {
		return err
	}
	if err := r.installLabels(wantLabels); err != nil {
		return err
	}
	r.applied = want
	return nil
}

// interfaceIndex returns the ifindex of an attached pod or any other
// interface of the host.
func (r *Reconciler) interfaceIndex(name string) (int, error) {
	if i, ok := r.ifindex[name]; ok {
		return i, nil
	}
	return r.dp.LinkIndex(name)
}

// installLabels makes sure every wanted label is allocated (by the core,
// which BGP advertises from) and programmed.
func (r *Reconciler) installLabels(want map[labelTarget]struct{}) error {
	if r.core == nil {
		return nil
	}
	for lt := range want {
		var label uint32
		var err error
		target := LabelTarget{VRF: lt.VRF}
		if lt.Prefix.IsValid() {
			label, err = r.core.Labels().Prefix(lt.VRF, lt.Prefix)
			if target.Interface, err = r.interfaceIndex(lt.Interface); err != nil {
				continue // the interface comes later
			}
		} else {
			label, err = r.core.Labels().VRF(lt.VRF)
		}
		if err != nil {
			return fmt.Errorf("allocate label of %q: %w", lt.VRF, err)
		}
		if old, ok := r.labels[lt]; ok && old == label {
			continue
		}
		if err := r.dp.SetLabel(label, target); err != nil {
			return err
		}
		r.labels[lt] = label
	}
	return nil
}

// applyFIB programs a batch of FIB changes: endpoints first, then routes,
// then endpoints no route uses any more.
func (r *Reconciler) applyFIB(changes []nos.RouteChange) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var set []Route
	var del []RouteKey
	var unused []netip.Addr
	local := r.applied.localRoutes()
	for _, c := range changes {
		k := RouteKey{VRF: c.VRF, Prefix: c.Prefix.Masked()}
		for _, nh := range r.fib[k] {
			if r.endpoints[nh.Endpoint]--; r.endpoints[nh.Endpoint] == 0 {
				unused = append(unused, nh.Endpoint)
			}
		}
		delete(r.fib, k)
		if _, local := local[k]; local {
			continue // a local pod or static route wins over a learnt one
		}
		if c.Deleted || len(c.NextHops) == 0 {
			del = append(del, k)
			continue
		}
		nhs := make([]NextHop, 0, len(c.NextHops))
		for _, nh := range c.NextHops {
			nhs = append(nhs, nh)
			if r.endpoints[nh.Endpoint]++; r.endpoints[nh.Endpoint] == 1 {
				err := r.dp.SetEndpoint(Endpoint{Addr: nh.Endpoint, TransportLabel: r.applied.Neighbors[nh.Endpoint]})
				if err != nil {
					r.log.Error("add endpoint", "endpoint", nh.Endpoint, "err", err)
				}
			}
		}
		if len(nhs) > MaxNextHops {
			nhs = nhs[:MaxNextHops]
		}
		r.fib[k] = nhs
		r.known[k] = struct{}{}
		set = append(set, Route{RouteKey: k, NextHops: nhs})
	}
	if err := r.dp.SetRoutes(set); err != nil {
		r.log.Error("program fib routes", "routes", len(set), "err", err)
	}
	if err := r.dp.DeleteRoutes(del); err != nil {
		r.log.Error("delete fib routes", "routes", len(del), "err", err)
	}
	for _, ep := range unused {
		if r.endpoints[ep] > 0 {
			continue
		}
		delete(r.endpoints, ep)
		if err := r.dp.DeleteEndpoint(ep); err != nil {
			r.log.Error("delete endpoint", "endpoint", ep, "err", err)
		}
	}
}

// sweep deletes routes that an earlier process pinned and that neither the
// configuration nor the FIB has confirmed since Start.
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
	return r.dp.DeleteRoutes(stale)
}
