package bgp

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
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
// withdraws the route; a session that ends without graceful restart takes
// the peer's routes with it.
func TestTwoHostsIBGP(t *testing.T) {
	a := startNode(t, loopbackConfig("127.100.1.1"))
	b := startNode(t, loopbackConfig("127.100.1.2"))
	hostA := hostConf{as: 65000, routerID: "10.0.0.1", endpoint: "192.0.2.1",
		neighbors: []nbrConf{{addr: "127.100.1.2", as: 65000, local: "127.100.1.1"}},
		vrfs: []vrfConf{{name: "red", rd: "10.0.0.1:1", imp: []string{"65000:1"}, exp: []string{"65000:1"},
			pool: "10.1.0.0/24", pods: []string{"10.1.0.5"}}}}
	hostB := hostConf{as: 65000, routerID: "10.0.0.2", endpoint: "192.0.2.2",
		neighbors: []nbrConf{{addr: "127.100.1.1", as: 65000, local: "127.100.1.2", passive: true}},
		vrfs: []vrfConf{
			{name: "red", rd: "10.0.0.2:1", imp: []string{"65000:1"}, exp: []string{"65000:1"}, pool: "10.1.1.0/24", pods: []string{"10.1.1.7"}},
			{name: "blue", rd: "10.0.0.2:2", imp: []string{"65000:2"}, exp: []string{"65000:2"}, pool: "10.1.0.0/24"},
		}}
	startSpeakers([]*node{a, b}, []hostConf{hostA, hostB})
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

	// Removing BGP from a removes what it learnt, and b, whose session to
	// a ends with a NOTIFICATION, removes what a sent.
	hostA.vrfs[0].pods = []string{"10.1.0.5"}
	a.commit(hostA)
	eventually(t, 20*time.Second, "red 10.1.0.5/32 on b again", func() bool { _, ok := b.route("red", "10.1.0.5/32"); return ok })
	eventually(t, 20*time.Second, "b's route on a", func() bool { _, ok := a.route("red", "10.1.1.7/32"); return ok })
	hostA.as = 0
	a.commit(hostA)
	eventually(t, 10*time.Second, "a's FIB empty without BGP", func() bool { total, _ := a.core.FIB().Len(); return total == 0 })
	eventually(t, 10*time.Second, "b's FIB empty once a is gone", func() bool { total, _ := b.core.FIB().Len(); return total == 0 })
}

// TestTwoDomains: two Isthmus domains, each a reflector with one client
// over iBGP, joined by eBGP between the reflectors. A pod route crosses
// both domains with its original endpoint and label (the reflectors pass
// learnt routes on with the next hop unchanged), and each reflector also
// imports the other domain's route.
func TestTwoDomains(t *testing.T) {
	const a1, a2, b1, b2 = "127.100.2.1", "127.100.2.2", "127.100.2.3", "127.100.2.4"
	red := func(rd, pool string, pods ...string) vrfConf {
		return vrfConf{name: "red", rd: rd, imp: []string{"65000:1"}, exp: []string{"65000:1"}, pool: pool, pods: pods}
	}
	hosts := map[string]hostConf{
		a1: {as: 65001, routerID: "10.0.1.1", endpoint: "192.0.2.11",
			neighbors: []nbrConf{{addr: a2, as: 65001, local: a1, rrClient: true}, {addr: b1, as: 65002, local: a1}},
			vrfs:      []vrfConf{red("10.0.1.1:1", "10.1.1.0/24")}},
		a2: {as: 65001, routerID: "10.0.1.2", endpoint: "192.0.2.12",
			neighbors: []nbrConf{{addr: a1, as: 65001, local: a2, passive: true}},
			vrfs:      []vrfConf{red("10.0.1.2:1", "10.1.2.0/24", "10.1.2.5")}},
		b1: {as: 65002, routerID: "10.0.2.1", endpoint: "192.0.2.21",
			neighbors: []nbrConf{{addr: b2, as: 65002, local: b1, rrClient: true}, {addr: a1, as: 65001, local: b1, passive: true}},
			vrfs:      []vrfConf{red("10.0.2.1:1", "10.2.1.0/24")}},
		b2: {as: 65002, routerID: "10.0.2.2", endpoint: "192.0.2.22",
			neighbors: []nbrConf{{addr: b1, as: 65002, local: b2, passive: true}},
			vrfs:      []vrfConf{red("10.0.2.2:1", "10.2.2.0/24", "10.2.2.7")}},
	}
	nodes := map[string]*node{}
	for addr, h := range hosts {
		nodes[addr] = startNode(t, loopbackConfig(addr))
		startSpeakers([]*node{nodes[addr]}, []hostConf{h})
	}
	for addr, h := range hosts {
		nodes[addr].commit(h)
	}
	lblA2, _ := nodes[a2].core.Labels().VRF("red")
	lblB2, _ := nodes[b2].core.Labels().VRF("red")
	check := func(at, prefix, endpoint string, label uint32) {
		t.Helper()
		n := nodes[at]
		const wait = 30 * time.Second
		deadline := time.Now().Add(wait)
		for {
			if _, ok := n.route("red", prefix); ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out after %s waiting for %s at %s; the domains now:\n%s", wait, prefix, at, describeNodes(nodes))
			}
			time.Sleep(20 * time.Millisecond)
		}
		got, _ := n.route("red", prefix)
		want := []nos.NextHop{{Endpoint: netip.MustParseAddr(endpoint), Label: label, Encap: nos.EncapMPLSoUDP}}
		if diff := cmp.Diff(want, got, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
			t.Errorf("%s at %s (-want +got):\n%s", prefix, at, diff)
		}
	}
	check(b2, "10.1.2.5/32", "192.0.2.12", lblA2)
	check(a2, "10.2.2.7/32", "192.0.2.22", lblB2)
	check(b1, "10.1.2.5/32", "192.0.2.12", lblA2)
	check(a1, "10.2.2.7/32", "192.0.2.22", lblB2)
	check(a1, "10.1.2.5/32", "192.0.2.12", lblA2)
}

// describeNodes says, for each node, what finding a route that went
// missing between them needs: each session's state and how often it came
// up, GoBGP's per-peer counts and the routes in the node's FIB. GoBGP's
// sent is what its export policy passes to the peer now, not what went
// out: a sent count above the peer's received count from us is a route
// lost on the way.
func describeNodes(nodes map[string]*node) string {
	var b strings.Builder
	for _, addr := range slices.Sorted(maps.Keys(nodes)) {
		r := nodes[addr].bgp
		fmt.Fprintf(&b, "%s:\n", addr)
		r.mu.Lock()
		sp := r.sp
		for _, a := range slices.SortedFunc(maps.Keys(r.peers), netip.Addr.Compare) {
			ps := r.peers[a]
			fmt.Fprintf(&b, "  neighbor %s %s, established %d times\n", a, sessionState(ps.state), ps.transitions)
		}
		r.mu.Unlock()
		if sp != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			counts, err := sp.counters(ctx, true)
			cancel()
			if err != nil {
				fmt.Fprintf(&b, "  gobgp counters: %v\n", err)
			}
			for _, a := range slices.SortedFunc(maps.Keys(counts), netip.Addr.Compare) {
				c := counts[a]
				fmt.Fprintf(&b, "  gobgp %s: received %d, accepted %d, sent %d\n", a, c.received, c.accepted, c.sent)
			}
		}
		var routes []string
		for _, k := range fibKeys(context.Background(), nodes[addr].core.FIB()) {
			nh, _ := nodes[addr].core.FIB().Lookup(k)
			routes = append(routes, fmt.Sprintf("%s %s %v", k.VRF, k.Prefix, nh))
		}
		slices.Sort(routes)
		fmt.Fprintf(&b, "  fib: %s\n", strings.Join(routes, "; "))
	}
	return b.String()
}

// TestHostAnnouncesOnlyOwnRoutes: a host without route-reflector clients
// does not pass one peer's routes on to another (GoBGP would, with itself
// as next hop).
func TestHostAnnouncesOnlyOwnRoutes(t *testing.T) {
	const x, y, z = "127.100.3.1", "127.100.3.2", "127.100.3.3"
	red := func(rd, pool string, pods ...string) []vrfConf {
		return []vrfConf{{name: "red", rd: rd, imp: []string{"65000:1"}, exp: []string{"65000:1"}, pool: pool, pods: pods}}
	}
	nx := startNode(t, loopbackConfig(x))
	ny := startNode(t, loopbackConfig(y))
	nz := startNode(t, loopbackConfig(z))
	hosts := []hostConf{
		{as: 65010, routerID: "10.0.3.1", endpoint: "192.0.2.31", vrfs: red("10.0.3.1:1", "10.3.1.0/24", "10.3.1.1"),
			neighbors: []nbrConf{{addr: y, as: 65011, local: x}, {addr: z, as: 65012, local: x}}},
		{as: 65011, routerID: "10.0.3.2", endpoint: "192.0.2.32", vrfs: red("10.0.3.2:1", "10.3.2.0/24", "10.3.2.1"),
			neighbors: []nbrConf{{addr: x, as: 65010, local: y, passive: true}}},
		{as: 65012, routerID: "10.0.3.3", endpoint: "192.0.2.33", vrfs: red("10.0.3.3:1", "10.3.3.0/24"),
			neighbors: []nbrConf{{addr: x, as: 65010, local: z, passive: true}}},
	}
	startSpeakers([]*node{nx, ny, nz}, hosts)
	nx.commit(hosts[0])
	ny.commit(hosts[1])
	nz.commit(hosts[2])
	eventually(t, 30*time.Second, "x's pod at z", func() bool { _, ok := nz.route("red", "10.3.1.1/32"); return ok })
	eventually(t, 30*time.Second, "y's pod at x", func() bool { _, ok := nx.route("red", "10.3.2.1/32"); return ok })
	time.Sleep(time.Second)
	if nh, ok := nz.route("red", "10.3.2.1/32"); ok {
		t.Errorf("x passed y's route on to z: %v", nh)
	}
}
