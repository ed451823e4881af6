package dataplane

import (
	"testing"

	"github.com/vishvananda/netlink"
)

// TestInterfaceCountersAfterXDPDecap: over MPLSoMPLS, where XDP
// decapsulates and tc applies the pod's ingress policy before delivery,
// packets the policy refuses count in the pod's out-drops and not in its
// out-pkts; delivered ones in its out-pkts.
func TestInterfaceCountersAfterXDPDecap(t *testing.T) {
	o := newOverlay(t, EncapMPLSoMPLS)
	from, to := o.a.pods["red"], o.b.pods["red"]
	var ifindex int
	must(t, o.b.ns.do(func() error {
		l, err := netlink.LinkByName(to.hostIf)
		if err == nil {
			ifindex = l.Attrs().Index
		}
		return err
	}))
	counters := func() InterfaceCounters {
		t.Helper()
		c, err := o.b.d.InterfaceCounters(ifindex)
		must(t, err)
		return c
	}
	if out, err := from.ping(to.addr, "-c", "1", "-W", "5"); err != nil {
		t.Fatalf("ping before the policy: %v: %s", err, out)
	}
	c0 := counters()
	if c0.TxPackets != 1 || c0.TxDrops != 0 {
		t.Fatalf("pod counters after one echo %+v, want 1 out-pkt, no out-drop", c0)
	}
	must(t, o.b.ns.do(func() error {
		return o.b.d.SetPolicy(PolicyConfig{Interfaces: map[int]InterfacePolicy{ifindex: {Ingress: &Attachment{Default: PolicyDrop}}}})
	}))
	if out, err := from.ping(to.addr, "-c", "3", "-i", "0.2", "-W", "1"); err == nil {
		t.Fatalf("ping through a default-drop ingress policy answered: %s", out)
	}
	if c := counters(); c.TxPackets != c0.TxPackets || c.TxDrops != 3 {
		t.Errorf("pod counters after 3 refused echoes %+v, want out-pkts %d, 3 out-drops", c, c0.TxPackets)
	}
}
