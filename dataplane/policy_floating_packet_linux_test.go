package dataplane

import (
	"fmt"
	"net/netip"
	"testing"
)

// TestPolicyFloatingIngressExact: a flow that enters through a floating
// IP passes the pod's ingress policy, judged on the translated packet: a
// rule naming the pod's address decides, a rule naming the floating IP
// never matches. The accepted flow is delivered byte for byte as without
// policy; its replies leave the egress-isolated pod through the floating
// IP; a refused flow is dropped and counted; the flow table shows the
// verdict between the client and the pod's address.
func TestPolicyFloatingIngressExact(t *testing.T) {
	e := natEnv(t)
	snatOne(t, e)
	fip := netip.MustParseAddr("198.51.100.5")
	must(t, e.d.SetFloating([]Floating{{VRF: "red", Addr: fip, Pod: pod1Addr}}))
	must(t, e.d.SetPolicy(PolicyConfig{Interfaces: map[int]InterfacePolicy{1: {
		Ingress: &Attachment{Rules: []PolicyRule{
			{Destinations: pfx(pod1Addr.String() + "/32"), Protocol: 6, DestinationPorts: PortRange{80, 80}, Action: PolicyAccept, Entry: "web/10"},
			{Destinations: pfx(fip.String() + "/32"), Action: PolicyAccept, Entry: "fip/20"},
		}},
		Egress: &Attachment{},
	}}}))
	in := func(pkt []byte) (uint32, []byte) {
		return run(t, e.d.progs.UnderlayIngress, eth(underlayMAC, gwMAC, 0x0800, pkt))
	}

	ret, out := in(tcpPkt(inetAddr, 443, fip, 80, tcpSYN, 60, nil))
	if ret != tcRedirect {
		t.Fatalf("syn to the floating ip, port 80: return %d, want redirect", ret)
	}
	assertBytes(t, "accepted syn to the pod", out, eth(pod1PeerMAC, loMAC, 0x0800, tcpPkt(inetAddr, 443, pod1Addr, 80, tcpSYN, 59, nil)))

	// The pod's reply passes its egress as a reply and leaves from the
	// floating IP.
	ret, out = run(t, e.d.progs.PodIngress, fromPod1(tcpPkt(pod1Addr, 80, inetAddr, 443, tcpSYNACK, 64, nil)))
	if ret != tcRedirect {
		t.Fatalf("reply from the pod: return %d, want redirect", ret)
	}
	assertBytes(t, "reply from the floating ip", out, eth(gwMAC, underlayMAC, 0x0800, tcpPkt(fip, 80, inetAddr, 443, tcpSYNACK, 63, nil)))
	if ret, _ := in(tcpPkt(inetAddr, 443, fip, 80, 0x10, 60, []byte("get"))); ret != tcRedirect {
		t.Errorf("later packet of the accepted flow: return %d, want redirect", ret)
	}

	// Port 22: only the rule naming the floating IP would take it, and the
	// policy sees the pod's address.
	if ret, _ := in(tcpPkt(inetAddr, 444, fip, 22, tcpSYN, 60, nil)); ret != tcShot {
		t.Errorf("syn to the floating ip, port 22: return %d, want drop", ret)
	}
	// A flow the pod opens is still refused by its egress.
	if ret, _ := run(t, e.d.progs.PodIngress, fromPod1(tcpPkt(pod1Addr, 40000, inetAddr, 443, tcpSYN, 64, nil))); ret != tcShot {
		t.Errorf("a flow the pod opens: return %d, want drop", ret)
	}

	d, err := e.d.InterfacePolicyDenied(1)
	must(t, err)
	if d.Ingress != 1 || d.Egress != 1 {
		t.Errorf("pod1 denied %+v, want 1 ingress, 1 egress", d)
	}
	c, err := e.d.PolicyEntryCounters()
	must(t, err)
	if c["web/10"].Packets != 3 || c["fip/20"].Packets != 0 {
		t.Errorf("entries counted web/10 %+v, fip/20 %+v; want 3 and 0 packets", c["web/10"], c["fip/20"])
	}
	flows, err := e.d.PolicyFlows()
	must(t, err)
	verdicts := map[string]string{}
	for _, f := range flows {
		verdicts[fmt.Sprintf("%v>%v", f.Source, f.Dest)] = f.Verdict
	}
	for k, want := range map[string]string{"203.0.113.7:443>10.1.0.2:80": "ALLOW", "203.0.113.7:444>10.1.0.2:22": "DENY"} {
		if verdicts[k] != want {
			t.Errorf("flow %s: verdict %q, want %s (flows %v)", k, verdicts[k], want, verdicts)
		}
	}
}

// TestPolicyFloatingVPNExact: a pod whose floating IP is advertised as
// VPNv4 in an external VRF keeps its policy both ways: a flow from the
// data center passes its ingress on its own address and its reply leaves
// through the external VRF byte for byte, while a flow the pod opens
// toward the external VRF's routes is refused by its egress, decided in
// the pod's VRF on the pod's address.
func TestPolicyFloatingVPNExact(t *testing.T) {
	e := natEnv(t)
	fip := netip.MustParseAddr("198.51.100.5")
	dc := netip.MustParseAddr("10.8.0.5")
	must(t, e.d.SetRoutes([]Route{{RouteKey: RouteKey{VRF: "public", Prefix: netip.MustParsePrefix("10.8.0.0/24")},
		NextHops: []NextHop{{Endpoint: remote2, Label: 500, Encap: EncapMPLSoUDP}}}}))
	must(t, e.d.SetLabel(2000, LabelTarget{VRF: "public"}))
	must(t, e.d.AllowEndpoint(remote2, "public"))
	must(t, e.d.SetFloating([]Floating{{VRF: "red", Addr: fip, Pod: pod1Addr, Ext: "public"}}))
	must(t, e.d.SetPolicy(PolicyConfig{Interfaces: map[int]InterfacePolicy{1: {
		Ingress: &Attachment{Rules: []PolicyRule{{Sources: pfx("10.8.0.0/24"), Protocol: 6, DestinationPorts: PortRange{80, 80}, Action: PolicyAccept, Entry: "web/10"}}},
		Egress:  &Attachment{Rules: []PolicyRule{{Destinations: pfx(fip.String() + "/32"), Action: PolicyAccept, Entry: "out/10"}}},
	}}}))
	fromDC := func(pkt []byte) (uint32, []byte) {
		return run(t, e.d.progs.UnderlayIngress, underlayFrame(remote2, 6635, lse(2000, true, 63), pkt))
	}

	ret, out := fromDC(tcpPkt(dc, 40000, fip, 80, tcpSYN, 63, []byte("hi")))
	if ret != tcRedirect {
		t.Fatalf("syn from the data center to port 80: return %d, want redirect", ret)
	}
	assertBytes(t, "to pod1", out, eth(pod1PeerMAC, loMAC, 0x0800, tcpPkt(dc, 40000, pod1Addr, 80, tcpSYN, 62, []byte("hi"))))
	ret, out = run(t, e.d.progs.PodIngress, fromPod1(tcpPkt(pod1Addr, 80, dc, 40000, tcpSYNACK, 64, []byte("ho"))))
	if ret != tcRedirect {
		t.Fatalf("reply from pod1: return %d, want redirect", ret)
	}
	translated := tcpPkt(fip, 80, dc, 40000, tcpSYNACK, 63, []byte("ho"))
	sport := uint16(49152 | flowHash(translated)&0x3fff)
	outer := ip4{src: hostAddr, dst: remote2, proto: 17, ttl: 64, flags: 0x4000}.
		packet(udp(sport, 6635, cat(lse(500, true, 63), translated)))
	assertBytes(t, "reply over public's route", out, eth(peer2MAC, underlayMAC, 0x0800, outer))

	if ret, _ := fromDC(tcpPkt(dc, 40001, fip, 22, tcpSYN, 63, nil)); ret != tcShot {
		t.Errorf("syn from the data center to port 22: return %d, want drop", ret)
	}
	// The egress rule naming the floating IP never matches: the pod's own
	// address is what policy sees.
	if ret, _ := run(t, e.d.progs.PodIngress, fromPod1(tcpPkt(pod1Addr, 41000, dc, 443, tcpSYN, 64, nil))); ret != tcShot {
		t.Errorf("a flow pod1 opens toward the data center: return %d, want drop (egress)", ret)
	}
	d, err := e.d.InterfacePolicyDenied(1)
	must(t, err)
	if d.Ingress != 1 || d.Egress != 1 {
		t.Errorf("pod1 denied %+v, want 1 ingress, 1 egress", d)
	}
}
