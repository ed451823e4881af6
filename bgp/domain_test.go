package bgp

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/isthmus-net/isthmus/nos"
)

// loopbackConfig returns the Config of a test speaker that listens on one
// loopback address and dials its peers on the same port.
func loopbackConfig(addr string) Config {
	return Config{ListenPort: 1790, ListenAddresses: []string{addr}, PeerPort: 1790}
}

// TestTwoHostsIBGP: a pod /32 exported by one host is imported by the
// other into the VRF whose import RT matches, with the exporting host's
// endpoint and label; a VRF with another RT stays empty; deleting the pod
// withdraws the route.
func TestTwoHostsIBGP(t *testing.T) {
	a := startNode(t, loopbackConfig("127.100.1.1"))
	b := startNode(t, loopbackConfig("127.100.1.2"))
	hostA := hostConf{as: 65000, routerID: "10.0.0.1", endpoint: "192.0.2.1",
		neighbors: []nbrConf{{addr: "127.100.1.2", as: 65000, local: "127.100.1.1"}},
		vrfs: []vrfConf{{name: "red", rd: "10.0.0.1:1", imp: []string{"65000:1"}, exp: []string{"65000:1"},
			pool: "10.1.0.0/24", pods: []string{"10.1.0.5"}}}}
	hostB := hostConf{as: 65000, routerID: "10.0.0.2", endpoint: "192.0.2.2",
		neighbors: []nbrConf{{addr: "127.100.1.1", as: 65000, local: "127.100.1.2"}},
		vrfs: []vrfConf{
			{name: "red", rd: "10.0.0.2:1", imp: []string{"65000:1"}, exp: []string{"65000:1"}, pool: "10.1.1.0/24", pods: []string{"10.1.1.7"}},
			{name: "blue", rd: "10.0.0.2:2", imp: []string{"65000:2"}, exp: []string{"65000:2"}, pool: "10.1.0.0/24"},
		}}
	a.commit(hostA)
	b.commit(hostB)

	lblA, err := a.core.Labels().VRF("red")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "red 10.1.0.5/32 on b", func() bool { _, ok := b.route("red", "10.1.0.5/32"); return ok })
	got, _ := b.route("red", "10.1.0.5/32")
	want := []nos.NextHop{{Endpoint: netip.MustParseAddr("192.0.2.1"), Label: lblA, Encap: nos.EncapMPLSoUDP}}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
		t.Errorf("b's route (-want +got):\n%s", diff)
	}
	eventually(t, 20*time.Second, "red 10.1.1.7/32 on a", func() bool { _, ok := a.route("red", "10.1.1.7/32"); return ok })
	if _, ok := b.route("blue", "10.1.0.5/32"); ok {
		t.Errorf("route with RT 65000:1 imported into blue (imports 65000:2)")
	}
	if _, ok := b.route("red", "10.1.1.7/32"); ok {
		t.Errorf("b imported its own route")
	}

	hostA.vrfs[0].pods = nil
	a.commit(hostA)
	eventually(t, 20*time.Second, "withdrawal on b", func() bool { _, ok := b.route("red", "10.1.0.5/32"); return !ok })
}
