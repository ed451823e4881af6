package dataplane

import (
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
)

// TestInterfaceDropsCounted: every packet the forwarder drops from a pod
// counts in that pod interface's RxDrops (in-drops), every packet it drops
// for a known pod in that pod's TxDrops (out-drops), each exactly once and
// on that interface only, beside its reason in the VRF; delivered packets
// count no drop.
func TestInterfaceDropsCounted(t *testing.T) {
	e := natEnv(t)
	must(t, e.d.SetPolicy(PolicyConfig{Interfaces: map[int]InterfacePolicy{
		1: {Egress: &Attachment{Rules: []PolicyRule{
			{Protocol: 17, DestinationPorts: PortRange{9, 9}, Action: PolicyDrop, Entry: "no-discard/10"},
		}, Default: PolicyAccept}},
		e.pod2: {Ingress: &Attachment{Rules: []PolicyRule{
			{Protocol: 17, DestinationPorts: PortRange{7, 7}, Action: PolicyDrop, Entry: "no-echo/10"},
		}, Default: PolicyAccept}},
	}}))
	const pod1 = 1
	noPod := netip.MustParseAddr("10.1.0.99") // in red, but no pod has it
	big, _ := podFrame(farAddr, 1, 64, make([]byte, 1500))
	noRoute, _ := podFrame(netip.MustParseAddr("10.200.0.1"), 1, 64, nil)
	ttl1, _ := podFrame(farAddr, 1, 1, nil)
	mplsTo := func(inner []byte) []byte { return eth(underlayMAC, peer3MAC, 0x8847, cat(lse(1000, true, 63), inner)) }
	ce := ip4{src: remote2, dst: hostAddr, proto: 17, ttl: 64, tos: 3, flags: 0x4000}
	// expect runs in through prog and checks its return, the drops it adds
	// on each side of pod1 and pod2 and whether it counts one in red.
	expect := func(name string, prog *ebpf.Program, in []byte, ret uint32, want podDrops, vrfDrop bool) {
		t.Helper()
		before := readPodDrops(t, e.d, pod1, e.pod2)
		red, err := e.d.Drops("red")
		must(t, err)
		if got, _ := run(t, prog, in); got != ret {
			t.Errorf("%s: return %d, want %d", name, got, ret)
		}
		redAfter, err := e.d.Drops("red")
		must(t, err)
		if got := readPodDrops(t, e.d, pod1, e.pod2).minus(before); got != want {
			t.Errorf("%s: drops added %+v, want %+v", name, got, want)
		}
		if got, want := redAfter.Total()-red.Total(), map[bool]uint64{true: 1}[vrfDrop]; got != want {
			t.Errorf("%s: red drops +%d, want +%d", name, got, want)
		}
	}
	pod, tunnel, xdp := e.d.progs.PodIngress, e.d.progs.UnderlayIngress, e.d.progs.UnderlayXdp
	expect("pod1 to pod2, delivered", pod, fromPod1(udpPkt(pod1Addr, 1000, pod2Addr, 53, 64, nil, true)), tcRedirect, podDrops{}, false)
	expect("from pod1: no route", pod, noRoute, tcShot, podDrops{In1: 1}, true)
	expect("from pod1: ttl 1", pod, ttl1, tcShot, podDrops{In1: 1}, true)
	expect("from pod1: too big to encapsulate", pod, big, tcShot, podDrops{In1: 1}, true)
	expect("from pod1: not ipv4", pod, eth(loMAC, pod1PeerMAC, 0x86dd, make([]byte, 40)), tcShot, podDrops{In1: 1}, true)
	expect("from pod1: its egress policy", pod, fromPod1(udpPkt(pod1Addr, 1001, pod2Addr, 9, 64, nil, true)), tcShot, podDrops{In1: 1}, false)
	snatOne(t, e) // one port
	expect("from pod1: snat", pod, fromPod1(tcpPkt(pod1Addr, 40000, inetAddr, 443, tcpSYN, 64, nil)), tcRedirect, podDrops{}, false)
	expect("from pod1: snat port exhausted", pod, fromPod1(tcpPkt(pod1Addr, 40001, inetAddr, 443, tcpSYN, 64, nil)), tcShot, podDrops{In1: 1}, true)
	reply := func(ttl uint8) []byte {
		return eth(underlayMAC, gwMAC, 0x0800, tcpPkt(inetAddr, 443, hostAddr, 20000, tcpSYNACK, ttl, nil))
	}
	expect("to pod1 from outside, snat reply: ttl 1", tunnel, reply(1), tcShot, podDrops{Out1: 1}, true)
	expect("to pod1 from outside, snat reply", tunnel, reply(60), tcRedirect, podDrops{}, false)
	expect("to pod2: its ingress policy", pod, fromPod1(udpPkt(pod1Addr, 1002, pod2Addr, 7, 64, nil, true)), tcShot, podDrops{Out2: 1}, false)
	expect("to pod2 over udp: ttl 1", tunnel, underlayFrame(remote2, 6635, lse(1000, true, 1), remoteInner(pod2Addr, 1)), tcShot, podDrops{Out2: 1}, true)
	expect("to pod2 over udp by its label: ttl 1", tunnel, underlayFrame(remote2, 6635, lse(1001, true, 1), remoteInner(pod2Addr, 1)), tcShot, podDrops{Out2: 1}, true)
	expect("to pod2 over udp: outer CE, inner not ECN-capable", tunnel, outerFrame(ce, lse(1001, true, 63), remoteInner(pod2Addr, 63), nil), tcShot, podDrops{Out2: 1}, true)
	expect("to pod2 over udp: its ingress policy", tunnel, underlayFrame(remote2, 6635, lse(1000, true, 63),
		ip4{src: farAddr, dst: pod2Addr, proto: 17, ttl: 63}.packet(udp(5201, 7, nil))), tcShot, podDrops{Out2: 1}, false)
	expect("to pod2 over mpls: ttl 1", xdp, mplsTo(remoteInner(pod2Addr, 1)), xdpDrop, podDrops{Out2: 1}, true)
	expect("to no pod over udp: ttl 1", tunnel, underlayFrame(remote2, 6635, lse(1000, true, 1), remoteInner(noPod, 1)), tcShot, podDrops{}, true)
	expect("to no pod over mpls", xdp, mplsTo(remoteInner(noPod, 63)), xdpDrop, podDrops{}, true)
	expect("to pod2 over udp, delivered", tunnel, underlayFrame(remote2, 6635, lse(1000, true, 63), remoteInner(pod2Addr, 63)), tcRedirect, podDrops{}, false)
	expect("to pod2 over mpls, handed to tc", xdp, mplsTo(remoteInner(pod2Addr, 63)), xdpPass, podDrops{}, false)
}

// TestInterfaceCountersFloatingPolicy: a packet to a floating IP that the
// pod's ingress policy refuses counts in the pod's out-drops and not in its
// out-pkts; one it accepts the other way round.
func TestInterfaceCountersFloatingPolicy(t *testing.T) {
	e := natEnv(t)
	fip := netip.MustParseAddr("198.51.100.5")
	must(t, e.d.SetFloating([]Floating{{VRF: "red", Addr: fip, Pod: pod1Addr}}))
	must(t, e.d.SetPolicy(PolicyConfig{Interfaces: map[int]InterfacePolicy{1: {
		Ingress: &Attachment{Rules: []PolicyRule{{Protocol: 6, DestinationPorts: PortRange{80, 80}, Action: PolicyAccept, Entry: "web/10"}}},
	}}}))
	for _, c := range []struct {
		name      string
		port      uint16
		ret       uint32
		pkts, drs uint64
	}{{"accepted", 80, tcRedirect, 1, 0}, {"refused", 22, tcShot, 0, 1}} {
		before, err := e.d.InterfaceCounters(1)
		must(t, err)
		ret, _ := run(t, e.d.progs.UnderlayIngress, eth(underlayMAC, gwMAC, 0x0800, tcpPkt(inetAddr, 443, fip, c.port, tcpSYN, 60, nil)))
		after, err := e.d.InterfaceCounters(1)
		must(t, err)
		if ret != c.ret {
			t.Errorf("%s: return %d, want %d", c.name, ret, c.ret)
		}
		if pkts, drs := after.TxPackets-before.TxPackets, after.TxDrops-before.TxDrops; pkts != c.pkts || drs != c.drs {
			t.Errorf("%s: pod1 out-pkts +%d, out-drops +%d, want +%d, +%d", c.name, pkts, drs, c.pkts, c.drs)
		}
	}
}

// TestInterfaceDropsStartAtZero: a pod interface that takes the slot of a
// detached one starts with no drops, policy's included.
func TestInterfaceDropsStartAtZero(t *testing.T) {
	e := newPacketEnv(t)
	must(t, e.d.SetPolicy(PolicyConfig{Interfaces: map[int]InterfacePolicy{
		e.pod2: {Ingress: &Attachment{Default: PolicyDrop}},
	}}))
	if ret, _ := run(t, e.d.progs.PodIngress, fromPod1(udpPkt(pod1Addr, 1000, pod2Addr, 53, 64, nil, true))); ret != tcShot {
		t.Fatalf("to pod2: return %d, want drop", ret)
	}
	ttl1 := underlayFrame(remote2, 6635, lse(1001, true, 1), remoteInner(pod2Addr, 1))
	if ret, _ := run(t, e.d.progs.UnderlayIngress, ttl1); ret != tcShot {
		t.Fatalf("ttl 1 to pod2: return %d, want drop", ret)
	}
	c, err := e.d.InterfaceCounters(e.pod2)
	must(t, err)
	if c.TxDrops != 2 {
		t.Fatalf("pod2 out-drops %d, want 2", c.TxDrops)
	}
	must(t, e.d.SetPolicy(PolicyConfig{}))
	must(t, e.d.DetachInterface(e.pod2))
	pod3 := addVeth(t, "pod3", "pod3p", mustMAC("0a:00:00:00:04:01"), mustMAC("0a:00:00:00:04:02"))
	must(t, e.d.AttachInterface(Interface{Index: pod3.Index, VRF: "red", PeerMAC: mustMAC("0a:00:00:00:04:02")}))
	c, err = e.d.InterfaceCounters(pod3.Index)
	must(t, err)
	if c != (InterfaceCounters{}) {
		t.Errorf("new pod interface counters %+v, want zero", c)
	}
}

// podDrops are the drops of pod1 and pod2 (in: from the pod, out: to it).
type podDrops struct{ In1, Out1, In2, Out2 uint64 }

func readPodDrops(t *testing.T, d *Dataplane, pod1, pod2 int) podDrops {
	t.Helper()
	c1, err := d.InterfaceCounters(pod1)
	must(t, err)
	c2, err := d.InterfaceCounters(pod2)
	must(t, err)
	return podDrops{c1.RxDrops, c1.TxDrops, c2.RxDrops, c2.TxDrops}
}

func (a podDrops) minus(b podDrops) podDrops {
	return podDrops{a.In1 - b.In1, a.Out1 - b.Out1, a.In2 - b.In2, a.Out2 - b.Out2}
}
