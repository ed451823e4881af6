package nos

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/isthmus-net/isthmus/gen"
)

// validateSemantics checks the rules the schema cannot express, over
// every entry of d. Errors are PathErrors naming the offending leaf; where
// two entries conflict, the one the change touched is named (old is the
// running configuration). Lists are walked in key order so the same
// candidate always yields the same error.
func validateSemantics(old, d *gen.Device) error {
	return validateScoped(old, d, nil)
}

// validateScoped is validateSemantics over the entries sc names (nil:
// all); lookups of referenced entries still see all of d
// (validate_scope.go).
func validateScoped(old, d *gen.Device, sc *scope) error {
	nis := NetworkInstances(d)
	rds := map[string]string{} // rd → VRF that has it
	pools := map[string][]netip.Prefix{}
	defaults := 0
	for _, name := range sc.keys(listNI, d) {
		ni := nis[name]
		base := fmt.Sprintf("/network-instances/network-instance[name=%s]", name)
		cfg := ni.GetConfig()
		switch cfg.GetType() {
		case gen.IsthmusTypes_NetworkInstanceType_DEFAULT:
			defaults++
			if name != "default" {
				return invalidf(base+"/config/type", "only the instance named \"default\" can be DEFAULT")
			}
			if cfg.RouteDistinguisher != nil || len(cfg.ImportRouteTarget)+len(cfg.ExportRouteTarget) > 0 {
				return invalidf(base+"/config", "the DEFAULT instance takes no route distinguisher or route targets")
			}
		case gen.IsthmusTypes_NetworkInstanceType_L3VRF:
			if name == "default" {
				return invalidf(base+"/config/type", "the instance named \"default\" must be DEFAULT")
			}
			rd := cfg.GetRouteDistinguisher()
			if rd == "" {
				return invalidf(base+"/config/route-distinguisher", "an L3VRF needs a route distinguisher")
			}
			if err := checkRDOrRT(rd); err != nil {
				return invalidf(base+"/config/route-distinguisher", "%q: %v", rd, err)
			}
			if other, dup := rds[rd]; dup {
				// Name the instance whose RD is new, not the one that had it.
				if NetworkInstances(old)[name].GetConfig().GetRouteDistinguisher() != rd {
					return invalidf(base+"/config/route-distinguisher", "%q is already used by network instance %q", rd, other)
				}
				return invalidf(fmt.Sprintf("/network-instances/network-instance[name=%s]/config/route-distinguisher", other), "%q is already used by network instance %q", rd, name)
			}
			rds[rd] = name
			for _, leaf := range []struct {
				name string
				rts  []string
			}{{"import-route-target", cfg.ImportRouteTarget}, {"export-route-target", cfg.ExportRouteTarget}} {
				for _, rt := range leaf.rts {
					if err := checkRDOrRT(rt); err != nil {
						return invalidf(base+"/config/"+leaf.name, "%q: %v", rt, err)
					}
				}
			}
		default:
			return invalidf(base+"/config/type", "type is required (DEFAULT or L3VRF)")
		}
		var ps []netip.Prefix
		for _, key := range sortedKeys(addressPools(ni)) {
			path := fmt.Sprintf("%s/address-pools/address-pool[prefix=%s]", base, key)
			if ni.GetConfig().GetType() != gen.IsthmusTypes_NetworkInstanceType_L3VRF {
				return invalidf(path, "only an L3VRF has pod address pools")
			}
			p, err := netip.ParsePrefix(key)
			if err != nil || p != p.Masked() {
				return invalidf(path, "%q is not a network prefix (host bits must be zero)", key)
			}
			if p.Bits() > 30 {
				return invalidf(path, "%q is too small for a pool (at most /30)", key)
			}
			for _, q := range ps {
				if p.Overlaps(q) {
					return invalidf(path, "overlaps pool %s", q)
				}
			}
			ps = append(ps, p)
		}
		pools[name] = ps
		if err := validateServices(old, d, sc, base, name, ni, ps); err != nil {
			return err
		}
		for _, key := range sortedKeys(staticRoutes(ni)) {
			path := fmt.Sprintf("%s/static-routes/static[prefix=%s]", base, key)
			if ni.GetConfig().GetType() != gen.IsthmusTypes_NetworkInstanceType_L3VRF {
				return invalidf(path, "static routes belong in an L3VRF")
			}
			if p, err := netip.ParsePrefix(key); err != nil || p != p.Masked() {
				return invalidf(path, "%q is not a network prefix (host bits must be zero)", key)
			}
			ifname := staticRoutes(ni)[key].GetConfig().GetInterface()
			if ifname == "" {
				return invalidf(path+"/config/interface", "a static route needs the interface that reaches it")
			}
			// A pod interface that is not attached yet is not configured
			// yet: the route waits for it and becomes active when it
			// appears. One that exists must be in this VRF.
			intf := Interfaces(d)[ifname]
			if intf != nil && intf.GetConfig().GetNetworkInstance() != name {
				return invalidf(path+"/config/interface", "interface %q is not in network instance %q", ifname, name)
			}
		}
		if err := validateProtocols(base, ni); err != nil {
			return err
		}
	}
	if defaults > 1 {
		return invalidf("/network-instances", "more than one DEFAULT instance")
	}
	if err := validateInterfaces(d, sc, pools); err != nil {
		return err
	}
	if err := validateExternal(old, d, sc, pools); err != nil {
		return err
	}
	if err := validateACLs(d, sc); err != nil {
		return err
	}
	if err := validateEnforced(d, sc); err != nil {
		return err
	}
	if err := validateCNI(d, sc); err != nil {
		return err
	}
	return validateTunnel(d)
}

func validateProtocols(base string, ni *gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance) error {
	for key, proto := range protocols(ni) {
		path := fmt.Sprintf("%s/protocols/protocol[identifier=%s][name=%s]", base, key.Identifier, key.Name)
		if key.Identifier != gen.IsthmusTypes_ProtocolType_BGP {
			return invalidf(path, "unsupported protocol")
		}
		if ni.GetConfig().GetType() != gen.IsthmusTypes_NetworkInstanceType_DEFAULT {
			return invalidf(path, "BGP runs in the DEFAULT network instance; VRF routes travel as VPNv4")
		}
		if len(protocols(ni)) > 1 {
			return invalidf(path, "only one BGP instance is supported")
		}
		g := proto.GetBgp().GetGlobal().GetConfig()
		if g.GetAs() == 0 {
			return invalidf(path+"/bgp/global/config/as", "the local AS is required")
		}
		if g.GetRouterId() == "" {
			return invalidf(path+"/bgp/global/config/router-id", "a router-id is required")
		}
		for _, addr := range sortedKeys(bgpNeighbors(proto)) {
			n := bgpNeighbors(proto)[addr]
			npath := fmt.Sprintf("%s/bgp/neighbors/neighbor[neighbor-address=%s]", path, addr)
			if n.GetConfig().GetPeerAs() == 0 {
				return invalidf(npath+"/config/peer-as", "peer-as is required")
			}
			t := n.GetTimers().GetConfig()
			if t != nil && t.HoldTime != nil && t.KeepaliveInterval != nil && t.GetHoldTime() != 0 && t.GetKeepaliveInterval() >= t.GetHoldTime() {
				return invalidf(npath+"/timers/config/keepalive-interval", "keepalive-interval %d must be less than hold-time %d", t.GetKeepaliveInterval(), t.GetHoldTime())
			}
		}
	}
	return nil
}

func validateInterfaces(d *gen.Device, sc *scope, pools map[string][]netip.Prefix) error {
	ifs := Interfaces(d)
	used := map[string]string{} // vrf|addr → interface
	for _, name := range sc.keys(listIf, d) {
		cfg := ifs[name].GetConfig()
		base := fmt.Sprintf("/interfaces/interface[name=%s]", name)
		// A disabled pod interface is taken out of forwarding (the
		// dataplane detaches it and sets its link down, BGP withdraws its
		// address); nothing would stop an underlay interface.
		if cfg != nil && cfg.Enabled != nil && !*cfg.Enabled && cfg.GetType() != gen.IsthmusTypes_InterfaceType_POD {
			return invalidf(base+"/config/enabled", "only a POD interface can be disabled (the tunnel would still use an underlay interface)")
		}
		// mac-address records the host end of a pod's veth; an underlay
		// interface forwards with its link's own address.
		if cfg != nil && cfg.MacAddress != nil && cfg.GetType() != gen.IsthmusTypes_InterfaceType_POD {
			return invalidf(base+"/config/mac-address", "only a POD interface records a MAC address (the host end of its veth)")
		}
		switch cfg.GetType() {
		case gen.IsthmusTypes_InterfaceType_POD:
			vrf := cfg.GetNetworkInstance()
			if vrf == "" {
				return invalidf(base+"/config/network-instance", "a POD interface needs a network instance")
			}
			ni := NetworkInstances(d)[vrf]
			if ni == nil {
				return invalidf(base+"/config/network-instance", "network instance %q does not exist", vrf)
			}
			if ni.GetConfig().GetType() != gen.IsthmusTypes_NetworkInstanceType_L3VRF {
				return invalidf(base+"/config/network-instance", "%q is not an L3VRF", vrf)
			}
			if cfg.Ipv4Address == nil {
				continue
			}
			p, err := netip.ParsePrefix(cfg.GetIpv4Address())
			if err != nil {
				return invalidf(base+"/config/ipv4-address", "%q: %v", cfg.GetIpv4Address(), err)
			}
			if p.Bits() != 32 {
				return invalidf(base+"/config/ipv4-address", "a pod address is a /32, not %q", cfg.GetIpv4Address())
			}
			inPool := false
			for _, pool := range pools[vrf] {
				inPool = inPool || pool.Contains(p.Addr())
			}
			if !inPool {
				return invalidf(base+"/config/ipv4-address", "%s is in no address pool of network instance %q", p.Addr(), vrf)
			}
			key := vrf + "|" + p.Addr().String()
			if other, dup := used[key]; dup {
				return invalidf(base+"/config/ipv4-address", "%s is already used by interface %q in %q", p.Addr(), other, vrf)
			}
			used[key] = name
		case gen.IsthmusTypes_InterfaceType_UNDERLAY:
			if cfg.NetworkInstance != nil {
				return invalidf(base+"/config/network-instance", "an UNDERLAY interface belongs to no VRF")
			}
		default:
			return invalidf(base+"/config/type", "type is required (POD or UNDERLAY)")
		}
	}
	return nil
}

func validateTunnel(d *gen.Device) error {
	t := d.GetTunnel().GetConfig()
	if t == nil {
		return nil
	}
	if ifname := t.GetUnderlayInterface(); ifname != "" {
		if Interfaces(d)[ifname] == nil {
			return invalidf("/tunnel/config/underlay-interface", "interface %q does not exist", ifname)
		}
		if Interfaces(d)[ifname].GetConfig().GetType() != gen.IsthmusTypes_InterfaceType_UNDERLAY {
			return invalidf("/tunnel/config/underlay-interface", "interface %q is not of type UNDERLAY", ifname)
		}
	}
	if a := t.GetSourceAddress(); a != "" {
		if ip, err := netip.ParseAddr(a); err != nil || !ip.Is4() || ip.IsUnspecified() || ip.IsMulticast() {
			return invalidf("/tunnel/config/source-address", "%q is not a unicast IPv4 address", a)
		}
	}
	return nil
}

// checkRDOrRT checks the numeric ranges of an ASN:nn or IPv4:nn value
// (the schema pattern has checked its shape): a 2-byte ASN allows a 4-byte
// number, a 4-byte ASN or an IPv4 address a 2-byte number.
func checkRDOrRT(s string) error {
	admin, num, ok := strings.Cut(s, ":")
	if !ok {
		return errors.New("want ASN:number or IPv4-address:number")
	}
	if ip, err := netip.ParseAddr(admin); err == nil {
		if !ip.Is4() {
			return errors.New("the administrator must be an IPv4 address or an AS number")
		}
		if _, err := strconv.ParseUint(num, 10, 16); err != nil {
			return fmt.Errorf("assigned number %s exceeds 65535 with an IPv4 administrator", num)
		}
		return nil
	}
	asn, err := strconv.ParseUint(admin, 10, 32)
	if err != nil {
		return fmt.Errorf("AS number %s is not a 32-bit number", admin)
	}
	bits := 32
	if asn > 65535 {
		bits = 16
	}
	if _, err := strconv.ParseUint(num, 10, bits); err != nil {
		return fmt.Errorf("assigned number %s does not fit in %d bits with AS %d", num, bits, asn)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
