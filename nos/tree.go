package nos

import "github.com/isthmus-net/isthmus/gen"

// Nil-safe accessors for the lists of the generated tree, which the
// generated getters do not offer for whole maps.

// NetworkInstances returns the network instances of d by name.
func NetworkInstances(d *gen.Device) map[string]*gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance {
	if d == nil || d.NetworkInstances == nil {
		return nil
	}
	return d.NetworkInstances.NetworkInstance
}

// Interfaces returns the interfaces of d by name.
func Interfaces(d *gen.Device) map[string]*gen.IsthmusInterfaces_Interfaces_Interface {
	if d == nil || d.Interfaces == nil {
		return nil
	}
	return d.Interfaces.Interface
}

func addressPools(ni *gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance) map[string]*gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_AddressPools_AddressPool {
	if ni == nil || ni.AddressPools == nil {
		return nil
	}
	return ni.AddressPools.AddressPool
}

func staticRoutes(ni *gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance) map[string]*gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_StaticRoutes_Static {
	if ni == nil || ni.StaticRoutes == nil {
		return nil
	}
	return ni.StaticRoutes.Static
}

func protocols(ni *gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance) map[gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Protocols_Protocol_Key]*gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Protocols_Protocol {
	if ni == nil || ni.Protocols == nil {
		return nil
	}
	return ni.Protocols.Protocol
}

func bgpNeighbors(p *gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Protocols_Protocol) map[string]*gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Protocols_Protocol_Bgp_Neighbors_Neighbor {
	if p.GetBgp().GetNeighbors() == nil {
		return nil
	}
	return p.GetBgp().GetNeighbors().Neighbor
}
