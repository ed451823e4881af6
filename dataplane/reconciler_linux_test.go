package dataplane

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openconfig/ygot/ygot"
	"golang.org/x/sys/unix"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// coreHost is a host namespace running the real core with the dataplane
// reconciler, as isthmusd does.
type coreHost struct {
	ns     *testNS
	dir    string // bpffs
	store  string // core's data dir
	st     *nos.Store
	core   *nos.Core
	rec    *Reconciler
	cancel context.CancelFunc
	pod    *testPod
}

// startFresh starts h on a new bpffs and store directory, and at the end
// of the test stops it and destroys the forwarder it pinned.
func (h *coreHost) startFresh(t *testing.T) {
	t.Helper()
	h.dir, h.store = t.TempDir(), t.TempDir()
	dir := h.dir
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	h.start(t)
	t.Cleanup(func() {
		h.cancel()
		if d, err := Open(Config{BPFFS: dir, Logger: quiet}); err == nil {
			d.Destroy()
		}
	})
}

func (h *coreHost) start(t *testing.T) {
	t.Helper()
	err := h.ns.do(func() error {
		st, err := nos.OpenStore(h.store)
		if err != nil {
			return err
		}
		h.st = st
		h.rec = New(ReconcilerConfig{
			Config:        Config{BPFFS: h.dir, Logger: slog.New(slog.DiscardHandler)},
			StateInterval: time.Hour, // the test publishes explicitly
			StaleGrace:    3 * time.Second,
		})
		h.core, err = nos.New(st, nos.WithReconcilers(h.rec), nos.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			st.Close()
			return err
		}
		var ctx context.Context
		ctx, h.cancel = context.WithCancel(context.Background())
		if err := h.core.Start(ctx); err != nil {
			st.Close()
			return err
		}
		stop := h.cancel
		h.cancel = func() {
			stop()
			h.core.Stop(context.Background())
			st.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("start core: %v", err)
	}
}

// commit runs a commit from the host namespace (Apply attaches programs by
// ifindex there).
func (h *coreHost) commit(t *testing.T, edit func(*gen.Device) error) {
	t.Helper()
	if err := h.ns.do(func() error {
		_, err := h.core.Commit(context.Background(), "test", edit)
		return err
	}); err != nil {
		t.Fatalf("commit: %v", err)
	}
}

func hostEdit(src netip.Addr, pool string, pod *testPod, perPrefix bool) func(*gen.Device) error {
	return func(d *gen.Device) error {
		ni := d.GetOrCreateNetworkInstances().GetOrCreateNetworkInstance("red")
		c := ni.GetOrCreateConfig()
		c.Name, c.Type = ygot.String("red"), gen.IsthmusTypes_NetworkInstanceType_L3VRF
		c.RouteDistinguisher = ygot.String("65000:1")
		c.ImportRouteTarget, c.ExportRouteTarget = []string{"65000:1"}, []string{"65000:1"}
		if perPrefix {
			c.LabelAllocationMode = gen.IsthmusTypes_LabelAllocationMode_PER_PREFIX
		}
		ni.GetOrCreateAddressPools().GetOrCreateAddressPool(pool).GetOrCreateConfig().Prefix = ygot.String(pool)
		ifs := d.GetOrCreateInterfaces()
		ul := ifs.GetOrCreateInterface("ul").GetOrCreateConfig()
		ul.Name, ul.Type = ygot.String("ul"), gen.IsthmusTypes_InterfaceType_UNDERLAY
		pc := ifs.GetOrCreateInterface(pod.hostIf).GetOrCreateConfig()
		pc.Name, pc.Type, pc.NetworkInstance = ygot.String(pod.hostIf), gen.IsthmusTypes_InterfaceType_POD, ygot.String("red")
		pc.Ipv4Address = ygot.String(pod.addr.String() + "/32")
		pc.Mtu = ygot.Uint16(podMTU)
		pc.GetOrCreatePod().PeerMacAddress = ygot.String(pod.mac.String())
		tc := d.GetOrCreateTunnel().GetOrCreateConfig()
		tc.SourceAddress, tc.UnderlayInterface = ygot.String(src.String()), ygot.String("ul")
		return nil
	}
}

func waitPing(t *testing.T, from *testPod, to netip.Addr, want bool) {
	t.Helper()
	deadline := time.Now().Add(8 * time.Second)
	for {
		_, err := from.ping(to, "-c", "1", "-W", "1")
		if (err == nil) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("ping %v from %v: reachable=%v, want %v", to, from.addr, err == nil, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// newCoreHosts builds two hosts on one underlay link, each with a pod and
// the core running the dataplane reconciler, and commits hostEdit plus
// extra on each.
func newCoreHosts(t *testing.T, extra func(i int, d *gen.Device)) (a, b *coreHost, addrs []netip.Addr) {
	requireRoot(t)
	hosts := []*coreHost{{ns: newNS(t, "hosta")}, {ns: newNS(t, "hostb")}}
	vethBetween(t, hosts[0].ns, "ul", mustMAC("02:00:00:00:00:01"), hosts[1].ns, "ul", mustMAC("02:00:00:00:00:02"))
	addrs = []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")}
	pools := []string{"10.1.0.0/24", "10.2.0.0/24"}
	for i, h := range hosts {
		h.ns.ip(t, "addr", "add", addrs[i].String()+"/24", "dev", "ul")
		h.pod = addPod(t, h.ns, "pred", byte(i+1), netip.MustParseAddr(strings.TrimSuffix(pools[i], "0/24")+"2"), podMTU)
		h.startFresh(t)
		// Host a labels per VRF, host b per prefix.
		edit := hostEdit(addrs[i], pools[i], h.pod, i == 1)
		h.commit(t, func(d *gen.Device) error {
			if err := edit(d); err != nil {
				return err
			}
			if extra != nil {
				extra(i, d)
			}
			return nil
		})
	}
	return hosts[0], hosts[1], addrs
}

func TestReconcilerDrivesForwarding(t *testing.T) {
	a, b, addrs := newCoreHosts(t, nil)
	labelA, err := a.core.Labels().VRF("red")
	must(t, err)
	labelB, err := b.core.Labels().Prefix("red", netip.PrefixFrom(b.pod.addr, 32))
	must(t, err)
	// What BGP would import on each side.
	fibA := []nos.RouteChange{{Route: nos.Route{RouteKey: nos.RouteKey{VRF: "red", Prefix: netip.MustParsePrefix("10.2.0.2/32")},
		NextHops: []nos.NextHop{{Endpoint: addrs[1], Label: labelB, Encap: nos.EncapMPLSoUDP}}}}}
	fibB := []nos.RouteChange{{Route: nos.Route{RouteKey: nos.RouteKey{VRF: "red", Prefix: netip.MustParsePrefix("10.1.0.0/24")},
		NextHops: []nos.NextHop{{Endpoint: addrs[0], Label: labelA, Encap: nos.EncapMPLSoUDP}}}}}
	a.core.FIB().Update(fibA)
	b.core.FIB().Update(fibB)
	waitPing(t, a.pod, b.pod.addr, true)
	transfer(t, a.pod, b.pod, 10<<20)

	// Counters reach the state tree.
	must(t, a.rec.PublishState())
	err = a.core.Read(func(_, state *gen.Device) error {
		ifs := nos.Interfaces(state)["pred"].GetState()
		if ifs.GetCounters().GetInPkts() == 0 || ifs.GetIfindex() == 0 {
			return fmt.Errorf("interface state %+v has no counters", ifs.GetCounters())
		}
		vrf := nos.NetworkInstances(state)["red"].GetState()
		fw := vrf.GetForwarding()
		if fw.GetRemoteRoutes() != 1 || fw.GetLocalRoutes() != 1 || len(fw.Labels) != 1 || fw.Labels[0] != labelA {
			return fmt.Errorf("vrf forwarding state %+v", fw)
		}
		ep := state.GetTunnel().GetEndpoints().GetEndpoint(addrs[1].String()).GetState()
		if ep.GetOutPkts() == 0 || ep.GetInPkts() == 0 {
			return fmt.Errorf("endpoint state %+v", ep)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("state: %v", err)
	}

	// A daemon restart under traffic: the new reconciler adopts the pinned
	// forwarder, BGP relearns the route within the grace period.
	ping := a.pod.ns.cmd("ping", "-i", "0.01", "-c", "300", "-W", "1", b.pod.addr.String())
	var out strings.Builder
	ping.Stdout = &out
	must(t, ping.Start())
	time.Sleep(200 * time.Millisecond)
	a.cancel()
	a.start(t)
	a.core.FIB().Update(slices.Clone(fibA)) // Update keeps what it is given
	if err := ping.Wait(); err != nil || !strings.Contains(out.String(), " 0% packet loss") {
		t.Fatalf("ping across a daemon restart: %v\n%s", err, lastLines(out.String(), 3))
	}
	if !a.rec.Dataplane().Adopted() {
		t.Error("restarted reconciler did not adopt the pinned forwarder")
	}

	// A withdrawn route stops forwarding; so does a deleted pod interface.
	a.core.FIB().Update([]nos.RouteChange{{Route: nos.Route{RouteKey: fibA[0].RouteKey}, Deleted: true}})
	waitPing(t, a.pod, b.pod.addr, false)
	a.core.FIB().Update(slices.Clone(fibA))
	waitPing(t, a.pod, b.pod.addr, true)
	b.commit(t, func(d *gen.Device) error {
		delete(d.Interfaces.Interface, "pred")
		return nil
	})
	waitPing(t, a.pod, b.pod.addr, false)
	if n := b.rec.Dataplane().Routes(); n != 1 {
		t.Errorf("host b has %d routes after its pod went away, want 1 (the remote one)", n)
	}
}

// TestReconcilerMPLSoMPLS configures MPLS over MPLS the way an operator
// would (VRF encapsulation, the transport label each host accepts, the
// label to push toward the other) and moves data over it.
func TestReconcilerMPLSoMPLS(t *testing.T) {
	transport := []uint32{16001, 16002}
	a, b, addrs := newCoreHosts(t, func(i int, d *gen.Device) {
		other := 1 - i
		d.GetOrCreateNetworkInstances().GetOrCreateNetworkInstance("red").GetOrCreateConfig().Encapsulation = gen.IsthmusTypes_Encapsulation_MPLS_OVER_MPLS
		tun := d.GetOrCreateTunnel()
		tun.GetOrCreateConfig().TransportLabel = ygot.Uint32(transport[i])
		n := tun.GetOrCreateNeighbors().GetOrCreateNeighbor([]string{"192.0.2.1", "192.0.2.2"}[other]).GetOrCreateConfig()
		n.Address, n.TransportLabel = ygot.String([]string{"192.0.2.1", "192.0.2.2"}[other]), ygot.Uint32(transport[other])
	})
	labelA, err := a.core.Labels().VRF("red")
	must(t, err)
	labelB, err := b.core.Labels().Prefix("red", netip.PrefixFrom(b.pod.addr, 32))
	must(t, err)
	a.core.FIB().Update([]nos.RouteChange{{Route: nos.Route{RouteKey: nos.RouteKey{VRF: "red", Prefix: netip.PrefixFrom(b.pod.addr, 32)},
		NextHops: []nos.NextHop{{Endpoint: addrs[1], Label: labelB, Encap: nos.EncapMPLSoMPLS}}}}})
	b.core.FIB().Update([]nos.RouteChange{{Route: nos.Route{RouteKey: nos.RouteKey{VRF: "red", Prefix: netip.PrefixFrom(a.pod.addr, 32)},
		NextHops: []nos.NextHop{{Endpoint: addrs[0], Label: labelA, Encap: nos.EncapMPLSoMPLS}}}}})
	waitPing(t, a.pod, b.pod.addr, true)
	transfer(t, a.pod, b.pod, 10<<20)
	transfer(t, b.pod, a.pod, 10<<20)
}
