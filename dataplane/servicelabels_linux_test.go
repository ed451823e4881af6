package dataplane

import (
	"net/netip"
	"testing"
)

// TestLabelsFollowTheirVRFServices: every label into a VRF without a
// service says so (LABEL_F_NO_SERVICES, which lets decapsulation skip the
// flow hints); the VRF's first service clears it in all of them (also in
// a label an earlier process left behind) before a packet to the service
// can arrive, so that packet is translated and makes its flow, and the
// VRF's last service going sets it again. Another VRF's labels keep it.
func TestLabelsFollowTheirVRFServices(t *testing.T) {
	e, _ := blueEnv(t)
	must(t, e.d.AllowEndpoint(remote2, "blue"))
	blue, err := e.d.vrfID("blue", false)
	must(t, err)
	// A label of blue an earlier process left: not in this process's books.
	must(t, e.d.maps.Labels.Put(uint32(2002), forwarderLabelTarget{Kind: labelVRF, Flags: labelNoServices, Vrf: blue}))
	flags := func(label uint32) uint8 {
		t.Helper()
		var v forwarderLabelTarget
		must(t, e.d.maps.Labels.Lookup(label, &v))
		if v.Kind == 0 {
			t.Fatalf("label %d is not set", label)
		}
		return v.Flags
	}
	expect := func(when string, want map[uint32]uint8) {
		t.Helper()
		for label, w := range want {
			if got := flags(label); got != w {
				t.Errorf("%s: label %d flags %d, want %d", when, label, got, w)
			}
		}
	}
	// 1000 and 1001 lead into red (newPacketEnv), 2000 into blue.
	expect("no service", map[uint32]uint8{1000: labelNoServices, 1001: labelNoServices, 2000: labelNoServices, 2002: labelNoServices})

	vip := netip.MustParseAddr("10.1.0.9")
	key := ServiceKey{VRF: "blue", Addr: vip, Proto: UDP, Port: 40000}
	must(t, e.d.SetServices([]Service{{ServiceKey: key,
		Backends: []Backend{{BackendKey: BackendKey{Addr: netip.MustParseAddr("10.1.0.3"), Port: 40000}, Ready: true, Serving: true, Local: true}}}}))
	must(t, e.d.SetLabel(2001, LabelTarget{VRF: "blue"}))
	expect("a service in blue", map[uint32]uint8{1000: labelNoServices, 1001: labelNoServices, 2000: 0, 2001: 0, 2002: 0})

	before, err := e.d.readFlows()
	must(t, err)
	if ret, _ := run(t, e.d.progs.UnderlayIngress, underlayFrame(remote2, 6635, lse(2000, true, 63), remoteInner(vip, 63))); ret != tcRedirect {
		t.Fatalf("packet to the service over the tunnel: return %d, want redirect", ret)
	}
	after, err := e.d.readFlows()
	must(t, err)
	if len(after) == len(before) {
		t.Error("a packet to the service over the tunnel made no flow")
	}

	must(t, e.d.DeleteServices([]ServiceKey{key}))
	expect("the service gone", map[uint32]uint8{1000: labelNoServices, 2000: labelNoServices, 2001: labelNoServices, 2002: labelNoServices})
}
