package dataplane

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
)

// Tests of what decapsulation checks before it delivers: the endpoint ×
// VRF allow set, the label's VRF at delivery, the outer IPv4 header, and
// the ECN combination of RFC 6040.

// blueEnv is a packetEnv with a second VRF, blue: pod3 (a veth) with the
// per-interface label 2000. No endpoint may send into blue yet.
func blueEnv(t testing.TB) (*packetEnv, int) {
	e := newPacketEnv(t)
	pod3 := addVeth(t, "pod3", "pod3p", mustMAC("0a:00:00:00:03:01"), mustMAC("0a:00:00:00:03:02"))
	must(t, e.d.AttachInterface(Interface{Index: pod3.Index, VRF: "blue", PeerMAC: mustMAC("0a:00:00:00:03:02")}))
	must(t, e.d.SetLabel(2000, LabelTarget{VRF: "blue", Interface: pod3.Index}))
	return e, pod3.Index
}

// expectDrop runs one frame and checks the return code and that exactly
// one drop was counted, for reason in vrf.
func expectDrop(t *testing.T, e *packetEnv, p *ebpf.Program, in []byte, ret uint32, vrf string, reason func(DropCounters) uint64, what string) {
	t.Helper()
	before, err := e.d.Drops(vrf)
	must(t, err)
	got, _ := run(t, p, in)
	after, err := e.d.Drops(vrf)
	must(t, err)
	if got != ret {
		t.Errorf("%s: return %d, want %d", what, got, ret)
	}
	if n := reason(after) - reason(before); n != 1 || after.Total()-before.Total() != 1 {
		t.Errorf("%s: reason +%d, total +%d in vrf %q, want +1 both", what, n, after.Total()-before.Total(), vrf)
	}
}

func TestDecapOnlyFromEndpointsOfTheVRF(t *testing.T) {
	e, _ := blueEnv(t)
	inner := remoteInner(netip.MustParseAddr("10.1.0.9"), 63)
	udpFrame := underlayFrame(remote2, 6635, lse(2000, true, 63), inner)
	mplsFrame := eth(underlayMAC, peer3MAC, 0x8847, cat(lse(16001, false, 63), lse(2000, true, 63), inner))

	// remote2 and remote3 are next hops of red only: blue's label from
	// them is dropped, and counted in blue.
	expectDrop(t, e, e.d.progs.UnderlayIngress, udpFrame, tcShot, "blue", unknownEndpoint, "mplsoudp into blue")
	expectDrop(t, e, e.d.progs.UnderlayXdp, mplsFrame, xdpDrop, "blue", unknownEndpoint, "mplsompls into blue")

	must(t, e.d.AllowEndpoint(remote2, "blue"))
	must(t, e.d.AllowEndpoint(remote3, "blue"))
	if ret, out := run(t, e.d.progs.UnderlayIngress, udpFrame); ret != tcRedirect {
		t.Errorf("mplsoudp into blue once allowed: return %d", ret)
	} else {
		assertBytes(t, "delivered into blue", out,
			eth(mustMAC("0a:00:00:00:03:02"), mustMAC("0a:00:00:00:03:01"), 0x0800, withTTL(inner, 62)))
	}
	if ret, _ := run(t, e.d.progs.UnderlayXdp, mplsFrame); ret != xdpPass {
		t.Errorf("mplsompls into blue once allowed: return %d", ret)
	}
	if got, err := e.d.EndpointVRFs(); err != nil || len(got[remote2]) != 2 {
		t.Errorf("endpoint vrfs %v (%v), want remote2 in blue and red", got, err)
	}

	must(t, e.d.DenyEndpoint(remote2, "blue"))
	must(t, e.d.DenyEndpoint(remote3, "blue"))
	expectDrop(t, e, e.d.progs.UnderlayIngress, udpFrame, tcShot, "blue", unknownEndpoint, "mplsoudp after deny")
	expectDrop(t, e, e.d.progs.UnderlayXdp, mplsFrame, xdpDrop, "blue", unknownEndpoint, "mplsompls after deny")

	// A slot given to a new endpoint starts with an empty allow set.
	must(t, e.d.AllowEndpoint(remote2, "blue"))
	slot := e.d.epSlots[remote2]
	must(t, e.d.DeleteRoutes([]RouteKey{
		{VRF: "red", Prefix: netip.MustParsePrefix("10.2.0.0/24")}, {VRF: "red", Prefix: netip.MustParsePrefix("10.4.0.0/24")}}))
	must(t, e.d.DeleteEndpoint(remote2))
	other := netip.MustParseAddr("192.0.2.77")
	must(t, e.d.SetEndpoint(Endpoint{Addr: other, MAC: peer2MAC}))
	if got := e.d.epSlots[other]; got != slot {
		t.Fatalf("new endpoint got slot %d, want the freed slot %d", got, slot)
	}
	expectDrop(t, e, e.d.progs.UnderlayIngress, underlayFrame(other, 6635, lse(2000, true, 63), inner),
		tcShot, "blue", unknownEndpoint, "new endpoint in a reused slot")
}

func TestDecapChecksTheLabelVRFOnDelivery(t *testing.T) {
	e, pod3 := blueEnv(t)
	// pod2 goes away without its label being deleted, and blue's pod3 is
	// attached again and takes pod2's slot: label 1001 (red) now names a
	// slot in blue.
	slot := e.d.ifSlots[e.pod2]
	must(t, e.d.DetachInterface(pod3))
	must(t, e.d.DetachInterface(e.pod2))
	must(t, e.d.AttachInterface(Interface{Index: pod3, VRF: "blue", PeerMAC: mustMAC("0a:00:00:00:03:02")}))
	if e.d.ifSlots[pod3] != slot {
		t.Fatalf("test setup: slot %d not reused (pod3 got %d; slots go lowest free first)", slot, e.d.ifSlots[pod3])
	}
	in := underlayFrame(remote2, 6635, lse(1001, true, 63), remoteInner(pod2Addr, 63))
	expectDrop(t, e, e.d.progs.UnderlayIngress, in, tcShot, "red", func(d DropCounters) uint64 { return d.NoRoute }, "label of red into a blue slot")
}

// outerFrame is underlayFrame with a chosen outer header, edited by fix
// (the checksum is recomputed afterwards).
func outerFrame(h ip4, label, inner []byte, fix func(outer []byte) []byte) []byte {
	outer := h.packet(udp(50000, 6635, cat(label, inner)))
	if fix != nil {
		outer = fix(outer)
	}
	ihl := int(outer[0]&0xf) * 4
	outer[10], outer[11] = 0, 0
	binary.BigEndian.PutUint16(outer[10:], csum(outer[:ihl]))
	return eth(underlayMAC, peer2MAC, 0x0800, outer)
}

func TestDecapOuterIPv4Validated(t *testing.T) {
	e := newPacketEnv(t)
	h := ip4{src: remote2, dst: hostAddr, proto: 17, ttl: 64, flags: 0x4000}
	label, inner := lse(1001, true, 63), remoteInner(pod2Addr, 63)
	setLen := func(off int, delta int) func([]byte) []byte {
		return func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[off:], uint16(int(binary.BigEndian.Uint16(b[off:]))+delta))
			return b
		}
	}
	cases := []struct {
		name string
		h    ip4
		fix  func([]byte) []byte
	}{
		{"options", h, func(b []byte) []byte {
			o := cat(b[:20], []byte{1, 1, 1, 0}, b[20:])
			o[0] = 0x46
			binary.BigEndian.PutUint16(o[2:], uint16(len(o)))
			return o
		}},
		{"version 6", h, func(b []byte) []byte { b[0] = 0x65; return b }},
		{"more fragments", ip4{src: remote2, dst: hostAddr, proto: 17, ttl: 64, flags: 0x2000}, nil},
		{"fragment offset", ip4{src: remote2, dst: hostAddr, proto: 17, ttl: 64, flags: 0x0001}, nil},
		{"total length beyond the frame", h, setLen(2, 1)},
		{"total length below the headers", h, func(b []byte) []byte { binary.BigEndian.PutUint16(b[2:], 31); return b }},
		{"udp length disagrees", h, setLen(24, -1)},
	}
	for _, c := range cases {
		expectDrop(t, e, e.d.progs.UnderlayIngress, outerFrame(c.h, label, inner, c.fix), tcShot, "", malformed, c.name)
	}
	// Ethernet padding after the packet is fine.
	padded := cat(outerFrame(h, label, inner, nil), make([]byte, 6))
	if ret, out := run(t, e.d.progs.UnderlayIngress, padded); ret != tcRedirect {
		t.Errorf("padded frame: return %d, want redirect", ret)
	} else {
		assertBytes(t, "padded frame", out, cat(eth(pod2PeerMAC, pod2MAC, 0x0800, withTTL(inner, 62)), make([]byte, 6)))
	}
}

func TestDecapECN(t *testing.T) {
	e := newPacketEnv(t)
	const notECT, ect1, ect0, ce = 0, 1, 2, 3
	innerWith := func(tos uint8, ttl uint8) []byte {
		return ip4{src: farAddr, dst: pod2Addr, proto: 17, ttl: ttl, tos: tos, id: 9}.packet(udp(5201, 40000, []byte("ecn")))
	}
	// RFC 6040, figure 4 (normal mode), with a DSCP that must survive.
	cases := []struct {
		outer, inner uint8
		want         int // the inner ECN delivered, -1: dropped
	}{
		{notECT, notECT, notECT}, {notECT, ect0, ect0}, {notECT, ect1, ect1}, {notECT, ce, ce},
		{ect0, notECT, notECT}, {ect0, ect0, ect0}, {ect0, ect1, ect1}, {ect0, ce, ce},
		{ect1, notECT, notECT}, {ect1, ect0, ect1}, {ect1, ect1, ect1}, {ect1, ce, ce},
		{ce, notECT, -1}, {ce, ect0, ce}, {ce, ect1, ce}, {ce, ce, ce},
	}
	for _, c := range cases {
		h := ip4{src: remote2, dst: hostAddr, proto: 17, ttl: 64, tos: 0xb8 | c.outer, flags: 0x4000}
		in := outerFrame(h, lse(1001, true, 63), innerWith(0x28|c.inner, 63), nil)
		if c.want < 0 {
			expectDrop(t, e, e.d.progs.UnderlayIngress, in, tcShot, "red", malformed, "outer CE over not-ECT")
			continue
		}
		ret, out := run(t, e.d.progs.UnderlayIngress, in)
		if ret != tcRedirect {
			t.Errorf("outer %d inner %d: return %d, want redirect", c.outer, c.inner, ret)
			continue
		}
		assertBytes(t, "inner after ECN combination", out, eth(pod2PeerMAC, pod2MAC, 0x0800, innerWith(0x28|uint8(c.want), 62)))
	}
}

// TestDecapRefusedBeforeTheFlowTable: a label from an endpoint outside
// its VRF's allow set is refused before the flow table sees the packet,
// so a spoofer cannot fill a VRF's flow table; an admitted packet makes
// its flow.
func TestDecapRefusedBeforeTheFlowTable(t *testing.T) {
	e, _ := blueEnv(t)
	// A service in blue at the inner destination, its backend local.
	vip := netip.MustParseAddr("10.1.0.9")
	must(t, e.d.SetServices([]Service{{ServiceKey: ServiceKey{VRF: "blue", Addr: vip, Proto: UDP, Port: 40000},
		Backends: []Backend{{BackendKey: BackendKey{Addr: netip.MustParseAddr("10.1.0.3"), Port: 40000}, Ready: true, Serving: true, Local: true}}}}))
	inner := remoteInner(vip, 63)
	flows := func() int {
		f, err := e.d.readFlows()
		must(t, err)
		return len(f)
	}
	before := flows()
	expectDrop(t, e, e.d.progs.UnderlayIngress, underlayFrame(remote2, 6635, lse(2000, true, 63), inner), tcShot, "blue", unknownEndpoint, "spoofed into blue")
	if n := flows(); n != before {
		t.Errorf("a refused packet made %d flows", n-before)
	}
	must(t, e.d.AllowEndpoint(remote2, "blue"))
	if ret, _ := run(t, e.d.progs.UnderlayIngress, underlayFrame(remote2, 6635, lse(2000, true, 63), inner)); ret != tcRedirect {
		t.Fatalf("admitted packet: return %d", ret)
	}
	if n := flows(); n == before {
		t.Error("an admitted packet made no flow: the check above proves nothing")
	}
}
