package nos

import (
	"fmt"
	"net/netip"

	"github.com/isthmus-net/isthmus/gen"
)

// ExternalSettings is a VRF's external connectivity with the defaults
// resolved (isthmus-external.yang): what the dataplane applies.
type ExternalSettings struct {
	// SNAT: packets to destinations without a VRF route are translated and
	// sent out through the host's underlay; else they are dropped.
	SNAT bool
	// HostAccess: the node's stack and the VRF's pods reach each other.
	HostAccess bool
	// Address is the source of translated packets (the tunnel source when
	// not configured); invalid when neither is set.
	Address netip.Addr
	// PortMin and PortMax bound the VRF's SNAT ports (0 when unset).
	PortMin, PortMax uint16
}

// External returns the external connectivity of a network instance of d
// with its defaults resolved: the default pod network has SNAT and host
// access unless configured otherwise, every other VRF neither.
func External(d *gen.Device, ni *gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance) ExternalSettings {
	cfg := ni.GetExternal().GetConfig()
	def := cfg.GetDefaultPodNetwork()
	s := ExternalSettings{SNAT: def, HostAccess: def, PortMin: cfg.GetPortMin(), PortMax: cfg.GetPortMax()}
	switch cfg.GetMode() {
	case gen.IsthmusExternal_ExternalMode_SNAT:
		s.SNAT = true
	case gen.IsthmusExternal_ExternalMode_DROP:
		s.SNAT = false
	}
	if cfg != nil && cfg.HostAccess != nil {
		s.HostAccess = cfg.GetHostAccess()
	}
	a := cfg.GetSnatAddress()
	if a == "" {
		a = d.GetTunnel().GetConfig().GetSourceAddress()
	}
	s.Address, _ = netip.ParseAddr(a)
	return s
}

// portRange is one VRF's SNAT ports, for the overlap check.
type portRange struct {
	vrf      string
	min, max uint16
}

// validateExternal checks the external connectivity of every network
// instance: only L3VRFs have it, at most one is the default pod network,
// SNAT has an address (configured or the tunnel source) and a port range
// whose ranges never overlap another VRF's, and the pod pools of two VRFs
// with host access never overlap (the host has one route per address).
// Of two conflicting VRFs, the one the change touched is named (old is the
// running configuration). pools are every VRF's pod pools.
func validateExternal(old, d *gen.Device, sc *scope, pools map[string][]netip.Prefix) error {
	if err := validateFloating(d); err != nil {
		return err
	}
	nis := NetworkInstances(d)
	var ranges []portRange
	var hostVRFs []string
	defaultNet := ""
	for _, name := range sc.keys(listNI, d) {
		ni := nis[name]
		if ni.GetExternal() == nil {
			continue
		}
		base := fmt.Sprintf("/network-instances/network-instance[name=%s]/external", name)
		if ni.GetConfig().GetType() != gen.IsthmusTypes_NetworkInstanceType_L3VRF {
			return invalidf(base, "only an L3VRF has external connectivity")
		}
		cfg := ni.GetExternal().GetConfig()
		if cfg.GetDefaultPodNetwork() {
			if defaultNet != "" {
				// Name the VRF that newly claims it.
				was := func(vrf string) bool {
					return NetworkInstances(old)[vrf].GetExternal().GetConfig().GetDefaultPodNetwork()
				}
				this, other := name, defaultNet
				if was(name) && !was(defaultNet) {
					this, other = defaultNet, name
				}
				return invalidf(fmt.Sprintf("/network-instances/network-instance[name=%s]/external/config/default-pod-network", this),
					"network instance %q is already the default pod network", other)
			}
			defaultNet = name
		}
		if a := cfg.GetSnatAddress(); a != "" {
			if ip, err := netip.ParseAddr(a); err != nil || !ip.Is4() || ip.IsUnspecified() || ip.IsMulticast() || ip.IsLoopback() {
				return invalidf(base+"/config/snat-address", "%q is not a unicast IPv4 address", a)
			}
		}
		if (cfg.PortMin == nil) != (cfg.PortMax == nil) {
			return invalidf(base+"/config/port-max", "a port range needs both port-min and port-max")
		}
		if cfg.PortMin != nil && cfg.GetPortMax() < cfg.GetPortMin() {
			return invalidf(base+"/config/port-max", "%d is below port-min %d", cfg.GetPortMax(), cfg.GetPortMin())
		}
		s := External(d, ni)
		if s.SNAT {
			if cfg.PortMin == nil {
				return invalidf(base+"/config/port-min", "source NAT needs a port range (port-min, port-max)")
			}
			if !s.Address.IsValid() {
				return invalidf(base+"/config/snat-address", "source NAT needs an address: set it or /tunnel/config/source-address")
			}
			if d.GetTunnel().GetConfig().GetUnderlayInterface() == "" {
				return invalidf(base+"/config/mode", "source NAT needs /tunnel/config/underlay-interface: replies are translated where they arrive, on the underlay")
			}
		}
		if cfg.PortMin != nil {
			r := portRange{name, cfg.GetPortMin(), cfg.GetPortMax()}
			for _, o := range ranges {
				if r.min <= o.max && o.min <= r.max {
					return rangeConflict(old, r, o)
				}
			}
			ranges = append(ranges, r)
		}
		if s.HostAccess {
			for _, other := range hostVRFs {
				for _, p := range pools[name] {
					for _, q := range pools[other] {
						if p.Overlaps(q) {
							return invalidf(base+"/config/host-access", "pool %s overlaps pool %s of network instance %q, which also has host access", p, q, other)
						}
					}
				}
			}
			hostVRFs = append(hostVRFs, name)
		}
	}
	return nil
}

// rangeConflict names the VRF of two with overlapping SNAT ranges whose
// range the change set (the other one's, when both ranges are unchanged).
func rangeConflict(old *gen.Device, a, b portRange) error {
	changed := func(r portRange) bool {
		c := NetworkInstances(old)[r.vrf].GetExternal().GetConfig()
		return c.GetPortMin() != r.min || c.GetPortMax() != r.max
	}
	if !changed(a) && changed(b) {
		a, b = b, a
	}
	return invalidf(fmt.Sprintf("/network-instances/network-instance[name=%s]/external/config/port-min", a.vrf),
		"ports %d..%d overlap the SNAT ports %d..%d of network instance %q", a.min, a.max, b.min, b.max, b.vrf)
}

// FloatingIPs returns the floating IP bindings of a network instance by
// address.
func FloatingIPs(ni *gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance) map[string]*gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_External_FloatingIps_FloatingIp {
	if f := ni.GetExternal().GetFloatingIps(); f != nil {
		return f.FloatingIp
	}
	return nil
}

// floatingPool is one VRF's floating pool, for the overlap checks.
type floatingPool struct {
	vrf    string
	prefix netip.Prefix
}

// validateFloating checks every VRF's floating pools (network prefixes
// that overlap no pod pool of any VRF and no other floating pool) and
// bindings (a floating IP inside a floating pool of its VRF, bound to an
// address inside a pod pool of the VRF, each pod address bound once).
// Pools relate every VRF to every other, so it looks at the whole tree,
// and only if some VRF has floating pools (the rest is a map walk).
func validateFloating(d *gen.Device) error {
	if err := validateFloatingAdvertise(d); err != nil {
		return err
	}
	nis := NetworkInstances(d)
	any := false
	for _, ni := range nis {
		if len(ni.GetExternal().GetConfig().GetFloatingPool()) > 0 || len(FloatingIPs(ni)) > 0 {
			any = true
			break
		}
	}
	if !any {
		return nil
	}
	pools := map[string][]netip.Prefix{}
	for name, ni := range nis {
		for key := range addressPools(ni) {
			if p, err := netip.ParsePrefix(key); err == nil {
				pools[name] = append(pools[name], p)
			}
		}
	}
	var all []floatingPool
	for _, name := range sortedKeys(nis) {
		base := fmt.Sprintf("/network-instances/network-instance[name=%s]/external", name)
		for _, s := range nis[name].GetExternal().GetConfig().GetFloatingPool() {
			p, err := netip.ParsePrefix(s)
			if err != nil || !p.Addr().Is4() || p != p.Masked() {
				return invalidf(base+"/config/floating-pool", "%q is not an IPv4 network prefix (host bits must be zero)", s)
			}
			for _, vrf := range sortedKeys(pools) {
				for _, q := range pools[vrf] {
					if p.Overlaps(q) {
						return invalidf(base+"/config/floating-pool", "%s overlaps pod pool %s of network instance %q", p, q, vrf)
					}
				}
			}
			for _, o := range all {
				if p.Overlaps(o.prefix) {
					return invalidf(base+"/config/floating-pool", "%s overlaps floating pool %s of network instance %q", p, o.prefix, o.vrf)
				}
			}
			// The host's own addresses stay the host's: traffic to them
			// must never be taken for a pod.
			if a, err := netip.ParseAddr(d.GetTunnel().GetConfig().GetSourceAddress()); err == nil && p.Contains(a) {
				return invalidf(base+"/config/floating-pool", "%s holds the tunnel source %s", p, a)
			}
			for _, other := range sortedKeys(nis) {
				if a, err := netip.ParseAddr(nis[other].GetExternal().GetConfig().GetSnatAddress()); err == nil && p.Contains(a) {
					return invalidf(base+"/config/floating-pool", "%s holds the SNAT address %s of network instance %q", p, a, other)
				}
			}
			all = append(all, floatingPool{name, p})
		}
	}
	for _, name := range sortedKeys(nis) {
		ni := nis[name]
		fips := FloatingIPs(ni)
		base := fmt.Sprintf("/network-instances/network-instance[name=%s]/external/floating-ips", name)
		bound := map[netip.Addr]string{}
		for _, key := range sortedKeys(fips) {
			path := fmt.Sprintf("%s/floating-ip[address=%s]/config", base, key)
			cfg := fips[key].GetConfig()
			if cfg.GetAddress() != key {
				return invalidf(path+"/address", "%q does not match the key %q", cfg.GetAddress(), key)
			}
			a, err := netip.ParseAddr(key)
			if err != nil || !a.Is4() {
				return invalidf(path+"/address", "%q is not an IPv4 address", key)
			}
			inPool := false
			for _, o := range all {
				inPool = inPool || (o.vrf == name && o.prefix.Contains(a))
			}
			if !inPool {
				return invalidf(path+"/address", "%s is outside the floating pools of network instance %q", a, name)
			}
			pod, err := netip.ParseAddr(cfg.GetPodAddress())
			if err != nil || !pod.Is4() {
				return invalidf(path+"/pod-address", "a floating IP needs the IPv4 address of its pod, have %q", cfg.GetPodAddress())
			}
			inPods := false
			for _, q := range pools[name] {
				inPods = inPods || q.Contains(pod)
			}
			if !inPods {
				return invalidf(path+"/pod-address", "%s is outside the pod pools of network instance %q", pod, name)
			}
			if other, dup := bound[pod]; dup {
				return invalidf(path+"/pod-address", "%s already has floating IP %s", pod, other)
			}
			bound[pod] = key
		}
	}
	return nil
}
