package bgp

import (
	"net/netip"
	"testing"
	"time"

	"github.com/isthmus-net/isthmus/gen"
)

// TestStaticRouteFollowsLateInterface: a static route committed before its
// pod interface is attached reaches the peer once the interface is
// attached, and is withdrawn when the interface goes.
func TestStaticRouteFollowsLateInterface(t *testing.T) {
	const a, b = "127.100.11.1", "127.100.11.2"
	na, nb := startNode(t, loopbackConfig(a)), startNode(t, loopbackConfig(b))
	red := func(rd, pool string, pods ...string) []vrfConf {
		return []vrfConf{{name: "red", rd: rd, imp: []string{"65000:1"}, exp: []string{"65000:1"}, pool: pool, pods: pods}}
	}
	hostA := hostConf{as: 65000, routerID: "10.0.11.1", endpoint: "192.0.2.111", vrfs: red("10.0.11.1:1", "10.11.1.0/24", "10.11.1.1"),
		neighbors: []nbrConf{{addr: b, as: 65000, local: a}}}
	hostB := hostConf{as: 65000, routerID: "10.0.11.2", endpoint: "192.0.2.112", vrfs: red("10.0.11.2:1", "10.11.2.0/24"),
		neighbors: []nbrConf{{addr: a, as: 65000, local: b, passive: true}}}
	startSpeakers([]*node{na, nb}, []hostConf{hostA, hostB})
	nb.commit(hostB)
	na.commitWith(hostA, func(d *gen.Device) { routeVia(d, "red", "172.21.0.0/16", "late0") })
	eventually(t, 30*time.Second, "a's pod at b", func() bool { _, ok := nb.route("red", "10.11.1.1/32"); return ok })
	if _, ok := nb.route("red", "172.21.0.0/16"); ok {
		t.Fatal("static route exported before its interface is attached")
	}
	if _, ok := na.bgp.exportedRoute("red", "172.21.0.0/16"); ok {
		t.Fatal("static route advertised before its interface is attached")
	}

	na.commitWith(hostA, func(d *gen.Device) {
		routeVia(d, "red", "172.21.0.0/16", "late0")
		attachPod(d, "late0", "red", "10.11.1.9", true)
	})
	eventually(t, 20*time.Second, "static route at b once late0 attached", func() bool { _, ok := nb.route("red", "172.21.0.0/16"); return ok })

	na.commitWith(hostA, func(d *gen.Device) { routeVia(d, "red", "172.21.0.0/16", "late0") })
	eventually(t, 20*time.Second, "static route withdrawn once late0 went", func() bool { _, ok := nb.route("red", "172.21.0.0/16"); return !ok })
	if _, ok := nb.route("red", "10.11.1.1/32"); !ok {
		t.Error("a's pod route went with the static route")
	}
}

// exportedRoute returns what the speaker advertises for a prefix of a VRF.
func (r *Reconciler) exportedRoute(vrf, prefix string) (exportRoute, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.exported[exportKey{vrf, netip.MustParsePrefix(prefix)}]
	return e, ok
}
