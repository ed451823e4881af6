package bgp

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
)

// attachPod adds a pod interface to a tree.
func attachPod(d *gen.Device, name, vrf, addr string, enabled bool) {
	c := d.GetOrCreateInterfaces().GetOrCreateInterface(name).GetOrCreateConfig()
	c.Name, c.Type, c.NetworkInstance = ygot.String(name), gen.IsthmusTypes_InterfaceType_POD, ygot.String(vrf)
	c.Ipv4Address = ygot.String(addr + "/32")
	if !enabled {
		c.Enabled = ygot.Bool(false)
	}
}

// routeVia adds a static route through an interface.
func routeVia(d *gen.Device, vrf, prefix, ifname string) {
	st := d.GetNetworkInstances().GetNetworkInstance(vrf).GetOrCreateStaticRoutes().GetOrCreateStatic(prefix).GetOrCreateConfig()
	st.Prefix, st.Interface = ygot.String(prefix), ygot.String(ifname)
}

// TestStaticRouteWaitsForItsInterface: a static route is exported only
// while its interface is configured, in the route's VRF and enabled.
func TestStaticRouteWaitsForItsInterface(t *testing.T) {
	static := netip.MustParsePrefix("172.20.0.0/16")
	for _, tc := range []struct {
		name   string
		attach func(d *gen.Device)
		want   bool
	}{
		{"not attached yet", func(d *gen.Device) {}, false},
		{"attached", func(d *gen.Device) { attachPod(d, "late0", "red", "10.1.0.9", true) }, true},
		{"attached to another vrf", func(d *gen.Device) { attachPod(d, "late0", "blue", "10.2.0.9", true) }, false},
		{"disabled", func(d *gen.Device) { attachPod(d, "late0", "red", "10.1.0.9", false) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &gen.Device{}
			hostConf{as: 65000, routerID: "10.0.0.1", endpoint: "192.0.2.1", vrfs: []vrfConf{
				{name: "red", rd: "10.0.0.1:1", imp: []string{"65000:1"}, exp: []string{"65000:1"}, pool: "10.1.0.0/24"},
				{name: "blue", rd: "10.0.0.1:2", imp: []string{"65000:2"}, exp: []string{"65000:2"}, pool: "10.2.0.0/24"},
			}}.build(d)
			routeVia(d, "red", static.String(), "late0")
			tc.attach(d)
			in, err := intentOf(d, local{})
			if err != nil {
				t.Fatal(err)
			}
			if got := slices.Contains(in.vrfs["red"].routes, static); got != tc.want {
				t.Errorf("static route exported %t, want %t (routes %v)", got, tc.want, in.vrfs["red"].routes)
			}
		})
	}
}
