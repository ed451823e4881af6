package daemon

import (
	"fmt"
	"net/netip"
	"sort"

	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/cni/api"
	"github.com/isthmus-net/isthmus/gen"
)

// vrfPools returns the address pools of vrf in the running configuration,
// or api.ErrUnknownNetwork when there is no such VRF.
func vrfPools(d *gen.Device, vrf string) ([]netip.Prefix, error) {
	ni := d.GetNetworkInstances().GetNetworkInstance(vrf)
	if ni == nil {
		return nil, fmt.Errorf("%w: vrf %q does not exist", api.ErrUnknownNetwork, vrf)
	}
	var pools []netip.Prefix
	var entries map[string]*gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_AddressPools_AddressPool
	if ni.AddressPools != nil {
		entries = ni.AddressPools.AddressPool
	}
	for key, p := range entries {
		s := key
		if c := p.GetConfig(); c != nil && c.Prefix != nil {
			s = *c.Prefix
		}
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("vrf %q pool %q: %w", vrf, s, err)
		}
		pools = append(pools, pfx)
	}
	sort.Slice(pools, func(i, j int) bool { return pools[i].Addr().Less(pools[j].Addr()) })
	if len(pools) == 0 {
		return nil, fmt.Errorf("%w: vrf %q has no address pool", api.ErrPoolExhausted, vrf)
	}
	return pools, nil
}

// chooseVRF returns the VRF a pod joins: the one the running configuration
// maps the pod's Kubernetes namespace to (/cni/namespaces/namespace), else
// the one the static configuration c chooses.
func chooseVRF(c Config, d *gen.Device, network string, pod api.Pod) (string, error) {
	if pod.Namespace != "" {
		if vrf := d.GetCni().GetNamespaces().GetNamespace(pod.Namespace).GetConfig().GetNetworkInstance(); vrf != "" {
			return vrf, nil
		}
	}
	return ChooseVRF(c, network, pod)
}

// podMTU returns the MTU pods get: the configured one, else the tunnel's
// MTU less the encapsulation overhead. The tunnel's MTU is /tunnel/config/mtu,
// else the MTU of its underlay interface, else of the first UNDERLAY
// interface (by name), else 1500.
func podMTU(c Config, d *gen.Device) int {
	if c.MTU > 0 {
		return c.MTU
	}
	return underlayMTU(d) - c.EncapOverhead
}

// underlayName is the interface the tunnel leaves through: the tunnel's
// underlay-interface, else the first UNDERLAY interface by name ("" when
// there is none).
func underlayName(d *gen.Device) string {
	if name := d.GetTunnel().GetConfig().GetUnderlayInterface(); name != "" {
		return name
	}
	var ifs map[string]*gen.IsthmusInterfaces_Interfaces_Interface
	if d.Interfaces != nil {
		ifs = d.Interfaces.Interface
	}
	names := make([]string, 0, len(ifs))
	for n := range ifs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if ifs[n].GetConfig().GetType() == gen.IsthmusTypes_InterfaceType_UNDERLAY {
			return n
		}
	}
	return ""
}

func underlayMTU(d *gen.Device) int {
	// Read the leaves, not the getters: they return YANG defaults.
	tun := d.GetTunnel().GetConfig()
	if tun != nil && tun.Mtu != nil {
		return int(*tun.Mtu)
	}
	var ifs map[string]*gen.IsthmusInterfaces_Interfaces_Interface
	if d.Interfaces != nil {
		ifs = d.Interfaces.Interface
	}
	if cfg := ifs[tun.GetUnderlayInterface()].GetConfig(); cfg != nil && cfg.Mtu != nil {
		return int(*cfg.Mtu)
	}
	names := make([]string, 0, len(ifs))
	for n := range ifs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		cfg := ifs[n].GetConfig()
		if cfg.GetType() == gen.IsthmusTypes_InterfaceType_UNDERLAY && cfg.Mtu != nil {
			return int(*cfg.Mtu)
		}
	}
	return DefaultUnderlayMTU
}

// ownedBy reports whether a configured interface is the pod attachment id.
func ownedBy(intf *gen.IsthmusInterfaces_Interfaces_Interface, id api.AttachmentID) bool {
	cfg := intf.GetConfig()
	return cfg.GetType() == gen.IsthmusTypes_InterfaceType_POD &&
		cfg.GetPod().GetContainerId() == id.ContainerID && cfg.GetPod().GetIfname() == id.IfName
}

// checkHostIfName fails when the host veth name is already configured for
// something other than this attachment.
func checkHostIfName(d *gen.Device, a api.AddRequest) error {
	intf := d.GetInterfaces().GetInterface(a.HostIfName)
	if intf != nil && !ownedBy(intf, a.AttachmentID) {
		return fmt.Errorf("%w: interface %q is already configured for something else", api.ErrInvalid, a.HostIfName)
	}
	return nil
}

// putAttachment writes a pod attachment into a candidate configuration.
func putAttachment(d *gen.Device, a api.Attachment) error {
	intf := d.GetOrCreateInterfaces().GetOrCreateInterface(a.HostIfName)
	if intf.Config != nil && !ownedBy(intf, a.AttachmentID) {
		return fmt.Errorf("%w: interface %q is already configured for something else", api.ErrInvalid, a.HostIfName)
	}
	cfg := &gen.IsthmusInterfaces_Interfaces_Interface_Config{
		Name:            ygot.String(a.HostIfName),
		Type:            gen.IsthmusTypes_InterfaceType_POD,
		Description:     ygot.String(describe(a)),
		Enabled:         ygot.Bool(true),
		NetworkInstance: ygot.String(a.VRF),
		Ipv4Address:     ygot.String(a.Address.String()),
		MacAddress:      ygot.String(a.HostMAC),
		Pod: &gen.IsthmusInterfaces_Interfaces_Interface_Config_Pod{
			ContainerId:    ygot.String(a.ContainerID),
			Ifname:         ygot.String(a.IfName),
			Netns:          ygot.String(a.Netns),
			PeerMacAddress: ygot.String(a.PodMAC),
		},
	}
	if a.MTU > 0 {
		cfg.Mtu = ygot.Uint16(uint16(a.MTU))
	}
	if a.Pod.Namespace != "" {
		cfg.Pod.Namespace = ygot.String(a.Pod.Namespace)
	}
	if a.Pod.Name != "" {
		cfg.Pod.Name = ygot.String(a.Pod.Name)
	}
	intf.Config = cfg
	return nil
}

// removeAttachment deletes a pod attachment from a candidate configuration
// if it is still there and still belongs to the same container.
func removeAttachment(d *gen.Device, a api.Attachment) {
	ifs := d.GetInterfaces()
	if intf := ifs.GetInterface(a.HostIfName); intf != nil && ownedBy(intf, a.AttachmentID) {
		ifs.DeleteInterface(a.HostIfName)
	}
}

func describe(a api.Attachment) string {
	if a.Pod.Name != "" {
		return fmt.Sprintf("pod %s/%s %s", a.Pod.Namespace, a.Pod.Name, a.IfName)
	}
	return fmt.Sprintf("container %.12s %s", a.ContainerID, a.IfName)
}
