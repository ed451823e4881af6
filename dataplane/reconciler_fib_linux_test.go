package dataplane

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// programmed reports how a route is in the maps: "remote", "local" or "".
func programmed(t *testing.T, d *Dataplane, k RouteKey) string {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	rk, err := d.routeKey(k, false)
	if err != nil {
		return ""
	}
	e, ok := d.routes[rk]
	switch {
	case !ok:
		return ""
	case e.gid != 0:
		return "remote"
	default:
		return "local"
	}
}

func staticEdit(prefix, ifname string, del bool) func(*gen.Device) error {
	return func(d *gen.Device) error {
		ni := d.GetOrCreateNetworkInstances().GetOrCreateNetworkInstance("red")
		if del {
			delete(ni.GetOrCreateStaticRoutes().Static, prefix)
			return nil
		}
		c := ni.GetOrCreateStaticRoutes().GetOrCreateStatic(prefix).GetOrCreateConfig()
		c.Prefix, c.Interface = ygot.String(prefix), ygot.String(ifname)
		return nil
	}
}

// TestLocalRouteHidesLearntRoute: a static route over a route BGP learnt
// wins while it exists; once it is deleted the learnt route is back in the
// maps.
func TestLocalRouteHidesLearntRoute(t *testing.T) {
	h := newSpoofHost(t)
	k := RouteKey{VRF: "red", Prefix: netip.MustParsePrefix("10.2.0.0/24")}
	d := h.rec.Dataplane()
	if got := programmed(t, d, k); got != "remote" {
		t.Fatalf("learnt route is %q, want remote", got)
	}
	h.commit(t, staticEdit("10.2.0.0/24", "pred", false))
	if got := programmed(t, d, k); got != "local" {
		t.Fatalf("with a static route over it the route is %q, want local", got)
	}
	h.commit(t, staticEdit("10.2.0.0/24", "", true))
	waitFor(t, "the learnt route back", func() bool { return programmed(t, d, k) == "remote" })
	must(t, h.rec.PublishState())
	h.core.Read(func(_, state *gen.Device) error {
		fw := nos.NetworkInstances(state)["red"].GetState().GetForwarding()
		if fw.GetRemoteRoutes() != 1 || fw.GetLocalRoutes() != 1 {
			t.Errorf("red forwarding state %d local, %d remote routes, want 1 and 1", fw.GetLocalRoutes(), fw.GetRemoteRoutes())
		}
		return nil
	})
}

// TestFIBProgrammingRetried fills the endpoint table so that a learnt
// route cannot be programmed, checks that the reconciler does not count it
// as programmed, then frees room and sees the retry program it.
func TestFIBProgrammingRetried(t *testing.T) {
	h := newSpoofHost(t)
	d := h.rec.Dataplane()
	var fillers []netip.Addr
	for i := 0; ; i++ {
		a := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		if err := d.SetEndpoint(Endpoint{Addr: a, MAC: peer2MAC}); err != nil {
			break
		}
		fillers = append(fillers, a)
	}
	k := RouteKey{VRF: "red", Prefix: netip.MustParsePrefix("10.7.0.0/24")}
	newPeer := netip.MustParseAddr("192.0.2.50")
	h.core.FIB().Update([]nos.RouteChange{{Route: nos.Route{RouteKey: k,
		NextHops: []nos.NextHop{{Endpoint: newPeer, Label: 6000, Encap: nos.EncapMPLSoUDP}}}}})
	waitFor(t, "the failure", func() bool {
		n, err := h.rec.Pending()
		return n > 0 && err != nil
	})
	if got := programmed(t, d, k); got != "" {
		t.Fatalf("route programmed (%q) with no endpoint slot left", got)
	}
	must(t, h.rec.PublishState())
	h.core.Read(func(_, state *gen.Device) error {
		if n := nos.NetworkInstances(state)["red"].GetState().GetForwarding().GetRemoteRoutes(); n != 1 {
			t.Errorf("red reports %d remote routes while one failed, want 1", n)
		}
		return nil
	})
	for _, a := range fillers[:10] {
		must(t, d.DeleteEndpoint(a))
	}
	deadline := time.Now().Add(15 * time.Second)
	for programmed(t, d, k) != "remote" {
		if time.Now().After(deadline) {
			n, err := h.rec.Pending()
			t.Fatalf("route not programmed after room was freed: %d pending, %v", n, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitFor(t, "nothing pending", func() bool {
		n, err := h.rec.Pending()
		return n == 0 && err == nil
	})
	allowed, err := d.EndpointVRFs()
	must(t, err)
	if fmt.Sprint(allowed[newPeer]) != "[red]" {
		t.Errorf("%v may send into %v, want [red]", newPeer, allowed[newPeer])
	}
}

// TestApplyReturnsLabelAllocationErrors: when the core cannot allocate a
// label, Apply says so (it used to go on with label 0 and report
// something else).
func TestApplyReturnsLabelAllocationErrors(t *testing.T) {
	h := newSpoofHost(t)
	cfg := h.core.Config()
	cfg.GetNetworkInstances().GetNetworkInstance("red").GetConfig().LabelAllocationMode = gen.IsthmusTypes_LabelAllocationMode_PER_PREFIX
	must(t, h.st.Close()) // the label allocator persists into the store
	var err error
	h.ns.do(func() error {
		err = h.rec.Apply(context.Background(), nil, cfg)
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), `allocate label of "red"`) {
		t.Fatalf("apply with a closed label store: %v, want the allocation error", err)
	}
}

// TestStaticRouteWaitsForItsPod: a static route through a pod interface
// that is not attached yet commits, and is programmed once the interface
// appears; it goes when the interface's configuration goes.
func TestStaticRouteWaitsForItsPod(t *testing.T) {
	h := newSpoofHost(t)
	d := h.rec.Dataplane()
	late := RouteKey{VRF: "red", Prefix: netip.MustParsePrefix("10.8.0.0/24")}
	podCfg := func(ifname string, mac string) func(*gen.Device) error {
		return func(dev *gen.Device) error {
			pc := dev.GetOrCreateInterfaces().GetOrCreateInterface(ifname).GetOrCreateConfig()
			pc.Name, pc.Type, pc.NetworkInstance = ygot.String(ifname), gen.IsthmusTypes_InterfaceType_POD, ygot.String("red")
			pc.Mtu = ygot.Uint16(podMTU)
			if mac != "" {
				pc.GetOrCreatePod().PeerMacAddress = ygot.String(mac)
			}
			return nil
		}
	}

	// The interface exists but its pod is not plugged (no MAC yet).
	plugged := addPod(t, h.ns, "pplug", 7, netip.MustParseAddr("10.1.0.7"), podMTU)
	h.commit(t, podCfg("pplug", ""))
	h.commit(t, staticEdit(late.Prefix.String(), "pplug", false))
	if got := programmed(t, d, late); got != "" {
		t.Fatalf("route through an unplugged pod is %q", got)
	}
	h.commit(t, podCfg("pplug", plugged.mac.String()))
	if got := programmed(t, d, late); got != "local" {
		t.Fatalf("route once the pod is plugged is %q, want local", got)
	}

	// The interface is configured before it exists.
	later := RouteKey{VRF: "red", Prefix: netip.MustParsePrefix("10.9.0.0/24")}
	mac := "0a:00:00:00:08:02"
	h.commit(t, podCfg("plate", mac))
	h.commit(t, staticEdit(later.Prefix.String(), "plate", false))
	if got := programmed(t, d, later); got != "" {
		t.Fatalf("route through an absent interface is %q", got)
	}
	if n, _ := h.rec.Pending(); n == 0 {
		t.Error("nothing pending while a configured pod is absent")
	}
	p := addPod(t, h.ns, "plate", 8, netip.MustParseAddr("10.1.0.8"), podMTU)
	if p.mac.String() != mac {
		t.Fatalf("pod mac %v, want %v", p.mac, mac)
	}
	waitFor(t, "the late interface's route", func() bool { return programmed(t, d, later) == "local" })

	// The interface's configuration goes, the route stays configured.
	h.commit(t, func(dev *gen.Device) error {
		delete(dev.GetInterfaces().Interface, "plate")
		return nil
	})
	if got := programmed(t, d, later); got != "" {
		t.Errorf("route through a removed interface is %q", got)
	}
}
