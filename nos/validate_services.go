package nos

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

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

// ServicePort is one port of a service: its unnamed port (Name "", from
// config/protocol and config/port) or one of ports/port.
type ServicePort struct {
	// Name is the port's key under ports/port, "" for the unnamed port.
	Name     string
	Protocol gen.E_IsthmusNetworkInstance_ServiceProtocol
	Port     uint16
	// TargetPort is the port on every backend address; 0 means each
	// backend's own port.
	TargetPort uint16
}

// ServicePorts returns the ports of a service: the unnamed one first when
// it is configured (a port or a protocol is set), then the named ones by
// name.
func ServicePorts(svc *gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service) []ServicePort {
	var out []ServicePort
	if c := svc.GetConfig(); c != nil && (c.Port != nil || c.Protocol != gen.IsthmusNetworkInstance_ServiceProtocol_UNSET) {
		out = append(out, ServicePort{Protocol: c.GetProtocol(), Port: c.GetPort()})
	}
	if svc.GetPorts() != nil {
		for _, name := range sortedKeys(svc.GetPorts().Port) {
			c := svc.GetPorts().Port[name].GetConfig()
			out = append(out, ServicePort{Name: name, Protocol: c.GetProtocol(), Port: c.GetPort(), TargetPort: c.GetTargetPort()})
		}
	}
	return out
}

// serviceKey is what must be unique among a VRF's service ports.
type serviceKey struct {
	addr  netip.Addr
	proto gen.E_IsthmusNetworkInstance_ServiceProtocol
	port  uint16
}

// portPath is the config path of a port of the service at path.
func portPath(path, name string) string {
	if name == "" {
		return path + "/config"
	}
	return fmt.Sprintf("%s/ports/port[name=%s]/config", path, name)
}

// validateServices checks the services of one network instance: a virtual
// address outside the VRF's pod pools, at least one port, each with a
// protocol and a port in 1..65535 (and a target port in 1..65535 when
// set), no two ports of the VRF's services on one address, protocol and
// port, and backends with a port in 1..65535 whose address is in the VRF:
// inside one of its pools here, or else (a pod of the VRF on another host,
// whose pool this host does not hold) inside no pool of another VRF of
// this host. pools are the VRF's address pools; old is the running
// configuration, so that of two conflicting services the one the change
// touched is named.
func validateServices(old, d *gen.Device, sc *scope, base, vrf string, ni *gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance, pools []netip.Prefix) error {
	svcs := Services(ni)
	if len(svcs) == 0 {
		return nil
	}
	if ni.GetConfig().GetType() != gen.IsthmusTypes_NetworkInstanceType_L3VRF {
		return invalidf(base+"/services", "only an L3VRF has services")
	}
	oldSvcs := Services(NetworkInstances(old)[vrf])
	seen := map[serviceKey]string{}
	var others map[string][]netip.Prefix // pools of the other VRFs, read once
	for _, name := range sortedKeys(svcs) {
		path := fmt.Sprintf("%s/services/service[name=%s]", base, name)
		cfg := svcs[name].GetConfig()
		if cfg == nil {
			return invalidf(path+"/config", "a service needs its config (address and a port)")
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
		if err := validateServicePorts(path, svcs[name]); err != nil {
			return err
		}
		for _, sp := range ServicePorts(svcs[name]) {
			key := serviceKey{vip, sp.Protocol, sp.Port}
			other, dup := seen[key]
			if !dup {
				seen[key] = portRef(name, sp.Name)
				continue
			}
			at := portPath(path, sp.Name)
			// Name the port that is new on this key, not the one that had it.
			if otherName, otherPort, ok := strings.Cut(other, "\x00"); ok && otherName != name && hadKey(oldSvcs[name], sp, cfg.GetAddress()) {
				at, other = portPath(fmt.Sprintf("%s/services/service[name=%s]", base, otherName), otherPort), portRef(name, sp.Name)
			}
			return invalidf(at, "%s %s:%d is already %s", protocolName(key.proto), vip, key.port, describePort(other))
		}
		if others == nil {
			others = sc.otherPools(d, vrf, ni)
		}
		if err := validateBackends(path, vrf, svcs[name], pools, others); err != nil {
			return err
		}
	}
	return nil
}

// portRef names a port of a service for seen; describePort renders it.
func portRef(svc, port string) string { return svc + "\x00" + port }

func describePort(ref string) string {
	svc, port, _ := strings.Cut(ref, "\x00")
	if port == "" {
		return fmt.Sprintf("the service %q", svc)
	}
	return fmt.Sprintf("port %q of the service %q", port, svc)
}

// hadKey reports whether the running service old had the port sp (by
// name, protocol and port) on address vip.
func hadKey(old *gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service, sp ServicePort, vip string) bool {
	if old == nil || old.GetConfig().GetAddress() != vip {
		return false
	}
	for _, o := range ServicePorts(old) {
		if o.Name == sp.Name && o.Protocol == sp.Protocol && o.Port == sp.Port {
			return true
		}
	}
	return false
}

// validateServicePorts checks that a service has a port and that each of
// its ports has a protocol, a port and, when set, a target port, all in
// range.
func validateServicePorts(path string, svc *gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service) error {
	cfg := svc.GetConfig()
	named := 0
	if svc.GetPorts() != nil {
		named = len(svc.GetPorts().Port)
	}
	unnamed := cfg.Port != nil || cfg.Protocol != gen.IsthmusNetworkInstance_ServiceProtocol_UNSET
	if !unnamed && named == 0 {
		return invalidf(path+"/config/port", "a service needs a port in 1..65535 (config/port or ports/port)")
	}
	if unnamed {
		if cfg.GetProtocol() == gen.IsthmusNetworkInstance_ServiceProtocol_UNSET {
			return invalidf(path+"/config/protocol", "a service needs a protocol (TCP or UDP)")
		}
		if cfg.GetPort() == 0 {
			return invalidf(path+"/config/port", "a service needs a port in 1..65535")
		}
	}
	if named == 0 {
		return nil
	}
	for _, name := range sortedKeys(svc.GetPorts().Port) {
		pp := fmt.Sprintf("%s/ports/port[name=%s]/config", path, name)
		c := svc.GetPorts().Port[name].GetConfig()
		switch {
		case c == nil:
			return invalidf(pp, "a port needs its config (protocol and port)")
		case c.Name != nil && c.GetName() != name:
			return invalidf(pp+"/name", "%q does not match the key %q", c.GetName(), name)
		case c.GetProtocol() == gen.IsthmusNetworkInstance_ServiceProtocol_UNSET:
			return invalidf(pp+"/protocol", "a port needs a protocol (TCP or UDP)")
		case c.GetPort() == 0:
			return invalidf(pp+"/port", "a port needs a port in 1..65535")
		case c.TargetPort != nil && c.GetTargetPort() == 0:
			return invalidf(pp+"/target-port", "a target port must be in 1..65535")
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
	// A port with a target port maps every backend address to one
	// address:port, so two backends on one address would be one.
	for _, sp := range ServicePorts(svc) {
		if sp.TargetPort == 0 {
			continue
		}
		for i := 1; i < len(keys); i++ {
			if keys[i].Address == keys[i-1].Address {
				return invalidf(fmt.Sprintf("%s/backends/backend[address=%s][port=%d]", path, keys[i].Address, keys[i].Port),
					"port %q sends every backend to target port %d, so this backend and the one on port %d would be the same %s:%d", sp.Name, sp.TargetPort, keys[i-1].Port, keys[i].Address, sp.TargetPort)
			}
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
