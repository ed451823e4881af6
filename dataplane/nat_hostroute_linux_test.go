package dataplane

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
)

// TestHostRouteWaitsForPodLink: a pod attached to a VRF that already has
// host access, while the host end of its veth is still down (as during a
// CNI ADD, which commits the attachment before it brings the link up), is
// attached: the commit does not fail on the host route the kernel
// refuses through a down link. Once the link is up, the next refresh adds
// the route and the host reaches the pod.
func TestHostRouteWaitsForPodLink(t *testing.T) {
	requireRoot(t)
	h, _ := gatewayHost(t)
	red := addPod(t, h.ns, "pred", 1, netip.MustParseAddr("10.1.0.2"), podMTU)
	h.startFresh(t)
	h.commit(t, edits(
		gatewayUnderlay,
		extVRF("red", "65000:1", "pred", red, func(c *gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_External_Config) {
			c.DefaultPodNetwork, c.PortMin, c.PortMax = ygot.Bool(true), ygot.Uint16(20000), ygot.Uint16(20999)
		}),
	))

	serveWho(t, red.ns, "10.1.0.2:8080")
	if said, err := askWho(h.ns, "10.1.0.2:8080"); err != nil || !strings.HasPrefix(said, "192.0.2.1:") {
		t.Fatalf("host to the first pod: %q, %v; want a connection from 192.0.2.1", said, err)
	}

	// A second pod arrives with its host link down.
	late := addPod(t, h.ns, "plate", 2, netip.MustParseAddr("10.1.0.3"), podMTU)
	h.ns.ip(t, "link", "set", "plate", "down")
	h.commit(t, edits(func(d *gen.Device) { podInterface(d, "plate", "red", "10.1.0.3/32", late) }))
	if out := routeShow(t, h.ns, "10.1.0.3/32"); strings.TrimSpace(out) != "" {
		t.Fatalf("a route through a down link: %q", out)
	}

	h.ns.ip(t, "link", "set", "plate", "up")
	must(t, h.rec.refreshExternal())
	if out := routeShow(t, h.ns, "10.1.0.3/32"); !strings.Contains(out, "dev plate") {
		t.Fatalf("host route to the late pod after its link came up: %q", out)
	}
	serveWho(t, late.ns, "10.1.0.3:8080")
	if said, err := askWho(h.ns, "10.1.0.3:8080"); err != nil || !strings.HasPrefix(said, "192.0.2.1:") {
		t.Errorf("host to the late pod: %q, %v; want a connection from 192.0.2.1", said, err)
	}
}

// routeShow returns `ip route show prefix` in ns.
func routeShow(t *testing.T, ns *testNS, prefix string) string {
	t.Helper()
	out, err := ns.cmd("ip", "route", "show", prefix).CombinedOutput()
	if err != nil {
		t.Fatalf("ip route show %s: %v: %s", prefix, err, out)
	}
	return string(out)
}
