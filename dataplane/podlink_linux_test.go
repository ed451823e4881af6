package dataplane

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/openconfig/ygot/ygot"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// TestPodDisabledLeavesForwarding disables a pod interface and enables it
// again, by delta and by a commit applied in full: while it is disabled
// the other pod of its VRF can neither reach it nor be reached from it,
// its host link is down and its state says oper-status DOWN; enabled, it
// forwards again, link up and oper-status UP.
func TestPodDisabledLeavesForwarding(t *testing.T) {
	requireRoot(t)
	h := &coreHost{ns: newNS(t, "host")}
	a := addPod(t, h.ns, "pa", 1, netip.MustParseAddr("10.1.0.2"), podMTU)
	b := addPod(t, h.ns, "pb", 2, netip.MustParseAddr("10.1.0.3"), podMTU)
	h.startFresh(t)
	h.commit(t, func(d *gen.Device) error {
		ni := d.GetOrCreateNetworkInstances().GetOrCreateNetworkInstance("red")
		c := ni.GetOrCreateConfig()
		c.Name, c.Type, c.RouteDistinguisher = ygot.String("red"), gen.IsthmusTypes_NetworkInstanceType_L3VRF, ygot.String("65000:1")
		ni.GetOrCreateAddressPools().GetOrCreateAddressPool("10.1.0.0/24").GetOrCreateConfig().Prefix = ygot.String("10.1.0.0/24")
		for _, p := range []*testPod{a, b} {
			pc := d.GetOrCreateInterfaces().GetOrCreateInterface(p.hostIf).GetOrCreateConfig()
			pc.Name, pc.Type, pc.NetworkInstance = ygot.String(p.hostIf), gen.IsthmusTypes_InterfaceType_POD, ygot.String("red")
			pc.Ipv4Address, pc.Enabled = ygot.String(p.addr.String()+"/32"), ygot.Bool(true)
			pc.GetOrCreatePod().PeerMacAddress = ygot.String(p.mac.String())
		}
		return nil
	})
	waitPing(t, a, b.addr, true)

	check := func(step string, enabled bool) {
		t.Helper()
		waitPing(t, a, b.addr, enabled)
		waitPing(t, b, a.addr, enabled)
		var up bool
		if err := h.ns.do(func() error {
			l, err := netlink.LinkByName(b.hostIf)
			up = err == nil && l.Attrs().RawFlags&unix.IFF_UP != 0
			return err
		}); err != nil {
			t.Fatalf("%s: find %s: %v", step, b.hostIf, err)
		}
		if up != enabled {
			t.Fatalf("%s: host link %s up=%v, want %v", step, b.hostIf, up, enabled)
		}
		must(t, h.rec.PublishState())
		want := gen.IsthmusTypes_OperStatus_DOWN
		if enabled {
			want = gen.IsthmusTypes_OperStatus_UP
		}
		h.core.Read(func(_, state *gen.Device) error {
			st := nos.Interfaces(state)[b.hostIf].GetState()
			if st.GetOperStatus() != want || st.GetEnabled() != enabled {
				t.Errorf("%s: state oper-status %v enabled %v, want %v and %v", step, st.GetOperStatus(), st.GetEnabled(), want, enabled)
			}
			return nil
		})
	}
	// alone changes only the interface (applied by delta); with a tag key
	// the commit changes another top-level entry and is applied in full.
	for i, step := range []struct {
		enabled, alone bool
	}{{false, true}, {true, false}, {false, false}, {true, true}} {
		name := fmt.Sprintf("enabled=%v by delta=%v", step.enabled, step.alone)
		h.commit(t, func(d *gen.Device) error {
			d.Interfaces.Interface[b.hostIf].Config.Enabled = ygot.Bool(step.enabled)
			if !step.alone {
				d.GetOrCreateAcl().GetOrCreateTagKeys().GetOrCreateTagKey(fmt.Sprintf("k%d", i)).GetOrCreateConfig().Name = ygot.String(fmt.Sprintf("k%d", i))
			}
			return nil
		})
		check(name, step.enabled)
	}
}
