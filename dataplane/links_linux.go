package dataplane

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
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
