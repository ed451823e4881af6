package dataplane

import (
	"fmt"
	"maps"
	"net"
	"net/netip"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// intent is what the committed configuration asks of the dataplane, in the
// dataplane's own terms. intentOf computes it without side effects.
type intent struct {
	// Tunnel is nil until both a source address and an underlay interface
	// are configured.
	Tunnel *Tunnel
	// Neighbors are the transport labels to push toward MPLSoMPLS peers.
	Neighbors map[netip.Addr]uint32
	VRFs      map[string]vrfIntent
	Pods      map[string]podIntent // by interface name
	Statics   map[RouteKey]string  // → interface name
	// ServiceVRFs are the VRFs with services: the service addresses are
	// advertised with the VRF label in either label mode, so it is
	// programmed (services_intent.go).
	ServiceVRFs map[string]bool
}

type vrfIntent struct {
	PerPrefix bool
	Encap     Encap
}

type podIntent struct {
	VRF     string
	PeerMAC string // canonical form, "" when unknown
	Prefix  netip.Prefix
	MTU     int // 0: not configured
	// Down: the interface is disabled (config enabled=false). It is
	// detached like a pod not plugged yet (PeerMAC ""), so no route or
	// label leads to it, and its host link is set down (podlink_linux.go).
	Down bool
}

// intentOf translates a configuration tree. Its errors name the offending
// path.
func intentOf(d *gen.Device) (intent, error) {
	in := intent{
		Neighbors: map[netip.Addr]uint32{},
		VRFs:      map[string]vrfIntent{},
		Pods:      map[string]podIntent{},
		Statics:   map[RouteKey]string{},
	}
	mplsOverMPLS := false
	for name, ni := range nos.NetworkInstances(d) {
		if ni.GetConfig().GetType() != gen.IsthmusTypes_NetworkInstanceType_L3VRF {
			continue
		}
		v, err := vrfIntentOf(name, ni, in.Statics)
		if err != nil {
			return in, err
		}
		in.VRFs[name] = v
		mplsOverMPLS = mplsOverMPLS || v.Encap == EncapMPLSoMPLS
	}
	for name, ifc := range nos.Interfaces(d) {
		if ifc.GetConfig().GetType() != gen.IsthmusTypes_InterfaceType_POD {
			continue
		}
		p, err := podIntentOf(name, ifc, func(vrf string) bool { _, ok := in.VRFs[vrf]; return ok })
		if err != nil {
			return in, err
		}
		in.Pods[name] = p
	}
	tun := d.GetTunnel()
	if tun != nil && tun.Neighbors != nil {
		for key, n := range tun.Neighbors.Neighbor {
			a, err := netip.ParseAddr(key)
			if err != nil || !a.Is4() {
				return in, fmt.Errorf("tunnel/neighbors/neighbor[address=%s]: not an ipv4 address", key)
			}
			in.Neighbors[a] = n.GetConfig().GetTransportLabel()
			mplsOverMPLS = true
		}
	}
	in.ServiceVRFs = serviceVRFs(d, in.VRFs)
	tc := tun.GetConfig()
	if tc.GetSourceAddress() != "" && tc.GetUnderlayInterface() != "" {
		src, err := netip.ParseAddr(tc.GetSourceAddress())
		if err != nil || !src.Is4() {
			return in, fmt.Errorf("tunnel/config/source-address: %q is not an ipv4 address", tc.GetSourceAddress())
		}
		// The MTU is the configured one, else the underlay interface's
		// configured one, else (0) whatever the underlay link has.
		mtu := 0
		if tc.Mtu != nil {
			mtu = int(tc.GetMtu())
		} else if ul := nos.Interfaces(d)[tc.GetUnderlayInterface()].GetConfig(); ul != nil && ul.Mtu != nil {
			mtu = int(ul.GetMtu())
		}
		in.Tunnel = &Tunnel{
			Source:         src,
			UDPPort:        tc.GetUdpPort(),
			Underlay:       tc.GetUnderlayInterface(),
			MTU:            mtu,
			TransportLabel: tc.GetTransportLabel(),
			MPLSoMPLS:      mplsOverMPLS,
		}
	}
	return in, nil
}

// vrfIntentOf translates one L3VRF and adds its static routes to an
// interface to statics. Its errors name the offending path.
func vrfIntentOf(name string, ni *gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance, statics map[RouteKey]string) (vrfIntent, error) {
	cfg := ni.GetConfig()
	v := vrfIntent{
		PerPrefix: cfg.GetLabelAllocationMode() == gen.IsthmusTypes_LabelAllocationMode_PER_PREFIX,
		Encap:     EncapMPLSoUDP,
	}
	if cfg.GetEncapsulation() == gen.IsthmusTypes_Encapsulation_MPLS_OVER_MPLS {
		v.Encap = EncapMPLSoMPLS
	}
	if ni.StaticRoutes == nil {
		return v, nil
	}
	for key, st := range ni.StaticRoutes.Static {
		p, err := netip.ParsePrefix(key)
		if err != nil || !p.Addr().Is4() {
			return v, fmt.Errorf("network-instances/network-instance[name=%s]/static-routes/static[prefix=%s]: not an ipv4 prefix", name, key)
		}
		ifname := st.GetConfig().GetInterface()
		if ifname == "" {
			continue // routes without an interface are for the control plane
		}
		statics[RouteKey{VRF: name, Prefix: p.Masked()}] = ifname
	}
	return v, nil
}

// podIntentOf translates one pod interface; isVRF reports whether a name
// is an L3VRF. Its errors name the offending path.
func podIntentOf(name string, ifc *gen.IsthmusInterfaces_Interfaces_Interface, isVRF func(string) bool) (podIntent, error) {
	cfg := ifc.GetConfig()
	path := fmt.Sprintf("interfaces/interface[name=%s]/config", name)
	p := podIntent{VRF: cfg.GetNetworkInstance(), MTU: int(cfg.GetMtu())}
	if !isVRF(p.VRF) {
		return p, fmt.Errorf("%s/network-instance: %q is not a network instance", path, p.VRF)
	}
	if s := cfg.GetPod().GetPeerMacAddress(); s != "" {
		mac, err := net.ParseMAC(s)
		if err != nil || len(mac) != 6 {
			return p, fmt.Errorf("%s/pod/peer-mac-address: %q is not an ethernet address", path, s)
		}
		p.PeerMAC = mac.String()
	}
	if cfg.Enabled != nil && !*cfg.Enabled {
		p.Down, p.PeerMAC = true, ""
	}
	if s := cfg.GetIpv4Address(); s != "" {
		pfx, err := netip.ParsePrefix(s)
		if err != nil || !pfx.Addr().Is4() {
			return p, fmt.Errorf("%s/ipv4-address: %q is not an ipv4 prefix", path, s)
		}
		// A pod owns its address, whatever the length it was given with.
		p.Prefix = netip.PrefixFrom(pfx.Addr(), 32)
	}
	return p, nil
}

// validate checks what only the dataplane knows: every pod's MTU leaves
// room for its VRF's encapsulation under the tunnel MTU, when the
// configuration says what that MTU is.
func (in intent) validate() error {
	if in.Tunnel == nil || in.Tunnel.MTU == 0 {
		return nil
	}
	mtu := in.Tunnel.MTU
	for name, p := range in.Pods {
		over := OverheadMPLSoUDP
		if in.VRFs[p.VRF].Encap == EncapMPLSoMPLS {
			over = OverheadMPLSoMPLS
		}
		if p.MTU != 0 && p.MTU+over > mtu {
			return fmt.Errorf("interfaces/interface[name=%s]/config/mtu: %d leaves no room for %v (%d bytes) under the tunnel mtu %d",
				name, p.MTU, in.VRFs[p.VRF].Encap, over, mtu)
		}
	}
	return nil
}

// labelTarget is a label's owner in the dataplane's terms: a VRF, or a
// prefix of a VRF delivered to an interface (by name).
type labelTarget struct {
	VRF       string
	Prefix    netip.Prefix // invalid for a per-VRF label
	Interface string
}

// labelTargets lists the labels the intent needs decapsulated, by owner.
func (in intent) labelTargets() map[labelTarget]struct{} {
	out := map[labelTarget]struct{}{}
	for name, v := range in.VRFs {
		if !v.PerPrefix {
			out[labelTarget{VRF: name}] = struct{}{}
		}
	}
	for name := range in.ServiceVRFs {
		out[labelTarget{VRF: name}] = struct{}{}
	}
	for ifname, p := range in.Pods {
		if in.VRFs[p.VRF].PerPrefix && p.Prefix.IsValid() {
			out[labelTarget{VRF: p.VRF, Prefix: p.Prefix, Interface: ifname}] = struct{}{}
		}
	}
	for k, ifname := range in.Statics {
		if in.VRFs[k.VRF].PerPrefix {
			out[labelTarget{VRF: k.VRF, Prefix: k.Prefix, Interface: ifname}] = struct{}{}
		}
	}
	return out
}

// localRoutes lists the routes to local interfaces: pod /32s and static
// routes, by key → interface name.
func (in intent) localRoutes() map[RouteKey]string {
	out := maps.Clone(in.Statics)
	for ifname, p := range in.Pods {
		if p.Prefix.IsValid() {
			out[RouteKey{VRF: p.VRF, Prefix: p.Prefix}] = ifname
		}
	}
	return out
}
