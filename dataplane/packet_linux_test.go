package dataplane

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"net"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
)

// Return codes of the programs.
const (
	tcUnspec   = 0xffffffff // TC_ACT_UNSPEC / TCX_NEXT
	tcShot     = 2
	tcRedirect = 7
	xdpDrop    = 1
	xdpPass    = 2
)

var (
	underlayMAC = mustMAC("02:00:00:00:00:01")
	peer2MAC    = mustMAC("02:00:00:00:00:02") // next hop of endpoint 192.0.2.2
	peer3MAC    = mustMAC("02:00:00:00:00:03") // next hop of endpoint 192.0.2.3
	pod2MAC     = mustMAC("0a:00:00:00:02:01") // host end of pod2's veth
	pod2PeerMAC = mustMAC("0a:00:00:00:02:02") // pod2 itself
	pod1PeerMAC = mustMAC("0a:00:00:00:01:02")

	hostAddr  = netip.MustParseAddr("192.0.2.1")
	remote2   = netip.MustParseAddr("192.0.2.2")
	remote3   = netip.MustParseAddr("192.0.2.3")
	pod1Addr  = netip.MustParseAddr("10.1.0.2")
	pod2Addr  = netip.MustParseAddr("10.1.0.3")
	farAddr   = netip.MustParseAddr("10.2.0.5")
	mplsAddr  = netip.MustParseAddr("10.3.0.5")
	mpls2Addr = netip.MustParseAddr("10.4.0.5")
)

// packetEnv is a dataplane in a private namespace, programmed with:
// VRF red: pod1 = lo (ifindex 1, the device BPF_PROG_TEST_RUN uses), pod2 =
// a veth; 10.1.0.3/32 local on pod2; 10.2.0.0/24 via 192.0.2.2 label 100
// MPLSoUDP; 10.3.0.0/24 via 192.0.2.3 label 200 MPLSoMPLS with transport
// label 16001; 10.4.0.0/24 via 192.0.2.2 label 300 MPLSoMPLS, no transport
// label; local labels 1000 (per VRF red) and 1001 (pod2); both endpoints
// may send into red.
type packetEnv struct {
	d    *Dataplane
	pod2 int
}

func newPacketEnv(t testing.TB) *packetEnv {
	isolate(t)
	d := openTest(t)
	addVeth(t, "ul0", "ul0p", underlayMAC, mustMAC("02:00:00:00:00:ff"))
	pod2 := addVeth(t, "pod2", "pod2p", pod2MAC, pod2PeerMAC)
	must(t, d.AttachInterface(Interface{Index: 1, VRF: "red", PeerMAC: pod1PeerMAC}))
	must(t, d.AttachInterface(Interface{Index: pod2.Index, VRF: "red", PeerMAC: pod2PeerMAC}))
	must(t, d.SetTunnel(Tunnel{Source: hostAddr, Underlay: "ul0", MTU: 1500, TransportLabel: 16001, MPLSoMPLS: true}))
	must(t, d.SetEndpoint(Endpoint{Addr: remote2, MAC: peer2MAC}))
	must(t, d.SetEndpoint(Endpoint{Addr: remote3, MAC: peer3MAC, TransportLabel: 16001}))
	must(t, d.SetRoutes([]Route{
		{RouteKey: RouteKey{VRF: "red", Prefix: netip.MustParsePrefix("10.1.0.3/32")}, Interface: pod2.Index},
		{RouteKey: RouteKey{VRF: "red", Prefix: netip.MustParsePrefix("10.2.0.0/24")},
			NextHops: []NextHop{{Endpoint: remote2, Label: 100, Encap: EncapMPLSoUDP}}},
		{RouteKey: RouteKey{VRF: "red", Prefix: netip.MustParsePrefix("10.3.0.0/24")},
			NextHops: []NextHop{{Endpoint: remote3, Label: 200, Encap: EncapMPLSoMPLS}}},
		{RouteKey: RouteKey{VRF: "red", Prefix: netip.MustParsePrefix("10.4.0.0/24")},
			NextHops: []NextHop{{Endpoint: remote2, Label: 300, Encap: EncapMPLSoMPLS}}},
	}))
	must(t, d.SetLabel(1000, LabelTarget{VRF: "red"}))
	must(t, d.SetLabel(1001, LabelTarget{VRF: "red", Interface: pod2.Index}))
	must(t, d.AllowEndpoint(remote2, "red"))
	must(t, d.AllowEndpoint(remote3, "red"))
	return &packetEnv{d: d, pod2: pod2.Index}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func run(t testing.TB, p *ebpf.Program, in []byte) (uint32, []byte) {
	t.Helper()
	opts := &ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+256)}
	ret, err := p.Run(opts)
	if err != nil {
		t.Fatalf("run %v: %v", p, err)
	}
	return ret, opts.DataOut
}

func assertBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("%s:\n got %s\nwant %s", what, hex.EncodeToString(got), hex.EncodeToString(want))
	}
}

// podFrame is what pod1 sends: a UDP datagram from 10.1.0.2.
func podFrame(dst netip.Addr, sport uint16, ttl uint8, payload []byte) ([]byte, []byte) {
	inner := ip4{src: pod1Addr, dst: dst, proto: 17, ttl: ttl, tos: 0x28, id: 7}.packet(udp(sport, 5201, payload))
	return eth(mustMAC("00:00:00:00:00:00"), pod1PeerMAC, 0x0800, inner), inner
}

func TestEncapMPLSoUDPExact(t *testing.T) {
	e := newPacketEnv(t)
	frame, inner := podFrame(farAddr, 40000, 64, []byte("hello over udp"))
	ret, out := run(t, e.d.progs.PodIngress, frame)
	if ret != tcRedirect {
		t.Fatalf("return %d, want redirect", ret)
	}
	hash := flowHash(inner)
	sport := uint16(49152 | hash&0x3fff)
	innerOut := withTTL(inner, 63)
	outer := ip4{src: hostAddr, dst: remote2, proto: 17, ttl: 64, tos: 0x28, flags: 0x4000}.
		packet(udp(sport, 6635, cat(lse(100, true, 63), innerOut)))
	want := eth(peer2MAC, underlayMAC, 0x0800, outer)
	assertBytes(t, "encapsulated frame", out, want)

	// Source-port entropy: distinct flows get distinct ports, in the
	// ephemeral range.
	ports := map[uint16]bool{}
	for i := range 64 {
		f, _ := podFrame(farAddr, uint16(30000+i), 64, nil)
		_, o := run(t, e.d.progs.PodIngress, f)
		p := binary.BigEndian.Uint16(o[34:])
		if p < 49152 {
			t.Fatalf("source port %d outside 49152-65535", p)
		}
		ports[p] = true
	}
	if len(ports) < 60 {
		t.Errorf("64 flows used only %d source ports", len(ports))
	}
	c, err := e.d.EndpointCounters(remote2)
	must(t, err)
	if c.TxPackets != 65 {
		t.Errorf("endpoint tx packets %d, want 65", c.TxPackets)
	}
}

func TestEncapMPLSoMPLSExact(t *testing.T) {
	e := newPacketEnv(t)
	frame, inner := podFrame(mplsAddr, 40000, 64, []byte("hello over mpls"))
	ret, out := run(t, e.d.progs.PodIngress, frame)
	if ret != tcRedirect {
		t.Fatalf("return %d, want redirect", ret)
	}
	want := eth(peer3MAC, underlayMAC, 0x8847, cat(lse(16001, false, 63), lse(200, true, 63), withTTL(inner, 63)))
	assertBytes(t, "with transport label", out, want)

	frame, inner = podFrame(mpls2Addr, 40000, 10, nil)
	_, out = run(t, e.d.progs.PodIngress, frame)
	want = eth(peer2MAC, underlayMAC, 0x8847, cat(lse(300, true, 9), withTTL(inner, 9)))
	assertBytes(t, "without transport label", out, want)
}

func TestLocalDeliveryExact(t *testing.T) {
	e := newPacketEnv(t)
	frame, inner := podFrame(pod2Addr, 40000, 64, []byte("local"))
	ret, out := run(t, e.d.progs.PodIngress, frame)
	if ret != tcRedirect {
		t.Fatalf("return %d, want redirect", ret)
	}
	assertBytes(t, "delivered frame", out, eth(pod2PeerMAC, pod2MAC, 0x0800, withTTL(inner, 63)))
	c, err := e.d.InterfaceCounters(e.pod2)
	must(t, err)
	if c.TxPackets != 1 || c.TxBytes != uint64(len(frame)) {
		t.Errorf("pod2 counters %+v, want 1 packet of %d bytes", c, len(frame))
	}
	c, err = e.d.InterfaceCounters(1)
	must(t, err)
	if c.RxPackets != 1 {
		t.Errorf("pod1 rx packets %d, want 1", c.RxPackets)
	}
}

func TestECMPSpreadsAndSticks(t *testing.T) {
	e := newPacketEnv(t)
	var nhs []NextHop
	eps := map[[4]byte]int{}
	for i := range 4 {
		a := netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)})
		must(t, e.d.SetEndpoint(Endpoint{Addr: a, MAC: net.HardwareAddr{2, 0, 0, 0, 1, byte(i)}}))
		nhs = append(nhs, NextHop{Endpoint: a, Label: 500 + uint32(i), Encap: EncapMPLSoUDP})
		eps[a.As4()] = 0
	}
	must(t, e.d.SetRoutes([]Route{{RouteKey: RouteKey{VRF: "red", Prefix: netip.MustParsePrefix("10.9.0.0/16")}, NextHops: nhs}}))
	const flows = 1000
	for i := range flows {
		dst := netip.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)})
		f, _ := podFrame(dst, uint16(1024+i), 64, nil)
		var first [4]byte
		for rep := range 3 {
			_, out := run(t, e.d.progs.PodIngress, f)
			var ep [4]byte
			copy(ep[:], out[30:34])
			if rep == 0 {
				first = ep
				eps[ep]++
			} else if ep != first {
				t.Fatalf("flow %d moved from %v to %v", i, first, ep)
			}
		}
	}
	for ep, n := range eps {
		if n < flows/4*7/10 || n > flows/4*13/10 {
			t.Errorf("endpoint %v got %d of %d flows, want about %d", net.IP(ep[:]), n, flows, flows/4)
		}
	}
}

// underlayFrame is an MPLSoUDP frame from src carrying inner.
func underlayFrame(src netip.Addr, dport uint16, label []byte, inner []byte) []byte {
	outer := ip4{src: src, dst: hostAddr, proto: 17, ttl: 64, flags: 0x4000}.packet(udp(50000, dport, cat(label, inner)))
	return eth(underlayMAC, peer2MAC, 0x0800, outer)
}

func remoteInner(dst netip.Addr, ttl uint8) []byte {
	return ip4{src: farAddr, dst: dst, proto: 17, ttl: ttl, id: 9}.packet(udp(5201, 40000, []byte("from far away")))
}

func TestDecapMPLSoUDPExact(t *testing.T) {
	e := newPacketEnv(t)
	for _, label := range []uint32{1000, 1001} {
		inner := remoteInner(pod2Addr, 63)
		ret, out := run(t, e.d.progs.UnderlayIngress, underlayFrame(remote2, 6635, lse(label, true, 63), inner))
		if ret != tcRedirect {
			t.Fatalf("label %d: return %d, want redirect", label, ret)
		}
		assertBytes(t, "decapsulated frame", out, eth(pod2PeerMAC, pod2MAC, 0x0800, withTTL(inner, 62)))
	}
	c, err := e.d.EndpointCounters(remote2)
	must(t, err)
	if c.RxPackets != 2 {
		t.Errorf("endpoint rx packets %d, want 2", c.RxPackets)
	}
	// Traffic that is not ours goes up the stack untouched.
	in := underlayFrame(remote2, 179, nil, []byte("bgp"))
	if ret, out := run(t, e.d.progs.UnderlayIngress, in); ret != tcUnspec || !bytes.Equal(out, in) {
		t.Errorf("non-tunnel packet: return %d, changed %v", ret, !bytes.Equal(out, in))
	}
}

func TestDecapMPLSoMPLSExact(t *testing.T) {
	e := newPacketEnv(t)
	// Magic, target ifindex, flags (0: the packet tests' veths have both
	// ends in one namespace, so no bpf_redirect_peer).
	meta := binary.NativeEndian.AppendUint32(binary.NativeEndian.AppendUint32(binary.NativeEndian.AppendUint32(nil, 0x15e1), uint32(e.pod2)), 0)
	for _, stack := range [][]byte{lse(1001, true, 63), cat(lse(16001, false, 63), lse(1000, true, 63))} {
		inner := remoteInner(pod2Addr, 63)
		ret, out := run(t, e.d.progs.UnderlayXdp, eth(underlayMAC, peer3MAC, 0x8847, cat(stack, inner)))
		if ret != xdpPass {
			t.Fatalf("return %d, want pass", ret)
		}
		assertBytes(t, "metadata + decapsulated frame", out, cat(meta, eth(pod2PeerMAC, pod2MAC, 0x0800, withTTL(inner, 62))))
	}
	// IPv4 frames are left to the tc program.
	in := underlayFrame(remote2, 6635, lse(1000, true, 63), remoteInner(pod2Addr, 63))
	if ret, out := run(t, e.d.progs.UnderlayXdp, in); ret != xdpPass || !bytes.Equal(out, in) {
		t.Errorf("ipv4 frame: return %d, changed %v", ret, !bytes.Equal(out, in))
	}
}

func TestMalformedDroppedAndCounted(t *testing.T) {
	e := newPacketEnv(t)
	good := remoteInner(pod2Addr, 63)
	v6 := append([]byte{0x60}, make([]byte, 39)...)
	big, _ := podFrame(farAddr, 1, 64, make([]byte, 1500))
	noRoute, _ := podFrame(netip.MustParseAddr("10.200.0.1"), 1, 64, nil)
	ttl1, _ := podFrame(farAddr, 1, 1, nil)
	v6Pod := eth(pod2MAC, pod1PeerMAC, 0x86dd, v6)
	xdp := func(src net.HardwareAddr, b []byte) []byte { return eth(underlayMAC, src, 0x8847, b) }
	cases := []struct {
		name   string
		prog   *ebpf.Program
		in     []byte
		ret    uint32
		vrf    string
		reason func(DropCounters) uint64
	}{
		{"udp truncated label", e.d.progs.UnderlayIngress, underlayFrame(remote2, 6635, []byte{0, 0x3e}, nil), tcShot, "", malformed},
		{"udp truncated inner", e.d.progs.UnderlayIngress, underlayFrame(remote2, 6635, lse(1000, true, 63), good[:10]), tcShot, "red", malformed},
		{"udp no bottom of stack", e.d.progs.UnderlayIngress, underlayFrame(remote2, 6635, lse(1000, false, 63), good), tcShot, "", malformed},
		{"udp unknown label", e.d.progs.UnderlayIngress, underlayFrame(remote2, 6635, lse(4242, true, 63), good), tcShot, "", unknownLabel},
		{"udp ttl 1", e.d.progs.UnderlayIngress, underlayFrame(remote2, 6635, lse(1000, true, 1), remoteInner(pod2Addr, 1)), tcShot, "red", ttl},
		{"udp non-ipv4", e.d.progs.UnderlayIngress, underlayFrame(remote2, 6635, lse(1001, true, 63), v6), tcShot, "red", malformed},
		{"udp unknown endpoint", e.d.progs.UnderlayIngress, underlayFrame(netip.MustParseAddr("198.51.100.9"), 6635, lse(1000, true, 63), good), tcShot, "", unknownEndpoint},
		{"mpls truncated", e.d.progs.UnderlayXdp, xdp(peer3MAC, []byte{0, 0x3e}), xdpDrop, "", malformed},
		{"mpls truncated inner", e.d.progs.UnderlayXdp, xdp(peer3MAC, cat(lse(1000, true, 63), good[:10])), xdpDrop, "red", malformed},
		{"mpls no bottom of stack", e.d.progs.UnderlayXdp, xdp(peer3MAC, cat(lse(16001, false, 63), lse(1000, false, 63), good)), xdpDrop, "", malformed},
		{"mpls unknown label", e.d.progs.UnderlayXdp, xdp(peer3MAC, cat(lse(4242, true, 63), good)), xdpDrop, "", unknownLabel},
		{"mpls foreign transport label", e.d.progs.UnderlayXdp, xdp(peer3MAC, cat(lse(16002, false, 63), lse(1000, true, 63), good)), xdpDrop, "", unknownLabel},
		{"mpls ttl 1", e.d.progs.UnderlayXdp, xdp(peer3MAC, cat(lse(1000, true, 1), remoteInner(pod2Addr, 1))), xdpDrop, "red", ttl},
		{"mpls non-ipv4", e.d.progs.UnderlayXdp, xdp(peer3MAC, cat(lse(1000, true, 63), v6)), xdpDrop, "red", malformed},
		{"mpls unknown endpoint", e.d.progs.UnderlayXdp, xdp(mustMAC("02:66:66:66:66:66"), cat(lse(1000, true, 63), good)), xdpDrop, "", unknownEndpoint},
		{"pod ttl 1", e.d.progs.PodIngress, ttl1, tcShot, "red", ttl},
		{"pod no route", e.d.progs.PodIngress, noRoute, tcShot, "red", func(d DropCounters) uint64 { return d.NoRoute }},
		{"pod non-ipv4", e.d.progs.PodIngress, v6Pod, tcShot, "red", malformed},
		{"pod too big", e.d.progs.PodIngress, big, tcShot, "red", func(d DropCounters) uint64 { return d.MTU }},
	}
	for _, c := range cases {
		before, err := e.d.Drops(c.vrf)
		must(t, err)
		ret, _ := run(t, c.prog, c.in)
		after, err := e.d.Drops(c.vrf)
		must(t, err)
		if ret != c.ret {
			t.Errorf("%s: return %d, want %d", c.name, ret, c.ret)
		}
		if got := c.reason(after) - c.reason(before); got != 1 || after.Total()-before.Total() != 1 {
			t.Errorf("%s: reason counter +%d, total +%d in vrf %q, want +1 both", c.name, got, after.Total()-before.Total(), c.vrf)
		}
	}
}

func malformed(d DropCounters) uint64       { return d.Malformed }
func unknownLabel(d DropCounters) uint64    { return d.UnknownLabel }
func unknownEndpoint(d DropCounters) uint64 { return d.UnknownEndpoint }
func ttl(d DropCounters) uint64             { return d.TTL }

// TestHostRouteOverflow fills the exact-match table of /32 routes and
// checks that the routes beyond it still forward, from the LPM trie.
func TestHostRouteOverflow(t *testing.T) {
	isolate(t)
	d := openTestWith(t, Config{HostRoutes: 2})
	addVeth(t, "ul0", "ul0p", underlayMAC, mustMAC("02:00:00:00:00:ff"))
	must(t, d.AttachInterface(Interface{Index: 1, VRF: "red", PeerMAC: pod1PeerMAC}))
	must(t, d.SetTunnel(Tunnel{Source: hostAddr, Underlay: "ul0", MTU: 1500}))
	must(t, d.SetEndpoint(Endpoint{Addr: remote2, MAC: peer2MAC}))
	var routes []Route
	for i := range 5 {
		routes = append(routes, Route{RouteKey: RouteKey{VRF: "red", Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 7, 0, byte(i)}), 32)},
			NextHops: []NextHop{{Endpoint: remote2, Label: 100 + uint32(i), Encap: EncapMPLSoUDP}}})
	}
	must(t, d.SetRoutes(routes))
	for i := range 5 {
		f, _ := podFrame(netip.AddrFrom4([4]byte{10, 7, 0, byte(i)}), 1, 64, nil)
		ret, out := run(t, d.progs.PodIngress, f)
		if ret != tcRedirect || binary.BigEndian.Uint32(out[42:])>>12 != 100+uint32(i) {
			t.Errorf("route %d: return %d, label %d", i, ret, binary.BigEndian.Uint32(out[42:])>>12)
		}
	}
	must(t, d.DeleteRoutes([]RouteKey{routes[0].RouteKey, routes[4].RouteKey}))
	if d.Routes() != 3 {
		t.Errorf("%d routes after deleting 2 of 5", d.Routes())
	}
}
