package dataplane

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// podLinks takes the host links of disabled pods down (up false) or
// brings those of pods enabled again back up (up true), for the pod
// interfaces named (nil: every one). A disabled pod is detached from the
// forwarder; with its host link down its own packets stop at the veth
// instead of reaching the host's stack. The link of a pod deleted while
// disabled stays down: it is no longer the forwarder's. r.mu is held.
func (r *Reconciler) podLinks(want intent, names map[string]struct{}, up bool) error {
	if r.down == nil {
		r.down = map[string]bool{}
	}
	var errs []error
	if !up {
		each := func(name string, p podIntent) {
			if !p.Down || r.down[name] {
				return
			}
			switch ok, err := r.dp.setLinkUp(name, false); {
			case err != nil:
				errs = append(errs, err)
			case ok:
				r.down[name] = true
			}
		}
		if names == nil {
			for name, p := range want.Pods {
				each(name, p)
			}
		}
		for name := range names {
			each(name, want.Pods[name])
		}
		return errors.Join(errs...)
	}
	for name := range r.down {
		if _, named := names[name]; names != nil && !named {
			continue
		}
		p, ok := want.Pods[name]
		if ok && p.Down {
			continue
		}
		if ok {
			if _, err := r.dp.setLinkUp(name, true); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		delete(r.down, name)
	}
	return errors.Join(errs...)
}

// setLinkUp sets the link called name administratively up or down and
// reports whether there is such a link.
func (d *Dataplane) setLinkUp(name string, up bool) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	l, err := d.nl.LinkByName(name)
	if errors.As(err, new(netlink.LinkNotFoundError)) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("find interface %q: %w", name, err)
	}
	if isUp := l.Attrs().RawFlags&unix.IFF_UP != 0; isUp == up {
		return true, nil
	}
	set, verb := d.nl.LinkSetDown, "down"
	if up {
		set, verb = d.nl.LinkSetUp, "up"
	}
	if err := set(l); err != nil {
		return true, fmt.Errorf("set interface %q %s: %w", name, verb, err)
	}
	return true, nil
}
