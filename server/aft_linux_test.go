package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	bgpr "github.com/isthmus-net/isthmus/bgp"
	"github.com/isthmus-net/isthmus/dataplane"
	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/internal/testenv"
	"github.com/isthmus-net/isthmus/nos"
)

// aftHost is one host of the AFT tests: its BGP neighbor, AS, endpoint and
// VRF red (RT 65000:1) with pod addresses.
type aftHost struct {
	as       uint32
	routerID string
	endpoint string
	neighbor string
	local    string
	passive  bool
	rd, pool string
	pods     []string
	macs     []string          // the pods' peer MACs, when plugged
	statics  map[string]string // static routes: prefix → interface
}

func (h aftHost) build(d *gen.Device) {
	*d = gen.Device{}
	def := d.GetOrCreateNetworkInstances().GetOrCreateNetworkInstance("default")
	def.GetOrCreateConfig().Name = ygot.String("default")
	def.GetOrCreateConfig().Type = gen.IsthmusTypes_NetworkInstanceType_DEFAULT
	d.GetOrCreateTunnel().GetOrCreateConfig().SourceAddress = ygot.String(h.endpoint)
	p := def.GetOrCreateProtocols().GetOrCreateProtocol(gen.IsthmusTypes_ProtocolType_BGP, "bgp")
	p.GetOrCreateConfig().Identifier = gen.IsthmusTypes_ProtocolType_BGP
	p.GetOrCreateConfig().Name = ygot.String("bgp")
	b := p.GetOrCreateBgp()
	b.GetOrCreateGlobal().GetOrCreateConfig().As = ygot.Uint32(h.as)
	b.GetOrCreateGlobal().GetOrCreateConfig().RouterId = ygot.String(h.routerID)
	nb := b.GetOrCreateNeighbors().GetOrCreateNeighbor(h.neighbor)
	nb.GetOrCreateConfig().NeighborAddress = ygot.String(h.neighbor)
	nb.GetOrCreateConfig().PeerAs = ygot.Uint32(h.as)
	t := nb.GetOrCreateTimers().GetOrCreateConfig()
	t.ConnectRetry, t.HoldTime, t.KeepaliveInterval = ygot.Uint16(1), ygot.Uint16(9), ygot.Uint16(3)
	tr := nb.GetOrCreateTransport().GetOrCreateConfig()
	tr.LocalAddress = ygot.String(h.local)
	if h.passive {
		tr.PassiveMode = ygot.Bool(true)
	}
	ni := d.GetOrCreateNetworkInstances().GetOrCreateNetworkInstance("red")
	c := ni.GetOrCreateConfig()
	c.Name, c.Type, c.RouteDistinguisher = ygot.String("red"), gen.IsthmusTypes_NetworkInstanceType_L3VRF, ygot.String(h.rd)
	c.ImportRouteTarget, c.ExportRouteTarget = []string{"65000:1"}, []string{"65000:1"}
	ni.GetOrCreateAddressPools().GetOrCreateAddressPool(h.pool).GetOrCreateConfig().Prefix = ygot.String(h.pool)
	for i, a := range h.pods {
		name := fmt.Sprintf("pod%d", i)
		ifc := d.GetOrCreateInterfaces().GetOrCreateInterface(name).GetOrCreateConfig()
		ifc.Name, ifc.Type, ifc.NetworkInstance = ygot.String(name), gen.IsthmusTypes_InterfaceType_POD, ygot.String("red")
		ifc.Ipv4Address = ygot.String(a + "/32")
		if i < len(h.macs) {
			ifc.GetOrCreatePod().PeerMacAddress = ygot.String(h.macs[i])
		}
	}
	for prefix, ifname := range h.statics {
		c := ni.GetOrCreateStaticRoutes().GetOrCreateStatic(prefix).GetOrCreateConfig()
		c.Prefix, c.Interface = ygot.String(prefix), ygot.String(ifname)
	}
}

// startCore starts a core with reconcilers in dir and stops it at cleanup.
func startCore(t testing.TB, dir string, recs ...nos.Reconciler) (*nos.Core, error) {
	st, err := nos.OpenStore(filepath.Join(dir, "store"))
	if err != nil {
		return nil, err
	}
	core, err := nos.New(st, nos.WithReconcilers(recs...), nos.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		st.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := core.Start(ctx); err != nil {
		cancel()
		st.Close()
		return nil, err
	}
	t.Cleanup(func() {
		stop, done := context.WithTimeout(context.Background(), time.Minute)
		defer done()
		core.Stop(stop)
		cancel()
		st.Close()
	})
	return core, nil
}

// startIsolated starts a core in a network namespace of its own: the
// dataplane's netlink handle, its neighbor solicitations and its retry
// loop stay there. The goroutine that entered it keeps its thread locked
// and ends, so the thread is discarded; everything else (the gNMI server,
// BGP's sockets, gnmic) stays in the test's namespace. The namespace's
// handle is returned (closed at cleanup), for links the test puts there.
func startIsolated(t testing.TB, dir string, recs ...nos.Reconciler) (*nos.Core, netns.NsHandle, error) {
	type result struct {
		core *nos.Core
		ns   netns.NsHandle
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread goes with this goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("unshare netns: %w", err)}
			return
		}
		ns, err := netns.Get()
		if err != nil {
			ch <- result{err: fmt.Errorf("open netns: %w", err)}
			return
		}
		t.Cleanup(func() { ns.Close() })
		c, err := startCore(t, dir, recs...)
		ch <- result{c, ns, err}
	}()
	r := <-ch
	return r.core, r.ns, r.err
}

// aftEnv is host a (core with the dataplane and BGP reconcilers, and a
// gNMI server) and host b (BGP only), peers over loopback.
type aftEnv struct {
	*testEnv
	a, b   *nos.Core
	nsA    netns.NsHandle // host a's network namespace
	hostA  aftHost
	hostB  aftHost
	commit func(core *nos.Core, h aftHost)
}

func newAFTEnv(t *testing.T, port int) *aftEnv {
	testenv.Privileged(t)
	pins := t.TempDir()
	t.Cleanup(func() { unix.Unmount(pins, unix.MNT_DETACH) })
	dp := dataplane.New(dataplane.ReconcilerConfig{
		Config:           dataplane.Config{BPFFS: pins, Logger: slog.New(slog.DiscardHandler)},
		StateInterval:    time.Hour,
		NeighborInterval: time.Hour,
	})
	t.Cleanup(func() {
		if d, err := dataplane.Open(dataplane.Config{BPFFS: pins, Logger: slog.New(slog.DiscardHandler)}); err == nil {
			d.Destroy()
		}
	})
	cfgOf := func(addr string) bgpr.Config {
		return bgpr.Config{Logger: slog.New(slog.DiscardHandler), ListenPort: int32(port), ListenAddresses: []string{addr}, PeerPort: uint16(port)}
	}
	dirA := t.TempDir()
	a, nsA, err := startIsolated(t, dirA, dp, bgpr.New(cfgOf("127.100.7.1")))
	if err != nil {
		t.Fatalf("start host a: %v", err)
	}
	b, err := startCore(t, t.TempDir(), bgpr.New(cfgOf("127.100.7.2")))
	if err != nil {
		t.Fatalf("start host b: %v", err)
	}
	srv := New(a, WithLogger(slog.New(slog.DiscardHandler)), WithSecurity(SecurityConfig{Users: testUsers(t)}), WithDataDir(dirA))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, lis) }()
	te := &testEnv{core: a, srv: srv, addr: lis.Addr().String(), dataDir: dirA}
	t.Cleanup(func() {
		te.conn.Close()
		cancel()
		<-served
	})
	te.conn = te.dial(t, nil)
	te.cli = gpb.NewGNMIClient(te.conn)
	e := &aftEnv{testEnv: te, a: a, b: b, nsA: nsA,
		hostA: aftHost{as: 65000, routerID: "10.0.0.1", endpoint: "192.0.2.1", neighbor: "127.100.7.2", local: "127.100.7.1",
			rd: "10.0.0.1:1", pool: "10.1.0.0/24", pods: []string{"10.1.0.5"}},
		hostB: aftHost{as: 65000, routerID: "10.0.0.2", endpoint: "192.0.2.2", neighbor: "127.100.7.1", local: "127.100.7.2", passive: true,
			rd: "10.0.0.2:1", pool: "10.1.1.0/24"}, // no pods: each test gives b the routes it announces
	}
	e.commit = func(core *nos.Core, h aftHost) {
		t.Helper()
		if _, err := core.Commit(context.Background(), "test", func(d *gen.Device) error { h.build(d); return nil }); err != nil {
			t.Fatalf("commit: %v", err)
		}
	}
	e.commit(b, e.hostB)
	e.commit(a, e.hostA)
	return e
}

// addPodLink adds, in host a's namespace, a veth pair whose host end is
// ifname, and returns the MAC of its other (the pod's) end.
func (e *aftEnv) addPodLink(t *testing.T, ifname string) string {
	t.Helper()
	h, err := netlink.NewHandleAt(e.nsA)
	if err != nil {
		t.Fatalf("netlink in host a: %v", err)
	}
	defer h.Close()
	peer := ifname + "p"
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: ifname}, PeerName: peer}); err != nil {
		t.Fatalf("add veth %s: %v", ifname, err)
	}
	l, err := h.LinkByName(peer)
	if err != nil {
		t.Fatalf("find %s: %v", peer, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		t.Fatalf("set %s up: %v", peer, err)
	}
	return l.Attrs().HardwareAddr.String()
}

// freeBGPPort returns a TCP port free on every one of addrs (tests of
// other packages, or other runs, may use the loopback addresses too).
func freeBGPPort(t *testing.T, addrs ...string) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", addrs[0]+":0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		ok := true
		for _, a := range addrs[1:] {
			l2, err := net.Listen("tcp", fmt.Sprintf("%s:%d", a, port))
			if err != nil {
				ok = false
				break
			}
			l2.Close()
		}
		l.Close()
		if ok {
			return port
		}
	}
	t.Fatal("no port free on every address")
	return 0
}

// since returns what out printed after mark (an earlier length).
func since(out *lockedBuffer, mark int) string { return out.String()[mark:] }

// waitForAfter is waitFor for what is printed after mark.
func waitForAfter(t *testing.T, out *lockedBuffer, mark int, subs ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !contains(since(out, mark), subs...) {
		if time.Now().After(deadline) {
			t.Fatalf("gnmic never printed %q after the change:\n%s", subs, since(out, mark))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestGnmicAFT: a route host a learns from its BGP peer b appears in a's
// forwarding table over gNMI (Get of the one prefix, Subscribe ON_CHANGE),
// with its next hop (b's endpoint, b's label, MPLS over UDP) and its BGP
// origin (b's RD, the route target); when b's endpoint changes the stream
// shows the new next hop, and when b withdraws it the stream deletes the
// entry. Each of the three happens after the subscription's initial sync,
// so each is a live update. The paths a received from and advertised to b
// are read with Get; a subscription to the neighbor does not stream them.
// a's own pod and static route appear with their origins.
func TestGnmicAFT(t *testing.T) {
	if testing.Short() {
		t.Skip("builds gnmic")
	}
	e := newAFTEnv(t, freeBGPPort(t, "127.100.7.1", "127.100.7.2"))
	g := newGnmic(t, e.testEnv)
	red := "/network-instances/network-instance[name=red]/afts"
	entry := red + "/ipv4-unicast/ipv4-entry[prefix=10.1.1.7/32]"
	nbr := "/network-instances/network-instance[name=default]/protocols/protocol[identifier=BGP][name=bgp]/bgp/neighbors/neighbor[neighbor-address=127.100.7.2]"

	out := g.start(t, "subscribe", "--format", "prototext", "--mode", "stream", "--stream-mode", "on-change", "--path", red)
	nbrOut := g.start(t, "subscribe", "--format", "prototext", "--mode", "stream", "--stream-mode", "on-change", "--path", nbr)
	waitFor(t, out, "sync_response:")
	waitFor(t, nbrOut, "sync_response:")
	// b announces its pod only now: the route's add is an update after
	// the initial sync.
	mark := len(out.String())
	e.hostB.pods = []string{"10.1.1.7"}
	e.commit(e.b, e.hostB)
	waitForAfter(t, out, mark, `"10.1.1.7/32"`, `192.0.2.2`, `MPLS_OVER_UDP`, `\"BGP\"`, `10.0.0.2:1`)
	if strings.Contains(out.String()[:mark], "10.1.1.7") {
		t.Fatalf("the route was in the initial sync, before b announced it:\n%s", out.String()[:mark])
	}
	// The neighbor's stream carries its state, not the paths it sent.
	waitFor(t, nbrOut, "session-state")
	if strings.Contains(nbrOut.String(), "10.1.1.7/32") {
		t.Fatalf("a subscription to the neighbor streams its received paths:\n%s", nbrOut.String())
	}

	got := g.mustRun(t, []string{`"origin-protocol": "BGP"`, `"10.0.0.2:1"`, `"65000:1"`, `"next-hop-group"`},
		"get", "--type", "state", "--encoding", "json_ietf", "--path", entry)
	if strings.Contains(got, "10.1.0.5") {
		t.Fatalf("a Get of one prefix answered with others:\n%s", got)
	}
	// The group's next hop, by the index the stream gave.
	g.mustRun(t, []string{`"ip-address": "192.0.2.2"`, `"encapsulate-header": "MPLS_OVER_UDP"`, `"pushed-mpls-label-stack"`},
		"get", "--type", "state", "--encoding", "json_ietf", "--path", red+"/next-hops")

	paths := nbr + "/afi-safis/afi-safi[afi-safi-name=L3VPN_IPV4_UNICAST]/paths"
	g.mustRun(t, []string{`"10.0.0.2:1:10.1.1.7/32"`, `"next-hop": "192.0.2.2"`, `"route-target"`},
		"get", "--type", "state", "--encoding", "json_ietf", "--path", paths+"/received")
	g.mustRun(t, []string{`"10.0.0.1:1:10.1.0.5/32"`, `"next-hop": "192.0.2.1"`},
		"get", "--type", "state", "--encoding", "json_ietf", "--path", paths+"/advertised")

	// b moves to another endpoint: the entry takes a new group whose next
	// hop is the new endpoint.
	mark = len(out.String())
	e.hostB.endpoint = "192.0.2.3"
	e.commit(e.b, e.hostB)
	waitForAfter(t, out, mark, `192.0.2.3`, `"10.1.1.7/32"`, `"next-hop-group"`)

	// b withdraws the route: the stream deletes the entry.
	mark = len(out.String())
	e.hostB.pods = nil
	e.commit(e.b, e.hostB)
	waitForAfter(t, out, mark, "delete:", `"10.1.1.7/32"`)
	if _, err := g.run(t, adminUser, adminPass, "get", "--type", "state", "--path", entry); err == nil {
		t.Fatal("a Get of the withdrawn prefix succeeded")
	}

	// a's own routes: a pod, once plugged, with its interface as the next
	// hop (origin POD), and a static route through it (STATIC).
	mark = len(out.String())
	e.hostA.macs = []string{e.addPodLink(t, "pod0")}
	e.hostA.statics = map[string]string{"10.5.0.0/24": "pod0"}
	e.commit(e.a, e.hostA)
	waitForAfter(t, out, mark, `"10.1.0.5/32"`, `\"POD\"`, `"10.5.0.0/24"`, `\"STATIC\"`, `\"pod0\"`)
	g.mustRun(t, []string{`"origin-protocol": "POD"`},
		"get", "--type", "state", "--encoding", "json_ietf", "--path", red+"/ipv4-unicast/ipv4-entry[prefix=10.1.0.5/32]")
	g.mustRun(t, []string{`"origin-protocol": "STATIC"`},
		"get", "--type", "state", "--encoding", "json_ietf", "--path", red+"/ipv4-unicast/ipv4-entry[prefix=10.5.0.0/24]")
}
