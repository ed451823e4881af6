package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// Config configures the BGP reconciler. The zero value (with a logger) is
// what isthmusd runs: GoBGP listens on TCP 179, peers are dialled on 179,
// no GoBGP gRPC API.
type Config struct {
	// Logger receives our log and GoBGP's (keys lowercased, GoBGP's info
	// messages at debug level). Nil discards.
	Logger *slog.Logger
	// ListenPort is the TCP port to accept BGP sessions on: 0 means 179,
	// -1 means do not listen (sessions are only dialled).
	ListenPort int32
	// ListenAddresses restricts the listeners; empty means all.
	ListenAddresses []string
	// PeerPort is the TCP port peers are dialled on; 0 means 179.
	PeerPort uint16
	// GRPCAddress, when set, starts GoBGP's own gRPC API there (for the
	// gobgp CLI while debugging). Empty means no gRPC listener.
	GRPCAddress string
	// StateDir, when set, holds a heartbeat file that tells a restarted
	// daemon it is restarting, so that it asks peers to keep its routes
	// (RFC 4724 Restart State) instead of starting afresh.
	StateDir string
}

// Reconciler is the BGP reconciler. Create it with New and register it
// with the core (nos.WithReconcilers).
type Reconciler struct {
	cfg Config
	log *slog.Logger
	lvl *slog.LevelVar
	rib *rib // replaced only by Start, before the loops that use it run
	// memo keeps the translation of the VRF entries of the last
	// configuration, so Validate and Apply parse only the entries a
	// commit replaced (config_memo.go).
	memo vrfMemo
	// pending is the patch ValidateDelta made for the candidate the next
	// ApplyDelta applies (delta.go).
	pending deltaPending
	// visits counts the network instances Validate and Apply looked at
	// (all of them in full, those a commit changes by delta), for tests.
	visits atomic.Int64

	mu           sync.Mutex // guards core, ctx, sp, applied, exported, restart, peers, eor, stale, synced, counters*; held while state is written
	core         *nos.Core
	ctx          context.Context // Start's context: lifetime of the speaker and loops
	sp           *speaker
	applied      *intent // what GoBGP runs now
	exported     map[exportKey]exportRoute
	view         *view           // the applied configuration, translated and indexed (delta.go)
	stateDirty   map[string]bool // VRFs whose state may have changed since the last publication
	stateAll     bool            // every VRF's state may have changed
	restart      bool            // this start is a graceful restart
	peers        map[netip.Addr]*peerStatus
	eor          map[netip.Addr]bool
	stale        map[nos.RouteKey]bool      // FIB routes from before a restart, not yet confirmed
	staleTimers  map[netip.Addr]*time.Timer // per peer: bounds how long its stale paths are kept
	synced       bool                       // initial convergence after Start is over
	eorAt        time.Time                  // when the last End-of-RIB arrived
	advertisedAt time.Time                  // when the last export change was handed to GoBGP

	counters      map[netip.Addr]peerCounters // GoBGP's, cached (see gobgpCounters)
	countersAt    time.Time
	countersFrom  *speaker
	countersStale bool
	countersWake  bool         // a publication is due when the cache may be read again
	lastPathAt    atomic.Int64 // Unix ns of the last received UPDATE's paths

	flushWake chan struct{}
	stateWake chan struct{}
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

var _ nos.Reconciler = (*Reconciler)(nil)

// New returns a BGP reconciler.
func New(cfg Config) *Reconciler {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	lvl := &slog.LevelVar{}
	lvl.Set(slog.LevelDebug)
	return &Reconciler{
		cfg:         cfg,
		log:         log,
		lvl:         lvl,
		rib:         newRIB(),
		applied:     &intent{},
		exported:    map[exportKey]exportRoute{},
		peers:       map[netip.Addr]*peerStatus{},
		eor:         map[netip.Addr]bool{},
		stale:       map[nos.RouteKey]bool{},
		staleTimers: map[netip.Addr]*time.Timer{},
		flushWake:   make(chan struct{}, 1),
		stateWake:   make(chan struct{}, 1),
		stateDirty:  map[string]bool{},
		stateAll:    true,
	}
}

// indexExported indexes the exported routes by VRF in the view, after a
// full Apply replaced them; r.mu is held.
func (r *Reconciler) indexExported() {
	if r.view == nil {
		return
	}
	clear(r.view.exportedIn)
	for k := range r.exported {
		addPrefix(r.view.exportedIn, k.vrf, k.prefix)
	}
}

// ID returns "bgp".
func (r *Reconciler) ID() string { return "bgp" }

func (r *Reconciler) local() local {
	port := r.cfg.ListenPort
	if port == 0 {
		port = 179
	}
	return local{listenPort: port, listenAddresses: r.cfg.ListenAddresses, peerPort: r.cfg.PeerPort}
}

// Start keeps the core, remembers the routes already in the FIB (after a
// restart in the same process they stay until BGP has converged again, so
// they do not flap) and starts the loops that drain import into the FIB
// and publish state.
func (r *Reconciler) Start(ctx context.Context, core *nos.Core) error {
	ctx, cancel := context.WithCancel(ctx)
	r.mu.Lock()
	r.core, r.ctx, r.cancel = core, ctx, cancel
	r.rib = newRIB()
	r.applied, r.exported = &intent{}, map[exportKey]exportRoute{}
	r.view, r.stateDirty, r.stateAll = nil, map[string]bool{}, true
	r.peers, r.eor, r.stale, r.synced = map[netip.Addr]*peerStatus{}, map[netip.Addr]bool{}, map[nos.RouteKey]bool{}, false
	r.restart = restartPending(r.cfg.StateDir)
	for _, k := range fibKeys(ctx, core.FIB()) {
		r.stale[k] = true
	}
	core.AFT().SetOrigins(newAFTOrigins(r.rib).fill)
	core.RefreshOnRequest(ctx, pathsPrefix, r.refreshPaths)
	r.mu.Unlock()
	r.wg.Add(3)
	go func() { defer r.wg.Done(); r.flushLoop(ctx) }()
	go func() { defer r.wg.Done(); r.stateLoop(ctx) }()
	go func() { defer r.wg.Done(); r.heartbeatLoop(ctx) }()
	return nil
}

// Validate checks what only BGP knows: RD and RT syntax, unique RDs, a
// tunnel source when routes are to be exported, neighbor leaves.
func (r *Reconciler) Validate(intended *gen.Device) error {
	r.visits.Add(int64(len(nos.NetworkInstances(intended))))
	in, err := r.memo.translate(intended, r.local(), true)
	if err != nil {
		return err
	}
	if !in.enabled() {
		if in.global.as != 0 || in.global.routerID.IsValid() || len(in.neighbors) > 0 {
			return invalid(pathBGP+"/global/config", "as and router-id are both required")
		}
		return nil
	}
	if !in.endpoint.IsValid() {
		for name, v := range in.vrfs {
			if len(v.exportRTs) > 0 && len(v.routes) > 0 {
				return invalid("/tunnel/config/source-address", "required to export the routes of vrf %q", name)
			}
		}
	}
	return nil
}

// Apply moves GoBGP from what it runs now to intended. It diffs against
// what was actually applied (not against old), so a rollback after a
// partial failure converges too.
func (r *Reconciler) Apply(ctx context.Context, old, intended *gen.Device) error {
	r.visits.Add(int64(len(nos.NetworkInstances(intended))))
	want, err := r.memo.translate(intended, r.local(), false)
	if err != nil {
		return err
	}
	if err := serviceRoutes(want, intended); err != nil {
		return err
	}
	floatingRoutes(want, intended)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.core == nil {
		return errors.New("bgp: apply before start")
	}
	r.rib.setEndpoint(want.endpoint)
	r.rib.setVRFs(want.vrfs)
	// The whole configuration is translated: the view the next commits
	// patch starts from it (delta.go).
	r.view = newView(intended, want)
	r.stateAll = true
	defer r.indexExported()
	defer r.signalFlush()
	defer r.signalState()

	if !want.enabled() {
		if r.sp != nil {
			err := r.sp.stop(false)
			r.sp = nil
			r.rib.clearPaths()
			r.stopStaleTimers()
			if err != nil {
				return err
			}
		}
		r.applied, r.exported = &intent{vrfs: want.vrfs, endpoint: want.endpoint}, map[exportKey]exportRoute{}
		return r.releaseLabels(want)
	}
	if r.sp == nil || !globalEqual(r.applied.global, want.global) {
		if err := r.restartSpeaker(ctx, want); err != nil {
			return err
		}
	}
	if want.transit() != r.applied.transit() {
		if err := r.sp.setTransit(ctx, want.transit()); err != nil {
			return err
		}
		if err := r.sp.softResetOut(ctx); err != nil {
			return err
		}
	}
	if err := r.applyNeighbors(ctx, want); err != nil {
		return err
	}
	if err := r.applyExports(want); err != nil {
		return err
	}
	r.applied.global, r.applied.endpoint, r.applied.vrfs, r.applied.bgpPath = want.global, want.endpoint, want.vrfs, want.bgpPath
	return r.releaseLabels(want)
}

func globalEqual(a, b globalSpec) bool {
	if a.as != b.as || a.routerID != b.routerID || a.listenPort != b.listenPort || len(a.listenAddresses) != len(b.listenAddresses) {
		return false
	}
	for i := range a.listenAddresses {
		if a.listenAddresses[i] != b.listenAddresses[i] {
			return false
		}
	}
	return true
}

// restartSpeaker (re)creates GoBGP; every session restarts. Only a change
// of AS, router ID or listeners gets here. r.mu is held.
func (r *Reconciler) restartSpeaker(ctx context.Context, want *intent) error {
	if r.sp != nil {
		err := r.sp.stop(false)
		r.sp = nil
		// The old speaker's watch has ended: its routes would never be
		// withdrawn otherwise.
		r.rib.clearPaths()
		r.stopStaleTimers()
		if err != nil {
			return err
		}
	}
	r.applied = &intent{neighbors: map[netip.Addr]neighborSpec{}}
	r.exported = map[exportKey]exportRoute{}
	clear(r.peers)
	rb := r.rib
	rb.setLocalAS(want.global.as)
	sp, err := startSpeaker(r.ctx, r.log, r.lvl, want.global, r.cfg.GRPCAddress, want.transit(), server.WatchEventMessageCallbacks{
		OnPathUpdate: func(paths []*apiutil.Path, _ time.Time) { r.onPaths(rb, paths) },
		OnPeerUpdate: r.onPeer,
		OnPathEor:    r.onEor,
	})
	if err != nil {
		return err
	}
	r.sp = sp
	r.applied.global = want.global
	r.log.Info("bgp speaker started", "as", want.global.as, "router_id", want.global.routerID, "restarting", r.restart)
	return nil
}

// applyNeighbors adds, changes and removes sessions; untouched neighbors
// get no call at all. r.mu is held.
func (r *Reconciler) applyNeighbors(ctx context.Context, want *intent) error {
	if r.applied.neighbors == nil {
		r.applied.neighbors = map[netip.Addr]neighborSpec{}
	}
	for addr := range r.applied.neighbors {
		if _, ok := want.neighbors[addr]; ok {
			continue
		}
		if err := r.sp.deletePeer(ctx, addr); err != nil {
			return err
		}
		delete(r.applied.neighbors, addr)
		delete(r.peers, addr)
	}
	for addr, n := range want.neighbors {
		cur, ok := r.applied.neighbors[addr]
		switch {
		case !ok:
			if err := r.sp.addPeer(ctx, n, r.restart && n.gr.enabled); err != nil {
				return err
			}
		case cur == n:
			continue
		case needsReconnect(cur, n):
			if err := r.sp.deletePeer(ctx, addr); err != nil {
				return err
			}
			delete(r.applied.neighbors, addr)
			if err := r.sp.addPeer(ctx, n, false); err != nil {
				return err
			}
		default:
			if err := r.sp.updatePeer(ctx, n); err != nil {
				return err
			}
		}
		r.applied.neighbors[addr] = n
	}
	return nil
}

// needsReconnect reports whether a neighbor change can only take effect on
// a new TCP connection, which GoBGP's UpdatePeer does not make by itself.
func needsReconnect(a, b neighborSpec) bool {
	return a.authPassword != b.authPassword || a.localAddress != b.localAddress || a.passive != b.passive ||
		a.remotePort != b.remotePort || a.rrClient != b.rrClient || a.clusterID != b.clusterID ||
		a.multihop != b.multihop || a.multihopTTL != b.multihopTTL
}

// applyExports advertises and withdraws this host's routes. r.mu is held.
func (r *Reconciler) applyExports(want *intent) error {
	labels := r.core.Labels()
	routes, err := exportRoutes(want, func(vrf string, mode labelMode, p netip.Prefix) (uint32, error) {
		if mode == labelPerPrefix {
			return labels.Prefix(vrf, p)
		}
		return labels.VRF(vrf)
	})
	if err != nil {
		return err
	}
	add, del := exportDiff(r.exported, routes)
	if len(add)+len(del) == 0 {
		return nil
	}
	r.advertisedAt = time.Now()
	if err := r.sp.advertise(add, del); err != nil {
		return err
	}
	r.exported = routes
	r.log.Debug("bgp exports changed", "added", len(add), "withdrawn", len(del), "total", len(routes),
		"took", time.Since(r.advertisedAt))
	return nil
}

// releaseLabels frees the labels of VRFs and per-prefix routes that are
// gone. r.mu is held.
func (r *Reconciler) releaseLabels(want *intent) error {
	labels := r.core.Labels()
	var errs []error
	for _, o := range labels.All() {
		v, ok := want.vrfs[o.VRF]
		switch {
		case !ok && !o.Prefix.IsValid():
			errs = append(errs, labels.ReleaseVRF(o.VRF))
		case ok && o.Prefix.IsValid() && (v.labelMode != labelPerPrefix || !hasRoute(v, o.Prefix)):
			errs = append(errs, labels.ReleasePrefix(o.VRF, o.Prefix))
		}
	}
	return errors.Join(errs...)
}

func hasRoute(v vrfSpec, p netip.Prefix) bool {
	for _, q := range v.routes {
		if q == p {
			return true
		}
	}
	return false
}

// Stop stops GoBGP gracefully: peers that negotiated graceful restart keep
// our routes, and the FIB keeps the routes we imported, so forwarding goes
// on while isthmusd restarts.
func (r *Reconciler) Stop(ctx context.Context) error {
	r.mu.Lock()
	r.stopStaleTimers()
	var errs []error
	if r.sp != nil {
		errs = append(errs, r.sp.stop(true))
		r.sp = nil
	}
	cancel := r.cancel
	r.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("stop bgp: %w", ctx.Err()))
	}
	errs = append(errs, touchHeartbeat(r.cfg.StateDir))
	return errors.Join(errs...)
}

// onPaths is GoBGP's Adj-RIB-In callback (on GoBGP's watch goroutine): the
// paths and withdrawals of one received UPDATE, or the withdrawals GoBGP
// makes itself when a session ends or a peer's restart time runs out.
func (r *Reconciler) onPaths(rb *rib, paths []*apiutil.Path) {
	r.lastPathAt.Store(time.Now().UnixNano())
	if n := rb.update(paths); n > 0 {
		r.log.Debug("bgp paths rejected", "count", n)
	}
	r.signalFlush()
	// Prefix counts change with every UPDATE, whether or not the FIB does
	// (a rejected path, one no VRF imports); the state loop publishes at
	// most once per stateInterval however often it is woken.
	r.signalState()
}

// onEor records an End-of-RIB marker; once every peer has sent one, the
// routes kept from before a restart are cleaned up.
func (r *Reconciler) onEor(p *apiutil.Path, _ time.Time) {
	if p.Family != bgp.RF_IPv4_VPN {
		return
	}
	r.mu.Lock()
	r.eor[p.PeerAddress] = true
	r.eorAt = time.Now()
	if t := r.staleTimers[p.PeerAddress]; t != nil {
		t.Stop()
		delete(r.staleTimers, p.PeerAddress)
	}
	r.mu.Unlock()
	if n := r.rib.sweepStale(p.PeerAddress); n > 0 {
		r.log.Info("bgp stale paths removed after end-of-rib", "neighbor", p.PeerAddress, "count", n)
	}
	r.signalFlush()
}

func (r *Reconciler) signalFlush() {
	select {
	case r.flushWake <- struct{}{}:
	default:
	}
}

func (r *Reconciler) signalState() {
	select {
	case r.stateWake <- struct{}{}:
	default:
	}
}

// keepStale marks a peer's paths stale when its session goes down and,
// with graceful restart, removes the ones still stale after the
// neighbor's stale-routes-time, whether or not the peer is back: the peer
// has had that long to announce them again and send End-of-RIB. Without
// graceful restart GoBGP has withdrawn the paths already. r.mu is held.
func (r *Reconciler) keepStale(addr netip.Addr) {
	r.rib.markStale(addr)
	if t := r.staleTimers[addr]; t != nil {
		t.Stop()
		delete(r.staleTimers, addr)
	}
	n, ok := r.applied.neighbors[addr]
	if !ok || !n.gr.enabled {
		return
	}
	rb := r.rib
	var t *time.Timer // read by the callback under r.mu, which is held here until t is stored
	t = time.AfterFunc(time.Duration(n.gr.staleRoutesTime)*time.Second, func() {
		r.mu.Lock()
		current := r.staleTimers[addr] == t
		delete(r.staleTimers, addr)
		r.mu.Unlock()
		if !current {
			return
		}
		if gone := rb.sweepStale(addr); gone > 0 {
			r.log.Info("bgp stale paths removed: stale-routes-time expired", "neighbor", addr, "count", gone)
			r.signalFlush()
		}
	})
	r.staleTimers[addr] = t
}

// stopStaleTimers stops every stale-routes timer; r.mu is held.
func (r *Reconciler) stopStaleTimers() {
	for a, t := range r.staleTimers {
		t.Stop()
		delete(r.staleTimers, a)
	}
}
