package bgp

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/isthmus-net/isthmus/nos"
)

// frrConf returns the configuration of an FRR gateway (AS 65001) with one
// eBGP neighbor (us, AS 65000), which it waits for (passive: only we dial,
// so no connection collision, on which GoBGP v4.8.0 races with itself).
// It originates:
//
//	172.16.5.0/24 rd 65001:5 label 2000 RT 65000:1   (imported into red)
//	172.16.6.0/24 rd 65001:6 label 2001 RT 65000:99  (matches no VRF)
//	172.16.7.0/24 rd 65001:7 label 2002 no RT        (rejected)
func frrConf(l *netLink, extra string) string {
	return fmt.Sprintf(`hostname gw
route-map SET-RT permit 10
 set extcommunity rt 65000:1
exit
route-map SET-RT-OTHER permit 10
 set extcommunity rt 65000:99
exit
router bgp 65001
 bgp router-id %[1]s
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 bgp graceful-restart
 bgp graceful-restart restart-time 30
 bgp graceful-restart preserve-fw-state
 neighbor %[2]s remote-as 65000
 neighbor %[2]s timers 3 9
 neighbor %[2]s timers connect 1
 neighbor %[2]s passive
%[3]s
 address-family ipv4 vpn
  neighbor %[2]s activate
  network 172.16.5.0/24 rd 65001:5 label 2000 route-map SET-RT
  network 172.16.6.0/24 rd 65001:6 label 2001 route-map SET-RT-OTHER
  network 172.16.7.0/24 rd 65001:7 label 2002
 exit-address-family
exit
`, l.peerAddr, l.hostAddr, extra)
}

// gatewayHost is our side of the FRR tests.
func gatewayHost(l *netLink) hostConf {
	return hostConf{as: 65000, routerID: "10.0.0.1", endpoint: "192.0.2.1", gr: true,
		neighbors: []nbrConf{{addr: l.peerAddr, as: 65001}},
		vrfs: []vrfConf{
			{name: "red", rd: "10.0.0.1:1", imp: []string{"65000:1"}, exp: []string{"65000:1"},
				pool: "10.1.0.0/24", pods: []string{"10.1.0.5", "10.1.0.6"}},
			{name: "blue", rd: "10.0.0.1:2", imp: []string{"65000:2"}, exp: []string{"65000:2"}, pool: "10.2.0.0/24"},
		}}
}

// TestFRRInterop: FRR receives our pod /32s with RD, RT, label and ET:13;
// FRR's route with a matching RT reaches the FIB of red; one with another
// RT is imported nowhere; one without RT is rejected and counted.
func TestFRRInterop(t *testing.T) {
	needRoot(t)
	l := newLink(t)
	gw := startFRR(t, l, frrConf(l, ""))
	n := startNode(t, Config{ListenPort: -1})
	n.commit(gatewayHost(l))
	label, err := n.core.Labels().VRF("red")
	if err != nil {
		t.Fatal(err)
	}

	eventually(t, 30*time.Second, "FRR holds our two pods", func() bool { return gw.vpnCount(l.hostAddr) == 2 })
	for _, pod := range []string{"10.1.0.5/32", "10.1.0.6/32"} {
		paths := gw.vpnRoute("10.0.0.1:1", pod)
		if len(paths) != 1 {
			t.Fatalf("FRR has %d paths for 10.0.0.1:1:%s\n%s", len(paths), pod, gw.vtysh("show bgp ipv4 vpn"))
		}
		p := paths[0]
		ec := p.ExtendedCommunity.String
		if !strings.Contains(ec, "RT:65000:1") || !strings.Contains(ec, "ET:13") {
			t.Errorf("%s: extended communities %q, want RT:65000:1 and ET:13", pod, ec)
		}
		if p.RemoteLabel != int(label) {
			t.Errorf("%s: label %d, want %d", pod, p.RemoteLabel, label)
		}
		if len(p.Nexthops) != 1 || p.Nexthops[0].IP != "192.0.2.1" {
			t.Errorf("%s: next hops %+v, want the tunnel source 192.0.2.1", pod, p.Nexthops)
		}
	}

	eventually(t, 30*time.Second, "FRR's 172.16.5.0/24 in red", func() bool { _, ok := n.route("red", "172.16.5.0/24"); return ok })
	got, _ := n.route("red", "172.16.5.0/24")
	want := []nos.NextHop{{Endpoint: netip.MustParseAddr(l.peerAddr), Label: 2000, Encap: nos.EncapMPLSoUDP}}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
		t.Errorf("red 172.16.5.0/24 (-want +got):\n%s", diff)
	}
	total, perVRF := n.core.FIB().Len()
	if total != 1 {
		t.Errorf("FIB has %d routes (%v), want only red 172.16.5.0/24", total, perVRF)
	}
	eventually(t, 10*time.Second, "rejected route counted", func() bool {
		return n.bgp.rib.counters().reasons["no-route-target"] == 1
	})
}

// TestFRRPassword: the session to FRR is signed with TCP MD5 (RFC 2385)
// when auth-password is set, and carries routes.
func TestFRRPassword(t *testing.T) {
	needRoot(t)
	l := newLink(t)
	gw := startFRR(t, l, frrConf(l, fmt.Sprintf(" neighbor %s password s3cret-md5", l.hostAddr)))
	n := startNode(t, Config{ListenPort: -1})
	host := gatewayHost(l)
	host.neighbors[0].password = "wrong"
	n.commit(host)
	time.Sleep(4 * time.Second)
	if c := gw.vpnCount(l.hostAddr); c > 0 {
		t.Fatalf("a session with the wrong password carried %d routes", c)
	}
	host.neighbors[0].password = "s3cret-md5"
	n.commit(host)
	eventually(t, 30*time.Second, "FRR holds our pods over the signed session", func() bool { return gw.vpnCount(l.hostAddr) == 2 })
	eventually(t, 10*time.Second, "FRR's route in red", func() bool { _, ok := n.route("red", "172.16.5.0/24"); return ok })
}
