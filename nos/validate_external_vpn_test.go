package nos

import (
	"errors"
	"strings"
	"testing"

	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
)

// TestValidateFloatingAdvertise: VPNV4 advertisement of red's floating IPs
// names an external L3VRF with an RD, export route targets and MPLS over
// UDP; anything else is refused at floating-network-instance.
func TestValidateFloatingAdvertise(t *testing.T) {
	const path = "/network-instances/network-instance[name=red]/external/config/floating-network-instance"
	vpn := func(d *gen.Device, ext string) {
		c := extConfig(d, "red")
		c.FloatingPool = []string{"198.51.100.0/28"}
		c.FloatingAdvertise = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_External_Config_FloatingAdvertise_VPNV4
		if ext != "" {
			c.FloatingNetworkInstance = ygot.String(ext)
		}
		bindFloating(d, "red", "198.51.100.5", "10.1.0.2")
	}
	public := func(d *gen.Device) *gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Config {
		c := d.NetworkInstances.GetOrCreateNetworkInstance("public").GetOrCreateConfig()
		c.Name, c.Type = ygot.String("public"), gen.IsthmusTypes_NetworkInstanceType_L3VRF
		c.RouteDistinguisher, c.ExportRouteTarget = ygot.String("65000:100"), []string{"65000:100"}
		return c
	}
	for _, tc := range []struct {
		name     string
		edit     func(d *gen.Device)
		wantText string // "" means valid
	}{
		{"vpnv4 in public", func(d *gen.Device) { public(d); vpn(d, "public") }, ""},
		{"ipv4 unicast", func(d *gen.Device) {
			extConfig(d, "red").FloatingAdvertise = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_External_Config_FloatingAdvertise_IPV4_UNICAST
		}, ""},
		{"vpnv4 without an instance", func(d *gen.Device) { public(d); vpn(d, "") }, "needs the external network instance"},
		{"an instance without vpnv4", func(d *gen.Device) {
			public(d)
			extConfig(d, "red").FloatingNetworkInstance = ygot.String("public")
		}, "only with floating-advertise VPNV4"},
		{"itself", func(d *gen.Device) { vpn(d, "red") }, "must be another"},
		{"a missing instance", func(d *gen.Device) { vpn(d, "nowhere") }, `"nowhere" does not exist`},
		{"no export route targets", func(d *gen.Device) { public(d).ExportRouteTarget = nil; vpn(d, "public") }, "needs a route distinguisher and export route targets"},
		{"mpls over mpls", func(d *gen.Device) {
			public(d).Encapsulation = gen.IsthmusTypes_Encapsulation_MPLS_OVER_MPLS
			vpn(d, "public")
		}, "MPLS over UDP only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := externalDevice()
			tc.edit(d)
			err := validateSemantics(nil, d)
			if tc.wantText == "" {
				if err != nil {
					t.Fatalf("rejected a valid configuration: %v", err)
				}
				return
			}
			var pe *PathError
			if !errors.As(err, &pe) || !errors.Is(err, ErrInvalid) || pe.Path != path || !strings.Contains(err.Error(), tc.wantText) {
				t.Fatalf("got %v, want an invalid-argument error at %s saying %q", err, path, tc.wantText)
			}
		})
	}
}
