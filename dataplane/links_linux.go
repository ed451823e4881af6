package dataplane

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Pinned link names: <kind>-<ifindex> under <dir>/links.
const (
	linkPod         = "pod-"
	linkPodXDP      = "podxdp-"
	linkUnderlayTC  = "underlay-tc-"
	linkUnderlayXDP = "underlay-xdp-"
)

// attach makes sure prog is attached to ifindex through a pinned link named
// kind+ifindex, reusing the pinned link when there is one.
func (d *Dataplane) attach(kind string, ifindex int, prog *ebpf.Program) error {
	name := kind + strconv.Itoa(ifindex)
	if l, ok := d.links[name]; ok {
		if info, err := l.Info(); err == nil && linkIfindex(info) == ifindex {
			return nil
		}
		// The interface was replaced: drop the defunct link.
		l.Unpin()
		l.Close()
		delete(d.links, name)
	}
	var l link.Link
	var err error
	switch kind {
	case linkUnderlayXDP, linkPodXDP:
		l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: link.XDPDriverMode})
	default:
		l, err = link.AttachTCX(link.TCXOptions{Program: prog, Interface: ifindex, Attach: ebpf.AttachTCXIngress})
	}
	if err != nil {
		return fmt.Errorf("attach %s to ifindex %d: %w", prog.String(), ifindex, err)
	}
	path := filepath.Join(d.dir, "links", name)
	os.Remove(path)
	if err := l.Pin(path); err != nil {
		l.Close()
		return fmt.Errorf("pin link %s: %w", name, err)
	}
	d.links[name] = l
	return nil
}

// detach removes the pinned link kind+ifindex, detaching its program.
func (d *Dataplane) detach(kind string, ifindex int) error {
	name := kind + strconv.Itoa(ifindex)
	l, ok := d.links[name]
	if !ok {
		return nil
	}
	delete(d.links, name)
	var errs []error
	if err := l.Unpin(); err != nil {
		errs = append(errs, fmt.Errorf("unpin link %s: %w", name, err))
	}
	if err := l.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close link %s: %w", name, err))
	}
	return errors.Join(errs...)
}

// deliveryFlags says how the programs deliver into the pod behind the
// interface lnk: a veth (or netkit) whose other end is in another network
// namespace takes bpf_redirect_peer from tc ingress (IFACE_PEER), which
// puts the packet straight on the pod end's ingress; anything else (a
// peer in the same namespace, which bpf_redirect_peer refuses, or another
// kind of link) is sent out of the interface with bpf_redirect.
func deliveryFlags(lnk netlink.Link) uint32 {
	switch lnk.Type() {
	case "veth", "netkit":
		if lnk.Attrs().NetNsID >= 0 {
			return ifacePeer
		}
	}
	return 0
}

// ifacePeer must match IFACE_PEER in bpf/types.h.
const ifacePeer = 1

// Headroom for encapsulation. A pod's UDP socket reserves in front of
// each packet only what its interface asks for: LL_RESERVED_SPACE of the
// pod end of its veth, 16 bytes (2 once the Ethernet header is in), so
// pushing the tunnel headers made the kernel reallocate the head of every
// such packet. A veth asks for more when either end is given an rx
// headroom, which it then sets as needed_headroom on both ends; on Linux
// 6.18 only a bridge (or Open vSwitch) master gives one, the largest
// forwarding headroom among its ports. So the loader keeps, per host
// namespace, a bridge that is kept down (headroomBridge) with an idle
// VXLAN device as its first port (headroomAnchor: its needed_headroom of
// 64 bytes is what the bridge lends) and makes the host end of every pod
// veth a port of it. The bridge is down, so its ports are disabled: it
// never forwards, and what reaches it (a frame pod_ingress leaves to the
// stack, i.e. ARP, which pods do not need: the gateway is a permanent
// neighbor) is dropped. tcx ingress runs before the bridge, so forwarding
// is unchanged. An interface that already has a master is left alone.
//
// The ports are pods of every VRF, so being down must not be the only
// thing that keeps them apart: an administrator, a network manager or a
// script that sets every link up may set the bridge up too. So every port
// (the anchor too) is isolated, which makes the kernel forward nothing
// from one port to another, flooded frames included; it learns no
// address and floods no unknown unicast (isolatePort); the bridge does
// no multicast snooping, so it keeps no group of ports to send to either.
// What the bridge's own stack would send (an ARP reply, for one) then
// finds no port. VLAN filtering, which could drop every frame at the
// bridge's ingress, is not built in every kernel (it is not in this
// project's), so it is not relied on. A bridge found up is logged and
// taken down again whenever a pod is attached.
const (
	headroomBridge = "isthmus-hr"
	headroomAnchor = "isthmus-hr-vx"
)

// bridgeIsolation reports whether br is set up as bridgeSettings makes it.
func bridgeIsolation(br *netlink.Bridge) bool {
	return br.MulticastSnooping != nil && !*br.MulticastSnooping
}

// bridgeSettings is the headroom bridge as created or corrected: no
// multicast snooping.
func bridgeSettings(attrs netlink.LinkAttrs) *netlink.Bridge {
	off := false
	return &netlink.Bridge{LinkAttrs: attrs, MulticastSnooping: &off}
}

// lendHeadroom makes the host end of a pod veth an isolated port of the
// headroom bridge, creating the bridge and its anchor first if needed.
func (d *Dataplane) lendHeadroom(lnk netlink.Link) error {
	if lnk.Type() != "veth" {
		return nil
	}
	br, err := d.headroomBridge()
	if err != nil {
		return err
	}
	switch lnk.Attrs().MasterIndex {
	case br.Attrs().Index:
	case 0:
		if err := d.nl.LinkSetMasterByIndex(lnk, br.Attrs().Index); err != nil {
			return fmt.Errorf("lend headroom to %s: %w", lnk.Attrs().Name, err)
		}
	default:
		return nil // someone else's port: not ours to move
	}
	// Also on a port lent before: a port of an older loader may lack them.
	if err := d.isolatePort(lnk); err != nil {
		return fmt.Errorf("lend headroom to %s: %w", lnk.Attrs().Name, err)
	}
	return nil
}

// headroomBridge returns the headroom bridge, creating it and its anchor,
// giving a bridge of an older loader the settings that keep its ports
// apart, and taking it down if someone set it up.
func (d *Dataplane) headroomBridge() (netlink.Link, error) {
	br, err := d.nl.LinkByName(headroomBridge)
	if err != nil {
		if !errors.As(err, new(netlink.LinkNotFoundError)) {
			return nil, fmt.Errorf("find %s: %w", headroomBridge, err)
		}
		if err := d.nl.LinkAdd(bridgeSettings(netlink.LinkAttrs{Name: headroomBridge})); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("create %s: %w", headroomBridge, err)
		}
		if br, err = d.nl.LinkByName(headroomBridge); err != nil {
			return nil, fmt.Errorf("find %s: %w", headroomBridge, err)
		}
	}
	b, ok := br.(*netlink.Bridge)
	if !ok {
		return nil, fmt.Errorf("find %s: it is a %s, not a bridge", headroomBridge, br.Type())
	}
	older := !bridgeIsolation(b) // a bridge of an older loader
	if older {
		attrs := netlink.NewLinkAttrs()
		attrs.Name, attrs.Index = headroomBridge, br.Attrs().Index
		if err := d.nl.LinkModify(bridgeSettings(attrs)); err != nil {
			return nil, fmt.Errorf("turn multicast snooping off on %s: %w", headroomBridge, err)
		}
	}
	if br.Attrs().Flags&net.FlagUp != 0 {
		d.log.Warn("headroom bridge was set up; taking it down", "bridge", headroomBridge)
		if err := d.nl.LinkSetDown(br); err != nil {
			return nil, fmt.Errorf("set %s down: %w", headroomBridge, err)
		}
	}
	anchor, err := d.nl.LinkByName(headroomAnchor)
	if err != nil {
		if !errors.As(err, new(netlink.LinkNotFoundError)) {
			return nil, fmt.Errorf("find %s: %w", headroomAnchor, err)
		}
		// The last VNI: the kernel refuses a second device with the same
		// VNI and port in a namespace (flannel, for one, uses VNI 1).
		vx := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: headroomAnchor}, VxlanId: 1<<24 - 1, Learning: false}
		if err := d.nl.LinkAdd(vx); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("create %s: %w", headroomAnchor, err)
		}
		if anchor, err = d.nl.LinkByName(headroomAnchor); err != nil {
			return nil, fmt.Errorf("find %s: %w", headroomAnchor, err)
		}
	}
	if anchor.Attrs().MasterIndex != br.Attrs().Index {
		if err := d.nl.LinkSetMasterByIndex(anchor, br.Attrs().Index); err != nil {
			return nil, fmt.Errorf("add %s to %s: %w", headroomAnchor, headroomBridge, err)
		}
		older = true
	}
	if older {
		if err := d.isolatePort(anchor); err != nil {
			return nil, fmt.Errorf("add %s to %s: %w", headroomAnchor, headroomBridge, err)
		}
	}
	return br, nil
}

// isolatePort makes lnk an isolated port of the headroom bridge: the
// kernel forwards nothing between isolated ports, and every port is one
// (flooded frames too); it also learns no address and takes no unknown
// unicast.
func (d *Dataplane) isolatePort(lnk netlink.Link) error {
	if err := d.nl.LinkSetIsolated(lnk, true); err != nil {
		return fmt.Errorf("isolate bridge port %s: %w", lnk.Attrs().Name, err)
	}
	if err := d.nl.LinkSetLearning(lnk, false); err != nil {
		return fmt.Errorf("turn learning off on bridge port %s: %w", lnk.Attrs().Name, err)
	}
	if err := d.nl.LinkSetFlood(lnk, false); err != nil {
		return fmt.Errorf("turn flooding off on bridge port %s: %w", lnk.Attrs().Name, err)
	}
	return nil
}

// returnHeadroom takes the interface out of the headroom bridge, so that
// once detached it passes frames to the stack again.
func (d *Dataplane) returnHeadroom(ifindex int) error {
	lnk, err := d.nl.LinkByIndex(ifindex)
	if err != nil || lnk.Attrs().MasterIndex == 0 {
		return nil // gone, or no port
	}
	br, err := d.nl.LinkByName(headroomBridge)
	if err != nil || br.Attrs().Index != lnk.Attrs().MasterIndex {
		return nil
	}
	if err := d.nl.LinkSetNoMaster(lnk); err != nil {
		return fmt.Errorf("take %s out of %s: %w", lnk.Attrs().Name, headroomBridge, err)
	}
	return nil
}

// removeHeadroomBridge deletes the headroom bridge and its anchor (not
// after Close, which let go of the namespace's netlink handle).
func (d *Dataplane) removeHeadroomBridge() error {
	if d.nl == nil {
		return nil
	}
	var errs []error
	for _, name := range []string{headroomBridge, headroomAnchor} {
		l, err := d.nl.LinkByName(name)
		if err != nil {
			continue
		}
		if err := d.nl.LinkDel(l); err != nil {
			errs = append(errs, fmt.Errorf("delete %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}
