package dataplane

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
)

// TestDeliveryIntoPods checks how packets reach a pod, from the underlay
// (MPLSoUDP and MPLSoMPLS) and from a pod of the same host: straight into
// the pod end's ingress with bpf_redirect_peer, so the host end of the
// pod's veth transmits nothing while the pod end receives every packet;
// the forwarder's own per-interface counters count each packet once; and
// the TTL is decremented once per host (ping's replies arrive with 62
// across the tunnel, 63 within a host).
func TestDeliveryIntoPods(t *testing.T) {
	for _, encap := range []Encap{EncapMPLSoUDP, EncapMPLSoMPLS} {
		t.Run(encap.String(), func(t *testing.T) {
			o := newOverlay(t, encap)
			aRed, bRed := o.a.pods["red"], o.b.pods["red"]
			// A second red pod on host b, for delivery within the host.
			local := addPod(t, o.b.ns, "pred2", 40, netip.MustParseAddr("10.2.0.3"), podMTU)
			must(t, o.b.ns.do(func() error {
				l, err := netlink.LinkByName(local.hostIf)
				if err != nil {
					return err
				}
				if err := o.b.d.AttachInterface(Interface{Index: l.Attrs().Index, VRF: "red", PeerMAC: local.mac}); err != nil {
					return err
				}
				return o.b.d.SetRoutes([]Route{{RouteKey: RouteKey{VRF: "red", Prefix: netip.PrefixFrom(local.addr, 32)}, Interface: l.Attrs().Index}})
			}))
			checkDelivery(t, o.b, aRed, bRed, 62, bRed)
			checkDelivery(t, o.b, local, bRed, 63, bRed, local)
		})
	}
}

// checkDelivery pings to from from (5 echo requests) and checks, for
// each of pods (pods of host h that the echo requests or replies reach):
// the forwarder counted 5 packets to the pod, the kernel counted 5
// packets received by the pod end and none sent by the host end; and
// every reply arrived with TTL wantTTL.
func checkDelivery(t *testing.T, h *testHost, from, to *testPod, wantTTL int, pods ...*testPod) {
	t.Helper()
	type snap struct {
		ours          InterfaceCounters
		hostTx, podRx uint64
	}
	read := func(p *testPod) snap {
		c, err := h.d.InterfaceCounters(hostIndex(t, h, p))
		must(t, err)
		return snap{ours: c, hostTx: kernelStat(t, h.ns, p.hostIf, "tx_packets"), podRx: kernelStat(t, p.ns, "eth0", "rx_packets")}
	}
	before := map[*testPod]snap{}
	for _, p := range pods {
		before[p] = read(p)
	}
	const n = 5
	out, err := from.ping(to.addr, "-c", strconv.Itoa(n), "-i", "0.05", "-W", "2")
	if err != nil {
		t.Fatalf("ping %v from %v: %v\n%s", to.addr, from.addr, err, out)
	}
	if got := strings.Count(out, fmt.Sprintf("ttl=%d ", wantTTL)); got != n {
		t.Errorf("ping %v from %v: %d of %d replies with ttl=%d:\n%s", to.addr, from.addr, got, n, wantTTL, out)
	}
	for _, p := range pods {
		a, z := before[p], read(p)
		if d := z.ours.TxPackets - a.ours.TxPackets; d != n {
			t.Errorf("%s: forwarder counted %d packets to the pod, want %d", p.hostIf, d, n)
		}
		if d := z.podRx - a.podRx; d != n {
			t.Errorf("%s: pod end received %d packets, want %d", p.hostIf, d, n)
		}
		if d := z.hostTx - a.hostTx; d != 0 {
			t.Errorf("%s: host end sent %d packets, want 0 (delivery must go to the peer, not through veth_xmit)", p.hostIf, d)
		}
	}
}

// hostIndex returns the ifindex of the host end of p, a pod of h.
func hostIndex(t *testing.T, h *testHost, p *testPod) int {
	t.Helper()
	var idx int
	must(t, h.ns.do(func() error {
		l, err := netlink.LinkByName(p.hostIf)
		if err != nil {
			return err
		}
		idx = l.Attrs().Index
		return nil
	}))
	return idx
}

// kernelStat reads one of the kernel's counters of an interface in ns.
func kernelStat(t *testing.T, ns *testNS, ifname, stat string) uint64 {
	t.Helper()
	out, err := ns.cmd("cat", "/sys/class/net/"+ifname+"/statistics/"+stat).Output()
	if err != nil {
		t.Fatalf("read %s of %s: %v", stat, ifname, err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		t.Fatalf("parse %s of %s: %v", stat, ifname, err)
	}
	return v
}
