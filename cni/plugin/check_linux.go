package plugin

import (
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/isthmus-net/isthmus/cni/api"
)

// Check verifies that the attachment isthmusd recorded matches the previous
// result and what is in the kernel: both veth ends, the pod's address, its
// routes and its neighbor entry for the gateway.
func (p *Plugin) Check(args *skel.CmdArgs) error {
	req, err := parseRequest(cmdCheck, args)
	if err != nil {
		return err
	}
	conf, id := req.conf, req.id
	prev, err := current.NewResultFromResult(conf.PrevResult)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, "convert prevResult", err.Error())
	}
	ctx, done, client, err := dial(conf)
	if err != nil {
		return err
	}
	defer done()
	resp, err := client.Get(ctx, &api.GetRequest{AttachmentID: id, Network: conf.Name})
	if err != nil {
		return cniError("get attachment", err)
	}
	att := resp.Attachment
	if err := checkPrevResult(prev, att, id.IfName); err != nil {
		return types.NewError(types.ErrInternal, "check prevResult", err.Error())
	}
	podNS, err := ns.GetNS(req.netns)
	if err != nil {
		return types.NewError(types.ErrInvalidNetNS, "open pod netns", err.Error())
	}
	defer podNS.Close()
	mtu := att.MTU
	if conf.MTU > 0 {
		mtu = conf.MTU
	}
	if err := checkKernel(att, id.IfName, mtu, podNS); err != nil {
		return types.NewError(types.ErrInternal, "check pod interface", err.Error())
	}
	return nil
}

func checkPrevResult(prev *current.Result, att api.Attachment, ifname string) error {
	idx := slices.IndexFunc(prev.Interfaces, func(i *current.Interface) bool { return i.Name == ifname && i.Sandbox != "" })
	if idx < 0 {
		return fmt.Errorf("prevResult has no interface %q in a sandbox", ifname)
	}
	for _, ipc := range prev.IPs {
		pfx, ok := netipPrefix(ipc.Address)
		if ok && pfx == att.Address {
			return nil
		}
	}
	return fmt.Errorf("prevResult does not hold %s", att.Address)
}

func checkKernel(att api.Attachment, ifname string, mtu int, podNS ns.NetNS) error {
	host, err := netlink.LinkByName(att.HostIfName)
	if err != nil {
		return fmt.Errorf("host end %s: %w", att.HostIfName, err)
	}
	if host.Type() != "veth" || host.Attrs().HardwareAddr.String() != att.HostMAC {
		return fmt.Errorf("host end %s is a %s with mac %s, want a veth with %s", att.HostIfName, host.Type(), host.Attrs().HardwareAddr, att.HostMAC)
	}
	if host.Attrs().Flags&net.FlagUp == 0 || host.Attrs().MTU != mtu {
		return fmt.Errorf("host end %s: up %v, mtu %d, want up with mtu %d", att.HostIfName, host.Attrs().Flags&net.FlagUp != 0, host.Attrs().MTU, mtu)
	}
	h, err := netlink.NewHandleAt(netns.NsHandle(podNS.Fd()))
	if err != nil {
		return fmt.Errorf("netlink in pod netns: %w", err)
	}
	defer h.Close()
	link, err := h.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("pod interface %s: %w", ifname, err)
	}
	if link.Type() != "veth" || link.Attrs().HardwareAddr.String() != att.PodMAC {
		return fmt.Errorf("pod interface %s is a %s with mac %s, want a veth with %s", ifname, link.Type(), link.Attrs().HardwareAddr, att.PodMAC)
	}
	if link.Attrs().Flags&net.FlagUp == 0 || link.Attrs().MTU != mtu {
		return fmt.Errorf("pod interface %s: up %v, mtu %d, want up with mtu %d", ifname, link.Attrs().Flags&net.FlagUp != 0, link.Attrs().MTU, mtu)
	}
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return h.AddrList(link, netlink.FAMILY_V4) })
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", ifname, err)
	}
	if !slices.ContainsFunc(addrs, func(a netlink.Addr) bool { p, ok := netipPrefix(*a.IPNet); return ok && p == att.Address }) {
		return fmt.Errorf("pod interface %s lacks %s", ifname, att.Address)
	}
	routes, err := retryDump(func() ([]netlink.Route, error) { return h.RouteList(link, netlink.FAMILY_V4) })
	if err != nil {
		return fmt.Errorf("list routes of %s: %w", ifname, err)
	}
	gwRoute := netip.PrefixFrom(att.Gateway, 32)
	var toGateway, viaGateway bool
	for _, r := range routes {
		dst := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if r.Dst != nil {
			dst, _ = netipPrefix(*r.Dst)
		}
		gw, _ := netip.AddrFromSlice(r.Gw)
		toGateway = toGateway || (dst == gwRoute && r.Scope == netlink.SCOPE_LINK)
		viaGateway = viaGateway || (dst.Bits() == 0 && gw.Unmap() == att.Gateway)
	}
	if !toGateway || !viaGateway {
		return fmt.Errorf("pod interface %s: route to gateway %v, default via gateway %v", ifname, toGateway, viaGateway)
	}
	neighs, err := retryDump(func() ([]netlink.Neigh, error) { return h.NeighList(link.Attrs().Index, netlink.FAMILY_V4) })
	if err != nil {
		return fmt.Errorf("list neighbors of %s: %w", ifname, err)
	}
	if !slices.ContainsFunc(neighs, func(n netlink.Neigh) bool {
		ip, _ := netip.AddrFromSlice(n.IP)
		return ip.Unmap() == att.Gateway && n.State&netlink.NUD_PERMANENT != 0 && n.HardwareAddr.String() == att.HostMAC
	}) {
		return fmt.Errorf("pod interface %s has no permanent neighbor %s at %s", ifname, att.Gateway, att.HostMAC)
	}
	return nil
}

func netipPrefix(n net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}
