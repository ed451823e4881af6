package nos

import (
	"fmt"

	"github.com/isthmus-net/isthmus/gen"
)

// FloatingVPN returns the external network instance a VRF's floating IPs
// are advertised in as VPNv4 routes (floating-advertise VPNV4), or "" when
// they are IPv4 unicast routes.
func FloatingVPN(ni *gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance) string {
	c := ni.GetExternal().GetConfig()
	if c.GetFloatingAdvertise() != gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_External_Config_FloatingAdvertise_VPNV4 {
		return ""
	}
	return c.GetFloatingNetworkInstance()
}

// validateFloatingAdvertise checks how each VRF's floating IPs are
// advertised: floating-network-instance is set exactly for VPNV4 and
// names another L3VRF with a route distinguisher and export route
// targets whose encapsulation is MPLS over UDP (the forwarder translates
// a floating IP arriving with that VRF's label only on that path).
func validateFloatingAdvertise(d *gen.Device) error {
	// Entries are checked in map order and the error of the first by name
	// is returned, as a walk in sorted order would: sorting every name
	// cost more than the check, which skips at once an entry without
	// these leaves.
	nis := NetworkInstances(d)
	first, err := "", error(nil)
	for name, ni := range nis {
		c := ni.GetExternal().GetConfig()
		if c == nil || (c.FloatingAdvertise == 0 && c.FloatingNetworkInstance == nil) {
			continue
		}
		if e := floatingAdvertiseOf(nis, name, c); e != nil && (err == nil || name < first) {
			first, err = name, e
		}
	}
	return err
}

// floatingAdvertiseOf checks the floating advertisement of network
// instance name, whose external config is c.
func floatingAdvertiseOf(nis map[string]*gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance, name string, c *gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_External_Config) error {
	base := fmt.Sprintf("/network-instances/network-instance[name=%s]/external/config", name)
	if nis[name].GetConfig().GetType() != gen.IsthmusTypes_NetworkInstanceType_L3VRF {
		return invalidf(base+"/floating-advertise", "only an L3VRF has floating IPs")
	}
	ext := c.GetFloatingNetworkInstance()
	vpn := c.GetFloatingAdvertise() == gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_External_Config_FloatingAdvertise_VPNV4
	switch {
	case vpn && ext == "":
		return invalidf(base+"/floating-network-instance", "VPNV4 advertisement needs the external network instance")
	case !vpn && c.FloatingNetworkInstance != nil:
		return invalidf(base+"/floating-network-instance", "set only with floating-advertise VPNV4")
	case !vpn:
		return nil
	case ext == name:
		return invalidf(base+"/floating-network-instance", "%q is this network instance; the external VRF must be another", ext)
	}
	e, ok := nis[ext]
	if !ok {
		return invalidf(base+"/floating-network-instance", "network instance %q does not exist", ext)
	}
	ec := e.GetConfig()
	switch {
	case ec.GetType() != gen.IsthmusTypes_NetworkInstanceType_L3VRF:
		return invalidf(base+"/floating-network-instance", "network instance %q is not an L3VRF", ext)
	case ec.GetRouteDistinguisher() == "" || len(ec.GetExportRouteTarget()) == 0:
		return invalidf(base+"/floating-network-instance", "network instance %q needs a route distinguisher and export route targets", ext)
	case ec.GetEncapsulation() == gen.IsthmusTypes_Encapsulation_MPLS_OVER_MPLS:
		return invalidf(base+"/floating-network-instance", "network instance %q uses MPLS over MPLS; floating IPs are translated on MPLS over UDP only", ext)
	}
	return nil
}
