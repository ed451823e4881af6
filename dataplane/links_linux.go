package dataplane

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
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
