package bgp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// TestDeltaVisitsOnlyTouchedVRFs: with a hundred VRFs configured, a
// commit that changes one VRF, or adds a pod to one, or moves a pod from
// one VRF to another, translates, exports and publishes only the VRFs it
// touches (counted, not timed), and leaves BGP where a translation of
// the whole configuration from scratch would: the same VRFs, exports and
// labels.
func TestDeltaVisitsOnlyTouchedVRFs(t *testing.T) {
	n := startNode(t, Config{ListenPort: -1, PeerPort: 1799})
	h := hostConf{as: 65000, routerID: "10.0.7.1", endpoint: "192.0.2.71",
		neighbors: []nbrConf{{addr: "192.0.2.79", as: 65000, passive: true}}}
	const vrfs = 100
	for i := range vrfs {
		h.vrfs = append(h.vrfs, vrfConf{name: fmt.Sprintf("v%d", i), rd: fmt.Sprintf("10.0.7.1:%d", i),
			imp: []string{fmt.Sprintf("65000:%d", i)}, exp: []string{fmt.Sprintf("65000:%d", i)},
			pool: fmt.Sprintf("10.7.%d.0/24", i), pods: []string{fmt.Sprintf("10.7.%d.1", i)}, perPrefix: i%2 == 1})
	}
	n.commit(h)
	ctx := context.Background()
	if err := n.bgp.publishState(ctx); err != nil {
		t.Fatal(err)
	}
	commit := func(what string, edit func(d *gen.Device)) {
		t.Helper()
		before := n.bgp.visits.Load()
		if _, err := n.core.Commit(ctx, "test", func(d *gen.Device) error { edit(d); return nil }); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got := n.bgp.visits.Load() - before; got > 2 {
			t.Errorf("%s: BGP looked at %d network instances, want at most the 2 it touches", what, got)
		}
		if s := n.bgp.snapshot(); len(s.vrfs) > 2 || s.all {
			t.Errorf("%s: state publication covers %d VRFs (all: %t), want at most 2", what, len(s.vrfs), s.all)
		}
		n.checkAgainstFull(t, what)
	}
	nis := func(d *gen.Device) map[string]*niT { return d.NetworkInstances.NetworkInstance }
	commit("change an import route target", func(d *gen.Device) {
		nis(d)["v7"].Config.ImportRouteTarget = []string{"65000:7", "65001:7"}
	})
	commit("change an export route target", func(d *gen.Device) {
		nis(d)["v8"].Config.ExportRouteTarget = []string{"65001:8"}
	})
	commit("add a pod", func(d *gen.Device) {
		c := d.Interfaces.GetOrCreateInterface("v9-podx").GetOrCreateConfig()
		c.Name, c.Type, c.NetworkInstance = ygot.String("v9-podx"), gen.IsthmusTypes_InterfaceType_POD, ygot.String("v9")
		c.Ipv4Address = ygot.String("10.7.9.2/32")
	})
	commit("move a pod to another VRF", func(d *gen.Device) {
		c := d.Interfaces.Interface["v9-podx"].Config
		c.NetworkInstance, c.Ipv4Address = ygot.String("v10"), ygot.String("10.7.10.2/32")
	})
	commit("a per-prefix VRF becomes per-VRF", func(d *gen.Device) {
		nis(d)["v11"].Config.LabelAllocationMode = gen.IsthmusTypes_LabelAllocationMode_PER_VRF
	})
	commit("give a VRF a service its pod serves", func(d *gen.Device) {
		svc := nis(d)["v20"].GetOrCreateServices().GetOrCreateService("web")
		sc := svc.GetOrCreateConfig()
		sc.Address, sc.Protocol, sc.Port = ygot.String("10.96.0.20"), gen.IsthmusNetworkInstance_ServiceProtocol_TCP, ygot.Uint16(80)
		svc.GetOrCreateBackends().GetOrCreateBackend("10.7.20.1", 8080)
	})
	n.bgp.mu.Lock()
	_, svcExported := n.bgp.exported[exportKey{"v20", mustPrefix("10.96.0.20/32")}]
	n.bgp.mu.Unlock()
	if !svcExported {
		t.Error("the service address of v20 is not exported")
	}
	commit("add a VRF", func(d *gen.Device) {
		ni := d.NetworkInstances.GetOrCreateNetworkInstance("new")
		c := ni.GetOrCreateConfig()
		c.Name, c.Type, c.RouteDistinguisher = ygot.String("new"), gen.IsthmusTypes_NetworkInstanceType_L3VRF, ygot.String("10.0.7.1:999")
		c.ImportRouteTarget, c.ExportRouteTarget = []string{"65000:999"}, []string{"65000:999"}
	})
	commit("remove a VRF and its pod", func(d *gen.Device) {
		delete(nis(d), "v12")
		delete(d.Interfaces.Interface, "v12-pod0")
	})
	// A duplicate RD is refused by the delta's own check.
	_, err := n.core.Commit(ctx, "test", func(d *gen.Device) error {
		nis(d)["v13"].Config.RouteDistinguisher = ygot.String("10.0.7.1:14")
		return nil
	})
	if err == nil {
		t.Error("a VRF took the RD of another")
	}
	n.checkAgainstFull(t, "after the refused commit")
}

// checkAgainstFull compares what the reconciler applied with a
// translation of the whole running configuration.
func (n *node) checkAgainstFull(t *testing.T, what string) {
	t.Helper()
	cfg := n.core.Config()
	want, err := intentOf(cfg, n.bgp.local())
	if err != nil {
		t.Fatal(err)
	}
	if err := serviceRoutes(want, cfg); err != nil {
		t.Fatal(err)
	}
	floatingRoutes(want, cfg)
	labels := n.core.Labels()
	wantExp, err := exportRoutes(want, func(vrf string, mode labelMode, p netip.Prefix) (uint32, error) {
		if mode == labelPerPrefix {
			return labels.Prefix(vrf, p)
		}
		return labels.VRF(vrf)
	})
	if err != nil {
		t.Fatal(err)
	}
	n.bgp.mu.Lock()
	defer n.bgp.mu.Unlock()
	if diff := cmp.Diff(want.vrfs, n.bgp.applied.vrfs, cmpOpts...); diff != "" {
		t.Errorf("%s: applied VRFs differ from a full translation (-want +got):\n%s", what, diff)
	}
	if diff := cmp.Diff(wantExp, n.bgp.exported, append(cmpOpts, cmp.AllowUnexported(exportKey{}))...); diff != "" {
		t.Errorf("%s: exports differ from a full translation (-want +got):\n%s", what, diff)
	}
	fresh := newView(cfg, want)
	for k := range n.bgp.exported {
		addPrefix(fresh.exportedIn, k.vrf, k.prefix)
	}
	if diff := cmp.Diff(fresh, n.bgp.view, append(cmpOpts, cmp.AllowUnexported(view{}))...); diff != "" {
		t.Errorf("%s: view differs from one built afresh (-want +got):\n%s", what, diff)
	}
	for _, o := range labels.All() {
		v, ok := want.vrfs[o.VRF]
		if !ok || (o.Prefix.IsValid() && (v.labelMode != labelPerPrefix || !hasRoute(v, o.Prefix))) {
			t.Errorf("%s: label of %+v kept, no route needs it", what, o)
		}
	}
}

// failAfter is a reconciler registered after BGP that fails the commits
// it is told to, so the core undoes BGP's Apply of them.
type failAfter struct{ fail bool }

func (f *failAfter) ID() string                             { return "fail-after" }
func (f *failAfter) Start(context.Context, *nos.Core) error { return nil }
func (f *failAfter) Validate(*gen.Device) error             { return nil }
func (f *failAfter) Stop(context.Context) error             { return nil }
func (f *failAfter) Apply(_ context.Context, _, _ *gen.Device) error {
	if f.fail {
		return errors.New("refused")
	}
	return nil
}

// TestDeltaUndone: when a reconciler after BGP fails a commit, the core
// undoes BGP's Apply by the reverse delta, and BGP is back where a
// translation of the running configuration puts it: the VRF the commit
// added is not exported, the one it removed is again, the one it changed
// exports as before.
func TestDeltaUndone(t *testing.T) {
	store, err := nos.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	cfg := Config{ListenPort: -1, PeerPort: 1797, Logger: testLogger(t)}
	r, f := New(cfg), &failAfter{}
	core, err := nos.New(store, nos.WithReconcilers(r, f), nos.WithLogger(cfg.Logger))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { core.Stop(context.Background()); cancel() })
	if err := core.Start(ctx); err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, core: core, bgp: r, cfg: cfg}
	h := hostConf{as: 65000, routerID: "10.0.6.1", endpoint: "192.0.2.61"}
	for i := range 10 {
		h.vrfs = append(h.vrfs, vrfConf{name: fmt.Sprintf("v%d", i), rd: fmt.Sprintf("10.0.6.1:%d", i),
			imp: []string{fmt.Sprintf("65000:%d", i)}, exp: []string{fmt.Sprintf("65000:%d", i)},
			pool: fmt.Sprintf("10.6.%d.0/24", i), pods: []string{fmt.Sprintf("10.6.%d.1", i)}, perPrefix: i%2 == 1})
	}
	n.commit(h)
	n.checkAgainstFull(t, "start")
	f.fail = true
	_, err = core.Commit(ctx, "test", func(d *gen.Device) error {
		nis := d.NetworkInstances.NetworkInstance
		c := d.NetworkInstances.GetOrCreateNetworkInstance("new").GetOrCreateConfig()
		c.Name, c.Type, c.RouteDistinguisher = ygot.String("new"), gen.IsthmusTypes_NetworkInstanceType_L3VRF, ygot.String("10.0.6.1:99")
		c.ExportRouteTarget = []string{"65000:99"}
		p := d.Interfaces.GetOrCreateInterface("new-pod").GetOrCreateConfig()
		p.Name, p.Type, p.NetworkInstance, p.Ipv4Address = ygot.String("new-pod"), gen.IsthmusTypes_InterfaceType_POD, ygot.String("new"), ygot.String("10.6.99.1/32")
		delete(nis, "v3")
		delete(d.Interfaces.Interface, "v3-pod0")
		nis["v4"].Config.ExportRouteTarget = []string{"65001:4"}
		d.Interfaces.Interface["v5-pod0"].Config.NetworkInstance = ygot.String("v6")
		d.Interfaces.Interface["v5-pod0"].Config.Ipv4Address = ygot.String("10.6.6.9/32")
		return nil
	})
	if err == nil {
		t.Fatal("the commit succeeded although a reconciler refused it")
	}
	n.checkAgainstFull(t, "after the undo")
	n.bgp.mu.Lock()
	_, v3 := n.bgp.exported[exportKey{"v3", mustPrefix("10.6.3.1/32")}]
	_, added := n.bgp.exported[exportKey{"new", mustPrefix("10.6.99.1/32")}]
	n.bgp.mu.Unlock()
	if !v3 || added {
		t.Errorf("after the undo: v3's pod exported %t (want true), new's %t (want false)", v3, added)
	}
}

// TestDeltaWithoutBGP: with BGP not configured, nothing is exported, so a
// pod added by delta to a VRF with export route targets needs no tunnel
// source, as a full validation of the same configuration says.
func TestDeltaWithoutBGP(t *testing.T) {
	n := startNode(t, Config{ListenPort: -1, PeerPort: 1799})
	n.commit(hostConf{vrfs: []vrfConf{{name: "red", rd: "10.0.8.1:1", imp: []string{"65000:1"}, exp: []string{"65000:1"},
		pool: "10.8.0.0/24", pods: []string{"10.8.0.1"}}}})
	_, err := n.core.Commit(context.Background(), "test", func(d *gen.Device) error {
		c := d.GetOrCreateInterfaces().GetOrCreateInterface("red-pody").GetOrCreateConfig()
		c.Name, c.Type, c.NetworkInstance = ygot.String("red-pody"), gen.IsthmusTypes_InterfaceType_POD, ygot.String("red")
		c.Ipv4Address = ygot.String("10.8.0.2/32")
		return nil
	})
	if err != nil {
		t.Fatalf("add a pod without BGP configured: %v", err)
	}
}
