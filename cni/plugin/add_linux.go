package plugin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/isthmus-net/isthmus/cni/api"
)

// veth is a freshly created pair: the host end in the plugin's namespace,
// the pod end already in the pod's.
type veth struct {
	host     netlink.Link
	hostMAC  net.HardwareAddr
	podIndex int
	podMAC   net.HardwareAddr
}

// Add attaches the pod: veth pair, address and routes from isthmusd, result.
// Any failure undoes what was done, the daemon's allocation included.
func (p *Plugin) Add(args *skel.CmdArgs) (err error) {
	req, err := parseRequest(cmdAdd, args)
	if err != nil {
		return err
	}
	conf, id := req.conf, req.id
	podNS, err := ns.GetNS(req.netns)
	if err != nil {
		return types.NewError(types.ErrInvalidNetNS, "open pod netns", err.Error())
	}
	defer podNS.Close()
	ctx, done, client, err := dial(conf)
	if err != nil {
		return err
	}
	defer done()

	hostName := HostIfName(id.ContainerID, id.IfName)
	pair, err := createVeth(hostName, id.IfName, podNS, hostAlias(conf.Name, id))
	if err != nil {
		return types.NewError(types.ErrInternal, "create veth pair", err.Error())
	}
	defer func() {
		if err == nil {
			return
		}
		if derr := deleteLink(hostName); derr != nil {
			p.log.Warn("remove veth after failed add", "interface", hostName, "err", derr)
		}
	}()

	resp, err := client.Add(ctx, &api.AddRequest{
		AttachmentID: id,
		Network:      conf.Name,
		Netns:        req.netns,
		Pod:          req.pod,
		HostIfName:   hostName,
		HostMAC:      pair.hostMAC.String(),
		PodMAC:       pair.podMAC.String(),
	})
	if err != nil {
		return cniError("add pod", err)
	}
	att := resp.Attachment
	defer func() {
		if err == nil {
			return
		}
		// ctx may be what failed; give the release its own time.
		rctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		if _, derr := client.Del(rctx, &api.DelRequest{AttachmentID: id, Network: conf.Name}); derr != nil {
			p.log.Warn("release attachment after failed add", "container", id.ContainerID, "err", derr)
		}
	}()

	mtu := att.MTU
	if conf.MTU > 0 {
		mtu = conf.MTU
	}
	if err = configure(pair, podNS, att.Address, att.Gateway, mtu, att.Underlay); err != nil {
		return types.NewError(types.ErrInternal, "configure pod interface", err.Error())
	}

	res := &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{
			{Name: hostName, Mac: pair.hostMAC.String(), Mtu: mtu},
			{Name: id.IfName, Mac: pair.podMAC.String(), Mtu: mtu, Sandbox: req.netns},
		},
		IPs: []*current.IPConfig{{
			Interface: current.Int(1),
			Address:   net.IPNet{IP: att.Address.Addr().AsSlice(), Mask: net.CIDRMask(att.Address.Bits(), att.Address.Addr().BitLen())},
			Gateway:   att.Gateway.AsSlice(),
		}},
		Routes: []*types.Route{{Dst: net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, GW: att.Gateway.AsSlice()}},
	}
	out, err := res.GetAsVersion(conf.CNIVersion)
	if err != nil {
		return types.NewError(types.ErrIncompatibleCNIVersion, "convert result", err.Error())
	}
	if err = out.PrintTo(p.stdout); err != nil {
		return types.NewError(types.ErrIOFailure, "print result", err.Error())
	}
	return nil
}

// createVeth creates the pair with the pod end directly in the pod's
// namespace under its final name. A host end left by an earlier ADD of the
// same attachment is removed first; its name is derived from the same IDs.
func createVeth(hostName, podName string, podNS ns.NetNS, alias string) (*veth, error) {
	if err := deleteLink(hostName); err != nil {
		return nil, err
	}
	la := netlink.NewLinkAttrs()
	la.Name = hostName
	v := &netlink.Veth{LinkAttrs: la, PeerName: podName, PeerNamespace: netlink.NsFd(int(podNS.Fd()))}
	if err := netlink.LinkAdd(v); err != nil {
		return nil, fmt.Errorf("add veth %s (pod end %s): %w", hostName, podName, err)
	}
	pair, err := inspectVeth(hostName, podName, podNS)
	if err != nil {
		return nil, errors.Join(err, deleteLink(hostName))
	}
	if err := netlink.LinkSetAlias(pair.host, alias); err != nil {
		return nil, errors.Join(fmt.Errorf("set alias of %s: %w", hostName, err), deleteLink(hostName))
	}
	return pair, nil
}

func inspectVeth(hostName, podName string, podNS ns.NetNS) (*veth, error) {
	host, err := netlink.LinkByName(hostName)
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", hostName, err)
	}
	h, err := netlink.NewHandleAt(netns.NsHandle(podNS.Fd()))
	if err != nil {
		return nil, fmt.Errorf("netlink in pod netns: %w", err)
	}
	defer h.Close()
	podLink, err := h.LinkByName(podName)
	if err != nil {
		return nil, fmt.Errorf("find %s in pod netns: %w", podName, err)
	}
	return &veth{
		host:     host,
		hostMAC:  host.Attrs().HardwareAddr,
		podIndex: podLink.Attrs().Index,
		podMAC:   podLink.Attrs().HardwareAddr,
	}, nil
}

// configure sets both ends' MTU (and BIG TCP, see underlayGSO) and brings
// the host end up, then gives the pod end its /32, a route to the gateway
// on the link, the default route via the gateway and a permanent neighbor
// entry that resolves the gateway to the host end's MAC, so the pod never
// ARPs for it.
func configure(pair *veth, podNS ns.NetNS, addr netip.Prefix, gw netip.Addr, mtu int, underlay string) error {
	if err := netlink.LinkSetMTU(pair.host, mtu); err != nil {
		return fmt.Errorf("set mtu of %s: %w", pair.host.Attrs().Name, err)
	}
	gso, err := underlayGSO(underlay)
	if err != nil {
		return err
	}
	if gso > 0 {
		if err := setIPv4GSO(nil, pair.host, gso); err != nil {
			return err
		}
	}
	if err := disableIPv6(pair.host.Attrs().Name); err != nil {
		return err
	}
	if err := netlink.LinkSetUp(pair.host); err != nil {
		return fmt.Errorf("bring up %s: %w", pair.host.Attrs().Name, err)
	}
	h, err := netlink.NewHandleAt(netns.NsHandle(podNS.Fd()))
	if err != nil {
		return fmt.Errorf("netlink in pod netns: %w", err)
	}
	defer h.Close()
	link, err := h.LinkByIndex(pair.podIndex)
	if err != nil {
		return fmt.Errorf("find pod interface: %w", err)
	}
	name := link.Attrs().Name
	if err := h.LinkSetMTU(link, mtu); err != nil {
		return fmt.Errorf("set mtu of %s: %w", name, err)
	}
	if gso > 0 {
		if err := setIPv4GSO(h, link, gso); err != nil {
			return err
		}
	}
	if err := h.AddrAdd(link, &netlink.Addr{IPNet: ipNet(addr)}); err != nil {
		return fmt.Errorf("add %s to %s: %w", addr, name, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("bring up %s: %w", name, err)
	}
	gwHost := netip.PrefixFrom(gw, gw.BitLen())
	if err := h.RouteReplace(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: ipNet(gwHost), Scope: netlink.SCOPE_LINK}); err != nil {
		return fmt.Errorf("add route to gateway %s: %w", gw, err)
	}
	if err := h.RouteReplace(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: ipNet(netip.PrefixFrom(netip.IPv4Unspecified(), 0)), Gw: gw.AsSlice()}); err != nil {
		return fmt.Errorf("add default route via %s: %w", gw, err)
	}
	neigh := &netlink.Neigh{
		LinkIndex:    link.Attrs().Index,
		Family:       netlink.FAMILY_V4,
		State:        netlink.NUD_PERMANENT,
		IP:           gw.AsSlice(),
		HardwareAddr: pair.hostMAC,
	}
	if err := h.NeighSet(neigh); err != nil {
		return fmt.Errorf("add neighbor %s at %s: %w", gw, pair.hostMAC, err)
	}
	return nil
}

// disableIPv6 turns IPv6 off on the host end of a pod's veth, so the pod
// cannot reach the host's own services over IPv6 link-local addresses; the
// pod network is IPv4 only. A kernel without IPv6 has nothing to turn off.
func disableIPv6(ifname string) error {
	path := filepath.Join("/proc/sys/net/ipv6/conf", ifname, "disable_ipv6")
	if err := os.WriteFile(path, []byte("1"), 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("disable ipv6 on %s: %w", ifname, err)
	}
	return nil
}

// deleteLink deletes a host interface; a missing one is not an error.
func deleteLink(name string) error {
	l, err := netlink.LinkByName(name)
	if errors.As(err, new(netlink.LinkNotFoundError)) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	if err := netlink.LinkDel(l); err != nil && !errors.Is(err, syscall.ENODEV) {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// retryDump repeats a netlink dump that the kernel interrupted because the
// table changed under it; an interrupted dump may be incomplete.
func retryDump[T any](dump func() ([]T, error)) ([]T, error) {
	var out []T
	var err error
	for range 5 {
		if out, err = dump(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return out, err
		}
	}
	return nil, fmt.Errorf("netlink dump kept being interrupted: %w", err)
}
