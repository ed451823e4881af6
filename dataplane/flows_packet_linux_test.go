package dataplane

import (
	"math"
	"net/netip"
	"testing"
	"time"

	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
)

// backendOf sends a SYN from pod1 port sport to the web service and
// returns the backend address it was translated to (the packet goes to a
// remote backend, so the inner destination is at the encapsulated offset).
func backendOf(t *testing.T, e *packetEnv, sport uint16) netip.Addr {
	t.Helper()
	syn := tcpPkt(pod1Addr, sport, vipAddr, 80, tcpSYN, 64, nil)
	ret, out := run(t, e.d.progs.PodIngress, eth(loMAC, pod1PeerMAC, 0x0800, syn))
	if ret != tcRedirect {
		t.Fatalf("syn from port %d: return %d, want redirect", sport, ret)
	}
	const innerDst = 14 + 20 + 8 + 4 + 16
	return netip.AddrFrom4([4]byte(out[innerDst : innerDst+4]))
}

var (
	far1 = netip.MustParseAddr("10.2.0.11")
	far2 = netip.MustParseAddr("10.2.0.12")
	far3 = netip.MustParseAddr("10.2.0.13")
	far4 = netip.MustParseAddr("10.2.0.14")
)

// TestServiceSpreadAddRemove: 3,000 flows spread evenly over 3 backends;
// after a fourth is added, every existing flow keeps its backend and new
// flows reach the fourth; after one is removed, its flows are deleted and
// move to the others on their next packet, and no other flow moves.
func TestServiceSpreadAddRemove(t *testing.T) {
	e := serviceEnv(t, backend(far1, 8080, false), backend(far2, 8080, false), backend(far3, 8080, false))
	const n = 3000
	first := map[uint16]netip.Addr{}
	count := map[netip.Addr]int{}
	for i := uint16(0); i < n; i++ {
		b := backendOf(t, e, 20000+i)
		first[20000+i] = b
		count[b]++
	}
	for _, b := range []netip.Addr{far1, far2, far3} {
		if math.Abs(float64(count[b])-n/3) > 0.1*n/3 {
			t.Errorf("backend %v got %d of %d flows, want %d ± 10%%", b, count[b], n, n/3)
		}
	}

	must(t, e.d.SetServices([]Service{{ServiceKey: webKey, Backends: []Backend{
		backend(far1, 8080, false), backend(far2, 8080, false), backend(far3, 8080, false), backend(far4, 8080, false)}}}))
	for sport, b := range first {
		if got := backendOf(t, e, sport); got != b {
			t.Fatalf("after adding a backend, flow from port %d moved from %v to %v", sport, b, got)
		}
	}
	fresh := 0
	for i := uint16(0); i < 1000; i++ {
		if backendOf(t, e, 30000+i) == far4 {
			fresh++
		}
	}
	if fresh < 150 || fresh > 350 {
		t.Errorf("new backend got %d of 1000 new flows, want about 250", fresh)
	}

	must(t, e.d.SetServices([]Service{{ServiceKey: webKey, Backends: []Backend{
		backend(far1, 8080, false), backend(far2, 8080, false), backend(far4, 8080, false)}}}))
	for sport, b := range first {
		got := backendOf(t, e, sport)
		switch {
		case b == far3 && got == far3:
			t.Fatalf("flow from port %d still goes to the removed backend", sport)
		case b != far3 && got != b:
			t.Fatalf("removing another backend moved flow from port %d from %v to %v", sport, b, got)
		}
	}
}

// TestServiceAffinity: with client affinity, flows of one client from
// different ports share a backend.
func TestServiceAffinity(t *testing.T) {
	e := serviceEnv(t)
	must(t, e.d.SetServices([]Service{{ServiceKey: webKey, Affinity: true, Backends: []Backend{
		backend(far1, 8080, false), backend(far2, 8080, false), backend(far3, 8080, false)}}}))
	b := backendOf(t, e, 20000)
	for i := uint16(1); i < 200; i++ {
		if got := backendOf(t, e, 20000+i); got != b {
			t.Fatalf("flow from port %d went to %v, the client's first flow to %v", 20000+i, got, b)
		}
	}
}

// TestServiceReadiness: only ready backends take new flows; a service
// whose backends are all terminating uses the serving ones; a service
// with none drops first packets.
func TestServiceReadiness(t *testing.T) {
	e := serviceEnv(t)
	notReady := backend(far1, 8080, false)
	notReady.Ready = false
	term := backend(far2, 8080, false)
	term.Ready, term.Terminating = false, true
	must(t, e.d.SetServices([]Service{{ServiceKey: webKey, Backends: []Backend{notReady, term, backend(far3, 8080, false)}}}))
	for i := uint16(0); i < 100; i++ {
		if got := backendOf(t, e, 20000+i); got != far3 {
			t.Fatalf("flow went to %v, want the only ready backend %v", got, far3)
		}
	}
	must(t, e.d.SetServices([]Service{{ServiceKey: webKey, Backends: []Backend{notReady, term}}}))
	for i := uint16(0); i < 100; i++ {
		if got := backendOf(t, e, 21000+i); got != far2 {
			t.Fatalf("flow went to %v, want the serving terminating backend %v", got, far2)
		}
	}
	must(t, e.d.SetServices([]Service{{ServiceKey: webKey, Backends: []Backend{notReady}}}))
	syn := tcpPkt(pod1Addr, 22000, vipAddr, 80, tcpSYN, 64, nil)
	if ret, _ := run(t, e.d.progs.PodIngress, eth(loMAC, pod1PeerMAC, 0x0800, syn)); ret != tcShot {
		t.Errorf("syn to a service without backends: return %d, want drop", ret)
	}
}

// TestFlowTableFullAndExpiry: a table smaller than the flows evicts the
// least recently used entries without dropping a packet, the collector
// removes the halves left behind and counts them as evicted; idle flows
// expire after their protocol's timeout, busy ones do not.
func TestFlowTableFullAndExpiry(t *testing.T) {
	isolate(t)
	d := openTestWith(t, Config{FlowEntries: 256})
	e := &packetEnv{d: d}
	must(t, d.AttachInterface(Interface{Index: 1, VRF: "red", PeerMAC: pod1PeerMAC}))
	addVeth(t, "ul0", "ul0p", underlayMAC, mustMAC("02:00:00:00:00:ff"))
	must(t, d.SetTunnel(Tunnel{Source: hostAddr, Underlay: "ul0", MTU: 1500}))
	must(t, d.SetEndpoint(Endpoint{Addr: remote2, MAC: peer2MAC}))
	must(t, d.AllowEndpoint(remote2, "red"))
	must(t, d.SetRoutes([]Route{{RouteKey: RouteKey{VRF: "red", Prefix: netip.MustParsePrefix("10.2.0.0/24")},
		NextHops: []NextHop{{Endpoint: remote2, Label: 100, Encap: EncapMPLSoUDP}}}}))
	must(t, d.SetRoutes([]Route{{RouteKey: RouteKey{VRF: "red", Prefix: netip.PrefixFrom(pod1Addr, 32)}, Interface: 1}}))
	must(t, d.SetLabel(1000, LabelTarget{VRF: "red"}))
	must(t, d.SetServices([]Service{{ServiceKey: webKey, Backends: []Backend{backend(far1, 8080, false)}}}))
	for i := uint16(0); i < 1000; i++ {
		backendOf(t, e, 20000+i) // fails on a drop
	}
	fc, err := d.FlowCounters()
	must(t, err)
	if fc.Created != 1000 || fc.TableFull != 0 || fc.Capacity != 256 {
		t.Errorf("counters %+v, want 1000 created, none dropped, capacity 256", fc)
	}
	future := monotonicNow() + uint64(2*time.Second)
	gc, err := d.collectFlowsAt(FlowTimeouts{}, future)
	must(t, err)
	if gc.Entries > 256 || gc.Expired != 0 {
		t.Errorf("collection %+v: more entries than the table holds, or flows expired too early", gc)
	}
	after, err := d.readFlows()
	must(t, err)
	for k, f := range after {
		if _, ok := after[f.Reverse]; !ok {
			t.Fatalf("entry %+v left without its other direction", k)
		}
	}
	fc, err = d.FlowCounters()
	must(t, err)
	if fc.Evicted != uint64(gc.Evicted) {
		t.Errorf("evicted counter %d, collector found %d", fc.Evicted, gc.Evicted)
	}

	// Expiry: a SYN-only flow goes after TCPOpening; one that saw a packet
	// both ways is established and stays.
	must(t, d.SetServices([]Service{{ServiceKey: webKey, Backends: []Backend{backend(far1, 8080, false)}}}))
	if _, err := d.deleteFlows(func(forwarderFlowKey, *forwarderFlow) bool { return true }); err != nil {
		t.Fatal(err)
	}
	backendOf(t, e, 40000)
	backendOf(t, e, 40001)
	reply := tcpPkt(far1, 8080, pod1Addr, 40001, tcpSYNACK, 63, nil)
	if ret, _ := run(t, d.progs.UnderlayIngress, underlayFrame(remote2, 6635, lse(1000, true, 63), reply)); ret != tcRedirect {
		t.Fatalf("syn-ack: return %d, want redirect", ret)
	}
	timeouts := FlowTimeouts{TCPOpening: time.Second, TCPEstablished: time.Hour}
	gc, err = d.collectFlowsAt(timeouts, monotonicNow()+uint64(10*time.Second))
	must(t, err)
	if gc.Expired != 1 {
		t.Errorf("collection %+v: want the SYN-only flow, and only it, expired", gc)
	}
	flows, err := d.ServiceFlows(webKey, 0)
	must(t, err)
	if len(flows) != 1 || flows[0].Client.Port() != 40001 || flows[0].State != FlowEstablished {
		t.Errorf("flows after expiry %+v, want only the established one from port 40001", flows)
	}
}

// TestServicesAdoptedAfterRestart: a new process adopts the pinned
// services and flows: an existing flow keeps its backend, and the
// services keep their slots (and counters) when set again.
func TestServicesAdoptedAfterRestart(t *testing.T) {
	e := serviceEnv(t, backend(far1, 8080, false), backend(far2, 8080, false), backend(far3, 8080, false))
	before := map[uint16]netip.Addr{}
	for i := uint16(0); i < 50; i++ {
		before[20000+i] = backendOf(t, e, 20000+i)
	}
	total, _, err := e.d.ServiceStats(webKey)
	must(t, err)
	d2, err := Open(Config{BPFFS: e.d.Dir(), Logger: quiet})
	must(t, err)
	t.Cleanup(func() { d2.Close() })
	must(t, e.d.Close())
	e.d = d2
	keys, err := d2.ServiceKeys()
	must(t, err)
	if len(keys) != 1 || keys[0] != webKey {
		t.Fatalf("adopted services %v, want %v", keys, webKey)
	}
	must(t, d2.SetServices([]Service{{ServiceKey: webKey, Backends: []Backend{
		backend(far1, 8080, false), backend(far2, 8080, false), backend(far3, 8080, false), backend(far4, 8080, false)}}}))
	for sport, b := range before {
		if got := backendOf(t, e, sport); got != b {
			t.Fatalf("after a restart, flow from port %d moved from %v to %v", sport, b, got)
		}
	}
	after, _, err := d2.ServiceStats(webKey)
	must(t, err)
	if after.Flows != total.Flows || after.Packets != total.Packets+50 {
		t.Errorf("counters after restart %+v, before %+v: want the same flows and 50 more packets", after, total)
	}
}

// TestSetServicesRejectsWholly: a batch with one bad service changes
// nothing, not even the good services before it.
func TestSetServicesRejectsWholly(t *testing.T) {
	e := serviceEnv(t, backend(far1, 8080, false))
	other := ServiceKey{VRF: "red", Addr: netip.MustParseAddr("10.96.0.11"), Proto: TCP, Port: 80}
	err := e.d.SetServices([]Service{
		{ServiceKey: other, Backends: []Backend{backend(far2, 8080, false)}},
		{ServiceKey: webKey, Backends: []Backend{backend(far3, 0, false)}},
	})
	if err == nil {
		t.Fatal("a backend with port 0 was accepted")
	}
	keys, err := e.d.ServiceKeys()
	must(t, err)
	if len(keys) != 1 || keys[0] != webKey {
		t.Errorf("services after a rejected batch: %v, want only %v", keys, webKey)
	}
	if got := backendOf(t, e, 20000); got != far1 {
		t.Errorf("service web now goes to %v, want its old backend %v", got, far1)
	}
}

// TestServiceSynReopensClosedFlow: a client that reuses its port after a
// FIN or a RST opens a new flow (a new backend pick, counted), while a SYN
// on a live flow does not.
func TestServiceSynReopensClosedFlow(t *testing.T) {
	e := serviceEnv(t, backend(far1, 8080, false))
	send := func(flags uint8) {
		t.Helper()
		p := tcpPkt(pod1Addr, 20000, vipAddr, 80, flags, 64, nil)
		if ret, _ := run(t, e.d.progs.PodIngress, eth(loMAC, pod1PeerMAC, 0x0800, p)); ret != tcRedirect {
			t.Fatalf("flags %#x: return %d, want redirect", flags, ret)
		}
	}
	created := func() uint64 {
		t.Helper()
		fc, err := e.d.FlowCounters()
		must(t, err)
		return fc.Created
	}
	send(tcpSYN)
	send(tcpSYN) // retransmitted
	if n := created(); n != 1 {
		t.Fatalf("%d flows after a SYN and its retransmission, want 1", n)
	}
	send(0x11) // FIN, ACK
	send(tcpSYN)
	if n := created(); n != 2 {
		t.Errorf("%d flows after a SYN on the closed flow, want 2", n)
	}
	send(0x14) // RST, ACK
	send(tcpSYN)
	if n := created(); n != 3 {
		t.Errorf("%d flows after a SYN on the reset flow, want 3", n)
	}
}

// TestReconcilerDropsStalePinnedServices: services an earlier process
// pinned and the configuration no longer has are deleted by the first
// Apply; configured ones keep their slots.
func TestReconcilerDropsStalePinnedServices(t *testing.T) {
	e := serviceEnv(t, backend(far1, 8080, false))
	gone := ServiceKey{VRF: "red", Addr: netip.MustParseAddr("10.96.0.99"), Proto: UDP, Port: 53}
	must(t, e.d.SetServices([]Service{{ServiceKey: gone, Backends: []Backend{backend(far2, 5353, false)}}}))
	d := &gen.Device{}
	ni := d.GetOrCreateNetworkInstances().GetOrCreateNetworkInstance("red")
	ni.GetOrCreateConfig().Type = gen.IsthmusTypes_NetworkInstanceType_L3VRF
	sc := ni.GetOrCreateServices().GetOrCreateService("web").GetOrCreateConfig()
	sc.Address, sc.Protocol, sc.Port = ygot.String(vipAddr.String()), gen.IsthmusNetworkInstance_ServiceProtocol_TCP, ygot.Uint16(80)
	ni.Services.Service["web"].GetOrCreateBackends().GetOrCreateBackend(far1.String(), 8080)
	r := New(ReconcilerConfig{})
	r.dp = e.d
	must(t, r.applyServices(d, nil))
	keys, err := e.d.ServiceKeys()
	must(t, err)
	if len(keys) != 1 || keys[0] != webKey {
		t.Errorf("services after the first apply: %v, want only %v", keys, webKey)
	}
}
