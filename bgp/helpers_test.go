package bgp

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// hostConf is a host's configuration in test form.
type hostConf struct {
	as        uint32
	routerID  string
	endpoint  string // tunnel source
	gr        bool
	staleTime uint16 // graceful-restart stale-routes-time; 0: the default
	neighbors []nbrConf
	vrfs      []vrfConf
}

type nbrConf struct {
	addr     string
	as       uint32
	local    string // transport local-address
	rrClient bool
	password string
	// passive waits for the neighbor to connect. Between two speakers
	// that both dial, GoBGP v4.8.0 races with itself on a connection
	// collision (its dialing goroutine reads the session's error-handling
	// mode while the FSM resets it), so tests make one side passive.
	passive bool
}

type vrfConf struct {
	name      string
	rd        string
	imp, exp  []string
	pool      string
	pods      []string // addresses in pool
	statics   []string
	perPrefix bool
	mplsMPLS  bool
}

// build writes a host's configuration into d.
func (h hostConf) build(d *gen.Device) {
	def := d.GetOrCreateNetworkInstances().GetOrCreateNetworkInstance("default")
	def.GetOrCreateConfig().Name = ygot.String("default")
	def.GetOrCreateConfig().Type = gen.IsthmusTypes_NetworkInstanceType_DEFAULT
	if h.endpoint != "" {
		d.GetOrCreateTunnel().GetOrCreateConfig().SourceAddress = ygot.String(h.endpoint)
	}
	if h.as != 0 {
		p := def.GetOrCreateProtocols().GetOrCreateProtocol(gen.IsthmusTypes_ProtocolType_BGP, "bgp")
		p.GetOrCreateConfig().Identifier = gen.IsthmusTypes_ProtocolType_BGP
		p.GetOrCreateConfig().Name = ygot.String("bgp")
		b := p.GetOrCreateBgp()
		b.GetOrCreateGlobal().GetOrCreateConfig().As = ygot.Uint32(h.as)
		b.GetOrCreateGlobal().GetOrCreateConfig().RouterId = ygot.String(h.routerID)
		if h.gr {
			gr := b.GetOrCreateGlobal().GetOrCreateGracefulRestart().GetOrCreateConfig()
			gr.Enabled = ygot.Bool(true)
			gr.RestartTime = ygot.Uint16(30)
			if h.staleTime != 0 {
				gr.StaleRoutesTime = ygot.Uint16(h.staleTime)
			}
		}
		for _, n := range h.neighbors {
			nb := b.GetOrCreateNeighbors().GetOrCreateNeighbor(n.addr)
			nb.GetOrCreateConfig().NeighborAddress = ygot.String(n.addr)
			nb.GetOrCreateConfig().PeerAs = ygot.Uint32(n.as)
			t := nb.GetOrCreateTimers().GetOrCreateConfig()
			t.ConnectRetry, t.HoldTime, t.KeepaliveInterval = ygot.Uint16(1), ygot.Uint16(9), ygot.Uint16(3)
			if n.local != "" {
				nb.GetOrCreateTransport().GetOrCreateConfig().LocalAddress = ygot.String(n.local)
			}
			if n.rrClient {
				nb.GetOrCreateRouteReflector().GetOrCreateConfig().RouteReflectorClient = ygot.Bool(true)
			}
			if n.password != "" {
				nb.GetOrCreateConfig().AuthPassword = ygot.String(n.password)
			}
			if n.passive {
				nb.GetOrCreateTransport().GetOrCreateConfig().PassiveMode = ygot.Bool(true)
			}
		}
	}
	for _, v := range h.vrfs {
		ni := d.GetOrCreateNetworkInstances().GetOrCreateNetworkInstance(v.name)
		c := ni.GetOrCreateConfig()
		c.Name, c.Type, c.RouteDistinguisher = ygot.String(v.name), gen.IsthmusTypes_NetworkInstanceType_L3VRF, ygot.String(v.rd)
		c.ImportRouteTarget, c.ExportRouteTarget = v.imp, v.exp
		if v.perPrefix {
			c.LabelAllocationMode = gen.IsthmusTypes_LabelAllocationMode_PER_PREFIX
		}
		if v.mplsMPLS {
			c.Encapsulation = gen.IsthmusTypes_Encapsulation_MPLS_OVER_MPLS
		}
		if v.pool != "" {
			ni.GetOrCreateAddressPools().GetOrCreateAddressPool(v.pool).GetOrCreateConfig().Prefix = ygot.String(v.pool)
		}
		for i, a := range v.pods {
			name := fmt.Sprintf("%s-pod%d", v.name, i)
			ifc := d.GetOrCreateInterfaces().GetOrCreateInterface(name).GetOrCreateConfig()
			ifc.Name, ifc.Type, ifc.NetworkInstance = ygot.String(name), gen.IsthmusTypes_InterfaceType_POD, ygot.String(v.name)
			ifc.Ipv4Address = ygot.String(a + "/32")
		}
		for _, p := range v.statics {
			st := ni.GetOrCreateStaticRoutes().GetOrCreateStatic(p).GetOrCreateConfig()
			st.Prefix = ygot.String(p)
			st.Interface = ygot.String(v.name + "-pod0")
		}
	}
}

// node is one Isthmus host in a test: a core with only the BGP reconciler.
type node struct {
	t    testing.TB
	core *nos.Core
	bgp  *Reconciler
	dir  string
	cfg  Config
	stop context.CancelFunc
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("BGP_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// startNode starts a core with a BGP reconciler in a fresh data dir.
func startNode(t *testing.T, cfg Config) *node {
	t.Helper()
	return startNodeIn(t, t.TempDir(), cfg)
}

// startNodeB is startNode for benchmarks.
func startNodeB(b *testing.B, cfg Config) *node {
	b.Helper()
	return startNodeIn(b, b.TempDir(), cfg)
}

// startNodeIn starts a core in dir, restoring what an earlier node there
// committed.
func startNodeIn(t testing.TB, dir string, cfg Config) *node {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	store, err := nos.OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	r := New(cfg)
	core, err := nos.New(store, nos.WithReconcilers(r), nos.WithLogger(cfg.Logger))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := core.Start(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	n := &node{t: t, core: core, bgp: r, dir: dir, cfg: cfg, stop: cancel}
	t.Cleanup(func() { n.shutdown(); store.Close() })
	return n
}

func (n *node) shutdown() {
	if n.stop == nil {
		return
	}
	// Stopping a speaker that holds a million routes takes GoBGP a while.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := n.core.Stop(ctx); err != nil {
		n.t.Logf("stop core: %v", err)
	}
	n.stop()
	n.stop = nil
}

// restartBGP stops and starts the BGP reconciler of a running core, as
// a daemon restart would, but keeping the core's FIB: what the dataplane
// sees across the restart can be checked.
func (n *node) restartBGP(ctx context.Context) {
	n.t.Helper()
	if err := n.bgp.Stop(ctx); err != nil {
		n.t.Fatalf("stop bgp: %v", err)
	}
	if err := n.bgp.Start(ctx, n.core); err != nil {
		n.t.Fatalf("start bgp: %v", err)
	}
	if err := n.bgp.Apply(ctx, &gen.Device{}, n.core.Config()); err != nil {
		n.t.Fatalf("apply after restart: %v", err)
	}
}

// commitB is commit for benchmarks.
func (n *node) commitB(_ *testing.B, h hostConf) { n.commit(h) }

// commit applies a host configuration.
func (n *node) commit(h hostConf) {
	n.t.Helper()
	_, err := n.core.Commit(context.Background(), "test", func(d *gen.Device) error {
		*d = gen.Device{}
		h.build(d)
		return nil
	})
	if err != nil {
		n.t.Fatalf("commit: %v", err)
	}
}

// route returns the FIB entry of a prefix in a VRF.
func (n *node) route(vrf, prefix string) ([]nos.NextHop, bool) {
	return n.core.FIB().Lookup(nos.RouteKey{VRF: vrf, Prefix: netip.MustParsePrefix(prefix)})
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// startSpeakers starts the speaker of every node, with its host's
// configuration but no neighbors yet, before any of them has a session.
// GoBGP keeps its route-selection options in package variables that every
// StartBgp writes and every speaker reads as it passes paths on: speakers
// sharing a process (only tests run several in one) that start while
// another already has sessions are GoBGP racing with itself.
func startSpeakers(nodes []*node, hosts []hostConf) {
	for i, n := range nodes {
		h := hosts[i]
		h.neighbors = nil
		n.commit(h)
	}
}
