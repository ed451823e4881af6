package dataplane

import (
	"net/netip"
	"testing"

	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// metaFlowMagic is META_FLOW_MAGIC (bpf/service_mpls.h): what underlay_xdp
// writes in the metadata of a packet it hands to tc for the flow table.
const metaFlowMagic = 0x15e2

// TestServiceMPLSoMPLS: in a VRF that runs MPLS over MPLS (decapsulated
// in XDP), services work both ways: a pod on host a reaches the service,
// whose one backend is on host b, and the backend's reply, arriving over
// MPLSoMPLS, is translated back; a pod on host b reaches a service of
// host a whose backend is a's, its packets arriving over MPLSoMPLS are
// translated to that backend.
func TestServiceMPLSoMPLS(t *testing.T) {
	transport := []uint32{16001, 16002}
	a, b, addrs := newCoreHosts(t, func(i int, d *gen.Device) {
		other := 1 - i
		d.GetOrCreateNetworkInstances().GetOrCreateNetworkInstance("red").GetOrCreateConfig().Encapsulation = gen.IsthmusTypes_Encapsulation_MPLS_OVER_MPLS
		tun := d.GetOrCreateTunnel()
		tun.GetOrCreateConfig().TransportLabel = ygot.Uint32(transport[i])
		n := tun.GetOrCreateNeighbors().GetOrCreateNeighbor([]string{"192.0.2.1", "192.0.2.2"}[other]).GetOrCreateConfig()
		n.Address, n.TransportLabel = ygot.String([]string{"192.0.2.1", "192.0.2.2"}[other]), ygot.Uint32(transport[other])
	})
	pa := addPod(t, a.ns, "pb1", 11, netip.MustParseAddr("10.1.0.3"), podMTU)
	pb := addPod(t, b.ns, "pb2", 12, netip.MustParseAddr("10.2.0.3"), podMTU)
	backendServer(t, pa)
	backendServer(t, pb)
	// Host a: service web → pb (on b). Host b: the same address → pa (on a)
	// is not what b serves; b has no service, it routes the address to a,
	// where web → pa for traffic from the tunnel.
	a.commit(t, edits(podConfig(pa), webConfig(pa, pb)))
	b.commit(t, edits(podConfig(pb)))

	labelA, err := a.core.Labels().VRF("red")
	must(t, err)
	// Host b labels per prefix.
	var toB, toA []nos.RouteChange
	for _, p := range []netip.Addr{b.pod.addr, pb.addr} {
		labelB, err := b.core.Labels().Prefix("red", netip.PrefixFrom(p, 32))
		must(t, err)
		toB = append(toB, nos.RouteChange{Route: nos.Route{RouteKey: nos.RouteKey{VRF: "red", Prefix: netip.PrefixFrom(p, 32)},
			NextHops: []nos.NextHop{{Endpoint: addrs[1], Label: labelB, Encap: nos.EncapMPLSoMPLS}}}})
	}
	for _, p := range []netip.Addr{a.pod.addr, pa.addr, vipAddr} {
		toA = append(toA, nos.RouteChange{Route: nos.Route{RouteKey: nos.RouteKey{VRF: "red", Prefix: netip.PrefixFrom(p, 32)},
			NextHops: []nos.NextHop{{Endpoint: addrs[0], Label: labelA, Encap: nos.EncapMPLSoMPLS}}}})
	}
	a.core.FIB().Update(toB)
	b.core.FIB().Update(toA)
	waitPing(t, a.pod, pb.addr, true)

	// From a's pod: both backends answer, pb's replies over MPLSoMPLS.
	seen := map[string]int{}
	for range 40 {
		c, who, err := askVIP(a.pod, 'q')
		if err != nil {
			t.Fatalf("connection from host a's pod to the service: %v", err)
		}
		c.Close()
		seen[who]++
	}
	if seen[pb.addr.String()] == 0 || seen[pa.addr.String()] == 0 {
		t.Errorf("connections from host a's pod reached %v, want both backends", seen)
	}
	// From b's pod, over MPLSoMPLS to a: a's local backend only.
	for range 10 {
		c, who, err := askVIP(b.pod, 'q')
		if err != nil {
			t.Fatalf("connection from host b's pod to the service over MPLSoMPLS: %v", err)
		}
		c.Close()
		if who != pa.addr.String() {
			t.Fatalf("connection from host b's pod reached %s, want host a's backend %s", who, pa.addr)
		}
	}
}
