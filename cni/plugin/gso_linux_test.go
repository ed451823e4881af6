package plugin

import (
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/isthmus-net/isthmus/cni/daemon"
)

// TestBigTCPFollowsUnderlay: a pod added while the underlay's IPv4 GSO
// size is above 64 KiB gets it on both ends of its veth (GSO and GRO); a
// pod added while it is at the default keeps the default.
func TestBigTCPFollowsUnderlay(t *testing.T) {
	e := newEnv(t, daemon.Config{})
	e.d.AddVRF("red", "65000:1", "10.1.0.0/24")
	e.d.AddUnderlay("ul0", 1500)
	var ul netlink.Link
	setUnderlay := func(size int) {
		t.Helper()
		err := e.host.Do(func(ns.NetNS) error {
			if ul == nil {
				if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "ul0"}, PeerName: "ul1"}); err != nil {
					return err
				}
				var err error
				if ul, err = netlink.LinkByName("ul0"); err != nil {
					return err
				}
			}
			if err := netlink.LinkSetGSOIPv4MaxSize(ul, size); err != nil {
				return err
			}
			return netlink.LinkSetGROIPv4MaxSize(ul, size)
		})
		if err != nil {
			t.Fatalf("set underlay gso size: %v", err)
		}
	}
	sizes := func(n ns.NetNS, name string) (gso, gro uint32) {
		t.Helper()
		err := n.Do(func(ns.NetNS) error {
			l, err := netlink.LinkByName(name)
			if err != nil {
				return err
			}
			gso, gro = l.Attrs().GSOIPv4MaxSize, l.Attrs().GROIPv4MaxSize
			return nil
		})
		if err != nil {
			t.Fatalf("read %s: %v", name, err)
		}
		return gso, gro
	}
	for _, c := range []struct {
		pod       string
		underlay  int
		want      uint32
		situation string
	}{
		{"big", 196608, 196608, "underlay at 192 KiB"},
		{"plain", 65536, 65536, "underlay at the default"},
	} {
		setUnderlay(c.underlay)
		pod := newNS(t)
		if _, err := e.add("red", c.pod, pod, ""); err != nil {
			t.Fatalf("add %s: %v", c.pod, err)
		}
		for _, end := range []struct {
			ns   ns.NetNS
			name string
		}{{e.host, HostIfName(c.pod, "eth0")}, {pod, "eth0"}} {
			if gso, gro := sizes(end.ns, end.name); gso != c.want || gro != c.want {
				t.Errorf("%s, %s: gso_ipv4_max_size %d, gro_ipv4_max_size %d; want %d", c.situation, end.name, gso, gro, c.want)
			}
		}
	}
}
