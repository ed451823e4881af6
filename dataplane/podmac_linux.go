package dataplane

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// checkPodMACs refuses a pod interface whose configured mac-address
// differs from the address of its link: the leaf records the host end of
// the pod's veth (the CNI plugin writes what it created), and nothing
// sets it. A link that is not there yet passes; the interface is checked
// again by any commit that changes it. names are the interfaces to check;
// all checks every pod interface of d, with one link dump.
func (r *Reconciler) checkPodMACs(d *gen.Device, names []string, all bool) error {
	r.mu.Lock()
	dp := r.dp
	r.mu.Unlock()
	if dp == nil {
		return nil // not started: no links to compare with
	}
	ifs := nos.Interfaces(d)
	if all {
		names = names[:0]
		for name, ifc := range ifs {
			if isPod(ifc) && ifc.GetConfig().MacAddress != nil {
				names = append(names, name)
			}
		}
		if len(names) == 0 {
			return nil
		}
	}
	var links map[string]net.HardwareAddr
	if all {
		var err error
		if links, err = dp.linkMACs(); err != nil {
			return err
		}
	}
	for _, name := range names {
		ifc := ifs[name]
		if !isPod(ifc) || ifc.GetConfig().MacAddress == nil {
			continue
		}
		path := fmt.Sprintf("/interfaces/interface[name=%s]/config/mac-address", name)
		want, err := net.ParseMAC(ifc.GetConfig().GetMacAddress())
		if err != nil {
			return policyInvalid(path, "%q is not a MAC address", ifc.GetConfig().GetMacAddress())
		}
		have, ok := links[name]
		if !all {
			if have, ok, err = dp.linkMAC(name); err != nil {
				return err
			}
		}
		if ok && have.String() != want.String() {
			return policyInvalid(path, "%s differs from %s, the address of link %s (the leaf records the link's address, it does not set it)", want, have, name)
		}
	}
	return nil
}

// linkMAC returns the hardware address of the link called name, and
// whether there is one.
func (d *Dataplane) linkMAC(name string) (net.HardwareAddr, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	l, err := d.nl.LinkByName(name)
	if errors.As(err, new(netlink.LinkNotFoundError)) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("find interface %q: %w", name, err)
	}
	return l.Attrs().HardwareAddr, true, nil
}

// linkMACs returns the hardware address of every link, by name.
func (d *Dataplane) linkMACs() (map[string]net.HardwareAddr, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	ls, err := d.nl.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	out := make(map[string]net.HardwareAddr, len(ls))
	for _, l := range ls {
		out[l.Attrs().Name] = l.Attrs().HardwareAddr
	}
	return out, nil
}
