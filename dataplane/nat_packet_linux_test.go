package dataplane

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/vishvananda/netlink"
)

var (
	inetAddr   = netip.MustParseAddr("203.0.113.7")  // a destination on the internet
	routerAddr = netip.MustParseAddr("198.51.100.9") // a router on the way that sends errors
	gwAddr     = netip.MustParseAddr("192.0.2.254")  // the underlay's default gateway
	gwMAC      = mustMAC("02:00:00:00:00:fe")
)

// natEnv is packetEnv with the host's underlay routed: 192.0.2.1/24 on
// ul0, a default route through 192.0.2.254 (MAC 02:00:00:00:00:fe,
// permanent) and IPv4 forwarding on, as on a node.
func natEnv(t testing.TB) *packetEnv {
	e := newPacketEnv(t)
	must(t, e.d.SetRoutes([]Route{{RouteKey: RouteKey{VRF: "red", Prefix: netip.PrefixFrom(pod1Addr, 32)}, Interface: 1}}))
	must(t, os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644))
	ul, err := netlink.LinkByName("ul0")
	must(t, err)
	must(t, netlink.AddrAdd(ul, &netlink.Addr{IPNet: &net.IPNet{IP: hostAddr.AsSlice(), Mask: net.CIDRMask(24, 32)}}))
	must(t, netlink.NeighAdd(&netlink.Neigh{LinkIndex: ul.Attrs().Index, Family: netlink.FAMILY_V4,
		State: netlink.NUD_PERMANENT, IP: gwAddr.AsSlice(), HardwareAddr: gwMAC}))
	must(t, netlink.RouteAdd(&netlink.Route{Dst: &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)},
		Gw: gwAddr.AsSlice(), LinkIndex: ul.Attrs().Index}))
	return e
}

// icmpEcho is an ICMP echo request (typ 8) or reply (typ 0).
func icmpEcho(src, dst netip.Addr, typ uint8, id, seq uint16, ttl uint8) []byte {
	msg := []byte{typ, 0, 0, 0, 0, 0, 0, 0, 'p', 'i', 'n', 'g'}
	binary.BigEndian.PutUint16(msg[4:], id)
	binary.BigEndian.PutUint16(msg[6:], seq)
	binary.BigEndian.PutUint16(msg[2:], csum(msg))
	return ip4{src: src, dst: dst, proto: 1, ttl: ttl, id: 14}.packet(msg)
}

// snatOne is red with SNAT to 192.0.2.1, ports 20000..20000: one port, so
// the translated bytes are known.
func snatOne(t *testing.T, e *packetEnv) {
	must(t, e.d.SetExternal([]External{{VRF: "red", SNAT: true, Addr: hostAddr, PortMin: 20000, PortMax: 20000}}))
}

// TestSNATExact: a pod's TCP segment, UDP datagram (with and without a
// checksum) and ICMP echo request to an address no VRF route covers leave
// through the underlay's gateway from 192.0.2.1 port (identifier) 20000;
// their replies come back to the pod, every checksum exact.
func TestSNATExact(t *testing.T) {
	e := natEnv(t)
	snatOne(t, e)
	fromPod := func(pkt []byte) []byte { return eth(loMAC, pod1PeerMAC, 0x0800, pkt) }
	toGW := func(pkt []byte) []byte { return eth(gwMAC, underlayMAC, 0x0800, pkt) }
	fromGW := func(pkt []byte) []byte { return eth(underlayMAC, gwMAC, 0x0800, pkt) }
	toPod := func(pkt []byte) []byte { return eth(pod1PeerMAC, loMAC, 0x0800, pkt) }
	for _, tc := range []struct {
		name             string
		out, wantOut     []byte
		reply, wantReply []byte
		flowsAfter       int
	}{
		{"tcp",
			tcpPkt(pod1Addr, 40000, inetAddr, 443, tcpSYN, 64, nil), tcpPkt(hostAddr, 20000, inetAddr, 443, tcpSYN, 63, nil),
			tcpPkt(inetAddr, 443, hostAddr, 20000, tcpSYNACK, 60, []byte("hi")), tcpPkt(inetAddr, 443, pod1Addr, 40000, tcpSYNACK, 59, []byte("hi")), 1},
		{"udp",
			udpPkt(pod1Addr, 40001, inetAddr, 53, 64, []byte("query"), true), udpPkt(hostAddr, 20000, inetAddr, 53, 63, []byte("query"), true),
			udpPkt(inetAddr, 53, hostAddr, 20000, 60, []byte("answer"), true), udpPkt(inetAddr, 53, pod1Addr, 40001, 59, []byte("answer"), true), 2},
		{"udp without checksum",
			udpPkt(pod1Addr, 40002, inetAddr, 123, 64, []byte("ntp"), false), udpPkt(hostAddr, 20000, inetAddr, 123, 63, []byte("ntp"), false),
			udpPkt(inetAddr, 123, hostAddr, 20000, 60, []byte("time"), false), udpPkt(inetAddr, 123, pod1Addr, 40002, 59, []byte("time"), false), 3},
		{"icmp echo",
			icmpEcho(pod1Addr, inetAddr, 8, 0x1234, 1, 64), icmpEcho(hostAddr, inetAddr, 8, 20000, 1, 63),
			icmpEcho(inetAddr, hostAddr, 0, 20000, 1, 60), icmpEcho(inetAddr, pod1Addr, 0, 0x1234, 1, 59), 4},
	} {
		// No subtests: the programs must run on this goroutine's thread,
		// the one in the test's namespace.
		ret, out := run(t, e.d.progs.PodIngress, fromPod(tc.out))
		if ret != tcRedirect {
			t.Fatalf("%s from the pod: return %d, want redirect", tc.name, ret)
		}
		assertBytes(t, tc.name+" translated toward the gateway", out, toGW(tc.wantOut))
		ret, out = run(t, e.d.progs.UnderlayIngress, fromGW(tc.reply))
		if ret != tcRedirect {
			t.Fatalf("%s reply: return %d, want redirect", tc.name, ret)
		}
		assertBytes(t, tc.name+" reply translated back to the pod", out, toPod(tc.wantReply))
		n, err := e.d.ExternalFlows()
		must(t, err)
		if got := n[e.d.VRFs()["red"]]; got != tc.flowsAfter {
			t.Errorf("%s: translated flows %d, want %d", tc.name, got, tc.flowsAfter)
		}
	}
	c, err := e.d.ExternalCounters("red")
	must(t, err)
	if c != (ExternalCounters{Translations: 8, Flows: 4}) {
		t.Errorf("counters %+v, want 8 translations of 4 flows", c)
	}
}

// TestSNATICMPErrorExact: a router's port-unreachable about a translated
// UDP datagram reaches the pod with its destination, the quoted source
// address and port and every checksum (outer and quoted IPv4, quoted UDP,
// ICMP) translated back.
func TestSNATICMPErrorExact(t *testing.T) {
	e := natEnv(t)
	snatOne(t, e)
	q := udpPkt(pod1Addr, 40000, inetAddr, 33434, 2, []byte("probe"), true)
	ret, out := run(t, e.d.progs.PodIngress, eth(loMAC, pod1PeerMAC, 0x0800, q))
	if ret != tcRedirect {
		t.Fatalf("probe: return %d, want redirect", ret)
	}
	sent := udpPkt(hostAddr, 20000, inetAddr, 33434, 1, []byte("probe"), true)
	assertBytes(t, "probe toward the gateway", out, eth(gwMAC, underlayMAC, 0x0800, sent))
	// The router quotes what it received (TTL 1) in a time-exceeded-like
	// port-unreachable error to the host.
	errPkt := icmpUnreachable(routerAddr, hostAddr, 62, sent)
	ret, out = run(t, e.d.progs.UnderlayIngress, eth(underlayMAC, gwMAC, 0x0800, errPkt))
	if ret != tcRedirect {
		t.Fatalf("error: return %d, want redirect", ret)
	}
	want := icmpUnreachable(routerAddr, pod1Addr, 61, udpPkt(pod1Addr, 40000, inetAddr, 33434, 1, []byte("probe"), true))
	assertBytes(t, "error translated to the pod", out, eth(pod1PeerMAC, loMAC, 0x0800, want))

	// An error about nothing of ours goes to the host's stack untouched.
	other := icmpUnreachable(routerAddr, hostAddr, 62, udpPkt(hostAddr, 5555, inetAddr, 33434, 1, nil, true))
	in := eth(underlayMAC, gwMAC, 0x0800, other)
	ret, out = run(t, e.d.progs.UnderlayIngress, in)
	if ret != tcUnspec {
		t.Fatalf("unrelated error: return %d, want the host stack", ret)
	}
	assertBytes(t, "unrelated error", out[:len(in)], in)
}

// TestSNATVRFsDoNotCollide: pods of red and blue with the same address and
// port reach the same destination at once, from ports of their own VRF's
// range; each reply reaches its own VRF's pod. A second flow for which
// red's single port is taken counts as port exhaustion and is dropped.
func TestSNATVRFsDoNotCollide(t *testing.T) {
	e := natEnv(t)
	blue, bluePeer := addVeth(t, "blue1", "blue1p", mustMAC("0a:00:00:00:03:01"), mustMAC("0a:00:00:00:03:02")), mustMAC("0a:00:00:00:03:02")
	must(t, e.d.AttachInterface(Interface{Index: blue.Index, VRF: "blue", PeerMAC: bluePeer}))
	must(t, e.d.SetRoutes([]Route{{RouteKey: RouteKey{VRF: "blue", Prefix: netip.PrefixFrom(pod1Addr, 32)}, Interface: blue.Index}}))
	must(t, e.d.SetExternal([]External{
		{VRF: "red", SNAT: true, Addr: hostAddr, PortMin: 20000, PortMax: 20000},
		{VRF: "blue", SNAT: true, Addr: hostAddr, PortMin: 21000, PortMax: 21000},
	}))
	seg := tcpPkt(pod1Addr, 40000, inetAddr, 443, tcpSYN, 64, nil)
	_, redOut := run(t, e.d.progs.PodIngress, eth(loMAC, pod1PeerMAC, 0x0800, seg))
	ret, blueOut := runFrom(t, e.d.progs.PodIngress, blue.Index, eth(blue.HardwareAddr, bluePeer, 0x0800, seg))
	if ret != tcRedirect {
		t.Fatalf("blue: return %d, want redirect", ret)
	}
	assertBytes(t, "red's", redOut, eth(gwMAC, underlayMAC, 0x0800, tcpPkt(hostAddr, 20000, inetAddr, 443, tcpSYN, 63, nil)))
	assertBytes(t, "blue's", blueOut, eth(gwMAC, underlayMAC, 0x0800, tcpPkt(hostAddr, 21000, inetAddr, 443, tcpSYN, 63, nil)))
	for _, tc := range []struct {
		port uint16
		to   net.HardwareAddr
		from net.HardwareAddr
	}{{20000, pod1PeerMAC, loMAC}, {21000, bluePeer, blue.HardwareAddr}} {
		reply := tcpPkt(inetAddr, 443, hostAddr, tc.port, tcpSYNACK, 60, nil)
		ret, out := run(t, e.d.progs.UnderlayIngress, eth(underlayMAC, gwMAC, 0x0800, reply))
		if ret != tcRedirect {
			t.Fatalf("reply to %d: return %d, want redirect", tc.port, ret)
		}
		assertBytes(t, "reply", out, eth(tc.to, tc.from, 0x0800, tcpPkt(inetAddr, 443, pod1Addr, 40000, tcpSYNACK, 59, nil)))
	}
	// red has one port, and it is taken toward 203.0.113.7:443.
	ret, _ = run(t, e.d.progs.PodIngress, eth(loMAC, pod1PeerMAC, 0x0800, tcpPkt(pod1Addr, 40001, inetAddr, 443, tcpSYN, 64, nil)))
	if ret != tcShot {
		t.Fatalf("second red flow: return %d, want drop", ret)
	}
	c, err := e.d.ExternalCounters("red")
	must(t, err)
	if c.PortExhausted != 1 || c.Flows != 1 {
		t.Errorf("red counters %+v, want 1 flow and 1 port exhausted", c)
	}
	// Toward another destination the same port is free again.
	ret, _ = run(t, e.d.progs.PodIngress, eth(loMAC, pod1PeerMAC, 0x0800, tcpPkt(pod1Addr, 40001, inetAddr.Next(), 443, tcpSYN, 64, nil)))
	if ret != tcRedirect {
		t.Fatalf("red flow elsewhere: return %d, want redirect", ret)
	}
}

// TestExternalModes: without external connectivity, or with SNAT off, a
// destination without a VRF route is dropped as no-route; with host
// access, one of the node's addresses goes to its stack through the host
// device (and only those: an internet address is still dropped).
func TestExternalModes(t *testing.T) {
	e := natEnv(t)
	toHost := eth(loMAC, pod1PeerMAC, 0x0800, tcpPkt(pod1Addr, 40000, hostAddr, 10250, tcpSYN, 64, nil))
	toInet := eth(loMAC, pod1PeerMAC, 0x0800, tcpPkt(pod1Addr, 40000, inetAddr, 443, tcpSYN, 64, nil))
	for _, tc := range []struct {
		name       string
		ext        []External
		host, inet uint32
	}{
		{"none", nil, tcShot, tcShot},
		{"host access", []External{{VRF: "red", HostAccess: true}}, tcRedirect, tcShot},
		{"snat only", []External{{VRF: "red", SNAT: true, Addr: hostAddr, PortMin: 20000, PortMax: 20099}}, tcShot, tcRedirect},
		{"both", []External{{VRF: "red", SNAT: true, HostAccess: true, Addr: hostAddr, PortMin: 20000, PortMax: 20099}}, tcRedirect, tcRedirect},
	} {
		must(t, e.d.SetExternal(tc.ext))
		before, err := e.d.Drops("red")
		must(t, err)
		ret, out := run(t, e.d.progs.PodIngress, toHost)
		if ret != tc.host {
			t.Errorf("%s: to the node: return %d, want %d", tc.name, ret, tc.host)
		}
		if ret == tcRedirect {
			// Into the node's stack through the host device, untouched but
			// for the destination MAC.
			dev, err := netlink.LinkByName(hostDevice)
			must(t, err)
			assertBytes(t, tc.name+": to the node", out[:len(toHost)], cat(dev.Attrs().HardwareAddr, toHost[6:]))
		}
		if ret, _ := run(t, e.d.progs.PodIngress, toInet); ret != tc.inet {
			t.Errorf("%s: to the internet: return %d, want %d", tc.name, ret, tc.inet)
		}
		after, err := e.d.Drops("red")
		must(t, err)
		want := uint64(0)
		for _, r := range []uint32{tc.host, tc.inet} {
			if r == tcShot {
				want++
			}
		}
		if after.NoRoute-before.NoRoute != want {
			t.Errorf("%s: no-route drops %d, want %d", tc.name, after.NoRoute-before.NoRoute, want)
		}
	}
}

// TestFloatingExact: a pod bound to floating IP 198.51.100.5 leaves from
// it 1:1 (ports kept, ahead of the VRF's SNAT), and packets to it from
// the underlay reach the pod; after the binding moves to pod2 they reach
// pod2, and pod1 is source-NATed again.
func TestFloatingExact(t *testing.T) {
	e := natEnv(t)
	snatOne(t, e)
	fip := netip.MustParseAddr("198.51.100.5")
	must(t, e.d.SetFloating([]Floating{{VRF: "red", Addr: fip, Pod: pod1Addr}}))
	for _, tc := range []struct {
		name         string
		out, wantOut []byte
		in, wantIn   []byte
		inTo, inFrom net.HardwareAddr
	}{
		{"tcp",
			tcpPkt(pod1Addr, 40000, inetAddr, 443, tcpSYN, 64, nil), tcpPkt(fip, 40000, inetAddr, 443, tcpSYN, 63, nil),
			tcpPkt(inetAddr, 443, fip, 40000, tcpSYNACK, 60, []byte("hi")), tcpPkt(inetAddr, 443, pod1Addr, 40000, tcpSYNACK, 59, []byte("hi")),
			pod1PeerMAC, loMAC},
		{"udp",
			udpPkt(pod1Addr, 5353, inetAddr, 53, 64, []byte("q"), true), udpPkt(fip, 5353, inetAddr, 53, 63, []byte("q"), true),
			udpPkt(inetAddr, 9999, fip, 8080, 60, []byte("new"), true), udpPkt(inetAddr, 9999, pod1Addr, 8080, 59, []byte("new"), true),
			pod1PeerMAC, loMAC},
		{"icmp",
			icmpEcho(pod1Addr, inetAddr, 8, 7, 1, 64), icmpEcho(fip, inetAddr, 8, 7, 1, 63),
			icmpEcho(inetAddr, fip, 8, 9, 1, 60), icmpEcho(inetAddr, pod1Addr, 8, 9, 1, 59),
			pod1PeerMAC, loMAC},
	} {
		ret, out := run(t, e.d.progs.PodIngress, eth(loMAC, pod1PeerMAC, 0x0800, tc.out))
		if ret != tcRedirect {
			t.Fatalf("%s from the pod: return %d, want redirect", tc.name, ret)
		}
		assertBytes(t, tc.name+" from the floating ip", out, eth(gwMAC, underlayMAC, 0x0800, tc.wantOut))
		ret, out = run(t, e.d.progs.UnderlayIngress, eth(underlayMAC, gwMAC, 0x0800, tc.in))
		if ret != tcRedirect {
			t.Fatalf("%s to the floating ip: return %d, want redirect", tc.name, ret)
		}
		assertBytes(t, tc.name+" to the pod", out, eth(tc.inTo, tc.inFrom, 0x0800, tc.wantIn))
	}
	n, err := e.d.ExternalFlows()
	must(t, err)
	if len(n) != 0 {
		t.Errorf("1:1 translation created flows: %v", n)
	}

	must(t, e.d.SetFloating([]Floating{{VRF: "red", Addr: fip, Pod: pod2Addr}}))
	ret, out := run(t, e.d.progs.UnderlayIngress, eth(underlayMAC, gwMAC, 0x0800, tcpPkt(inetAddr, 443, fip, 80, tcpSYN, 60, nil)))
	if ret != tcRedirect {
		t.Fatalf("after the move: return %d, want redirect", ret)
	}
	assertBytes(t, "to pod2 after the move", out, eth(pod2PeerMAC, pod2MAC, 0x0800, tcpPkt(inetAddr, 443, pod2Addr, 80, tcpSYN, 59, nil)))
	_, out = run(t, e.d.progs.PodIngress, eth(loMAC, pod1PeerMAC, 0x0800, tcpPkt(pod1Addr, 40001, inetAddr, 80, tcpSYN, 64, nil)))
	assertBytes(t, "pod1 source-NATed again", out, eth(gwMAC, underlayMAC, 0x0800, tcpPkt(hostAddr, 20000, inetAddr, 80, tcpSYN, 63, nil)))

	must(t, e.d.SetFloating(nil))
	in := eth(underlayMAC, gwMAC, 0x0800, tcpPkt(inetAddr, 443, fip, 80, tcpSYN, 60, nil))
	if ret, _ := run(t, e.d.progs.UnderlayIngress, in); ret != tcUnspec {
		t.Fatalf("unbound floating ip: return %d, want the host stack", ret)
	}
}

// TestSNATICMPErrorFromPodExact: a pod's port-unreachable about a reply it
// received through SNAT leaves from the SNAT address, quoting the reply
// as the remote end sent it (the SNAT address and port), every checksum
// exact.
func TestSNATICMPErrorFromPodExact(t *testing.T) {
	e := natEnv(t)
	snatOne(t, e)
	run(t, e.d.progs.PodIngress, eth(loMAC, pod1PeerMAC, 0x0800, udpPkt(pod1Addr, 40000, inetAddr, 53, 64, []byte("q"), true)))
	reply := udpPkt(inetAddr, 53, pod1Addr, 40000, 59, []byte("late answer"), true) // as the pod got it
	ret, out := run(t, e.d.progs.PodIngress, eth(loMAC, pod1PeerMAC, 0x0800, icmpUnreachable(pod1Addr, inetAddr, 64, reply)))
	if ret != tcRedirect {
		t.Fatalf("error from the pod: return %d, want redirect", ret)
	}
	sent := udpPkt(inetAddr, 53, hostAddr, 20000, 59, []byte("late answer"), true) // as the remote end sent it
	assertBytes(t, "error toward the remote end", out, eth(gwMAC, underlayMAC, 0x0800, icmpUnreachable(hostAddr, inetAddr, 63, sent)))
}
