package plugin

import (
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/isthmus-net/isthmus/cni/daemon"
)

// TestBadArgumentsActOnNothing runs ADDs whose arguments the kernel or the
// daemon would have taken, and checks that each is refused with code 4
// before a veth, an address or a tree entry exists.
func TestBadArgumentsActOnNothing(t *testing.T) {
	e := newEnv(t, daemon.Config{})
	e.d.AddVRF("red", "65000:1", "10.1.0.0/30")
	pod := newNS(t)
	for _, tt := range []struct{ containerID, ifname string }{
		{"../pod", "eth0"},       // the daemon took any container ID
		{"-pod", "eth0"},         // so did the alias
		{"pod", "eth\u00a0"},     // the kernel takes a no-break space
		{"pod", "eth\x7f"},       // and a DEL character
		{"pod", "éééééééé"[:15]}, // and half a rune
	} {
		args := argsFor(tt.containerID, pod, e.conf("red", nil))
		args.IfName = tt.ifname
		if _, err := e.run((*Plugin).Add, args); cniCode(t, err) != types.ErrInvalidEnvironmentVariables {
			t.Errorf("add %q/%q: %v, want code 4", tt.containerID, tt.ifname, err)
		}
		name := HostIfName(tt.containerID, tt.ifname)
		if e.hostLink(name) || e.d.Interface(name) != nil {
			t.Errorf("add %q/%q left %s behind", tt.containerID, tt.ifname, name)
		}
	}
	_ = pod.Do(func(ns.NetNS) error {
		links, err := netlink.LinkList()
		if err != nil {
			t.Errorf("list pod links: %v", err)
		}
		if len(links) != 1 {
			t.Errorf("pod netns has %d links, want only lo", len(links))
		}
		return nil
	})
	// Both addresses of the /30 are still free.
	for _, id := range []string{"p1", "p2"} {
		if _, err := e.add("red", id, newNS(t), ""); err != nil {
			t.Fatalf("add %s after the refused ones: %v", id, err)
		}
	}
}
