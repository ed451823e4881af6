package nos

import (
	"fmt"
	"net/netip"
	"sort"

	"github.com/isthmus-net/isthmus/gen"
)

// Services returns the services of a network instance by name.
func Services(ni *gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance) map[string]*gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service {
	if ni == nil || ni.Services == nil {
		return nil
	}
	return ni.Services.Service
}

// Backends returns the backends of a service by key.
func Backends(svc *gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service) map[gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_Backends_Backend_Key]*gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_Backends_Backend {
	if svc == nil || svc.Backends == nil {
		return nil
	}
	return svc.Backends.Backend
}

// serviceKey is what must be unique among a VRF's services.
type serviceKey struct {
	addr  netip.Addr
	proto gen.E_IsthmusNetworkInstance_ServiceProtocol
	port  uint16
}

// validateServices checks the services of one network instance: a virtual
// address outside the VRF's pod pools, a protocol, a port in 1..65535, no
// two services on one address, protocol and port, and backends with a port
// in 1..65535 whose address is in the VRF: inside one of its pools here, or
// else (a pod of the VRF on another host, whose pool this host does not
// hold) inside no pool of another VRF of this host. pools are the VRF's
// address pools; old is the running configuration, so that of two
// conflicting services the one the change touched is named.
func validateServices(old, d *gen.Device, base, vrf string, ni *gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance, pools []netip.Prefix) error {
	svcs := Services(ni)
	if len(svcs) == 0 {
		return nil
	}
	if ni.GetConfig().GetType() != gen.IsthmusTypes_NetworkInstanceType_L3VRF {
		return invalidf(base+"/services", "only an L3VRF has services")
	}
	oldSvcs := Services(NetworkInstances(old)[vrf])
	seen := map[serviceKey]string{}
	for _, name := range sortedKeys(svcs) {
		path := fmt.Sprintf("%s/services/service[name=%s]", base, name)
		cfg := svcs[name].GetConfig()
		if cfg == nil {
			return invalidf(path+"/config", "a service needs its config (address, protocol, port)")
		}
		if cfg.Name != nil && cfg.GetName() != name {
			return invalidf(path+"/config/name", "%q does not match the key %q", cfg.GetName(), name)
		}
		if cfg.Address == nil {
			return invalidf(path+"/config/address", "a service needs a virtual address")
		}
		vip, err := netip.ParseAddr(cfg.GetAddress())
		if err != nil || !vip.Is4() || vip.IsUnspecified() || vip.IsMulticast() || vip.IsLoopback() || vip == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
			return invalidf(path+"/config/address", "%q is not a unicast IPv4 address", cfg.GetAddress())
		}
		for _, p := range pools {
			if p.Contains(vip) {
				return invalidf(path+"/config/address", "%s is inside pod address pool %s of network instance %q", vip, p, vrf)
			}
		}
		if cfg.GetProtocol() == gen.IsthmusNetworkInstance_ServiceProtocol_UNSET {
			return invalidf(path+"/config/protocol", "a service needs a protocol (TCP or UDP)")
		}
		if cfg.GetPort() == 0 {
			return invalidf(path+"/config/port", "a service needs a port in 1..65535")
		}
		key := serviceKey{vip, cfg.GetProtocol(), cfg.GetPort()}
		if other, dup := seen[key]; dup {
			// Name the service that is new on this key, not the one that had it.
			if oc := oldSvcs[name].GetConfig(); oc != nil && oc.GetAddress() == cfg.GetAddress() && oc.GetProtocol() == cfg.GetProtocol() && oc.GetPort() == cfg.GetPort() {
				name, other = other, name
			}
			return invalidf(fmt.Sprintf("%s/services/service[name=%s]/config", base, name), "%s %s:%d is already the service %q", protocolName(key.proto), vip, key.port, other)
		}
		seen[key] = name
		if err := validateBackends(path, vrf, svcs[name], pools, otherPools(d, vrf)); err != nil {
			return err
		}
	}
	return nil
}

func validateBackends(path, vrf string, svc *gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service, pools []netip.Prefix, others map[string][]netip.Prefix) error {
	bes := Backends(svc)
	keys := make([]gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_Backends_Backend_Key, 0, len(bes))
	for k := range bes {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].Address != keys[j].Address {
			return keys[i].Address < keys[j].Address
		}
		return keys[i].Port < keys[j].Port
	})
	for _, k := range keys {
		bpath := fmt.Sprintf("%s/backends/backend[address=%s][port=%d]", path, k.Address, k.Port)
		a, err := netip.ParseAddr(k.Address)
		if err != nil || !a.Is4() {
			return invalidf(bpath+"/config/address", "%q is not an IPv4 address", k.Address)
		}
		inPool := false
		for _, p := range pools {
			inPool = inPool || p.Contains(a)
		}
		if !inPool {
			for _, other := range sortedKeys(others) {
				for _, p := range others[other] {
					if p.Contains(a) {
						return invalidf(bpath+"/config/address", "%s is outside network instance %q: it is in pool %s of network instance %q", a, vrf, p, other)
					}
				}
			}
		}
		if k.Port == 0 {
			return invalidf(bpath+"/config/port", "a backend port must be in 1..65535")
		}
		cfg := bes[k].GetConfig()
		if cfg.GetReady() && cfg.GetTerminating() {
			return invalidf(bpath+"/config/ready", "a terminating backend cannot be ready")
		}
	}
	return nil
}

// otherPools returns the address pools of every network instance of d
// other than vrf (unchecked: the caller validates each instance's own).
func otherPools(d *gen.Device, vrf string) map[string][]netip.Prefix {
	out := map[string][]netip.Prefix{}
	for name, ni := range NetworkInstances(d) {
		if name == vrf {
			continue
		}
		for key := range addressPools(ni) {
			if p, err := netip.ParsePrefix(key); err == nil {
				out[name] = append(out[name], p.Masked())
			}
		}
	}
	return out
}

func protocolName(p gen.E_IsthmusNetworkInstance_ServiceProtocol) string {
	if p == gen.IsthmusNetworkInstance_ServiceProtocol_UDP {
		return "UDP"
	}
	return "TCP"
}
