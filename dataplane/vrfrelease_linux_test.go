package dataplane

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// TestReusedVRFIDStartsClean: a VRF id given back and handed to another
// VRF carries nothing of the VRF that had it: no drop, NAT, policy or
// tunnel-reject counters, no NAT or policy configuration, no label, and
// no endpoint may send into the new VRF (a packet from an endpoint the
// old VRF allowed is refused until the new VRF has routes through it).
func TestReusedVRFIDStartsClean(t *testing.T) {
	e, pod3 := blueEnv(t)
	d := e.d
	inner := remoteInner(netip.MustParseAddr("10.1.0.9"), 63)
	from2 := underlayFrame(remote2, 6635, lse(2000, true, 63), inner)
	from3 := underlayFrame(remote3, 6635, lse(2000, true, 63), inner)

	// blue is used: remote2 may send into it, remote3 is refused (counted
	// in blue), and it has NAT and policy slots and counters.
	must(t, d.AllowEndpoint(remote2, "blue"))
	if ret, _ := run(t, d.progs.UnderlayIngress, from2); ret != tcRedirect {
		t.Fatalf("into blue from an allowed endpoint: return %d", ret)
	}
	expectDrop(t, e, d.progs.UnderlayIngress, from3, tcShot, "blue", unknownEndpoint, "into blue from remote3")
	id := d.VRFs()["blue"]
	n, err := possibleCPUs()
	must(t, err)
	must(t, d.maps.NatVrfs.Put(id, natVRF{Flags: natFlagSNAT, Addr: 1, PortMin: 1000, PortMax: 2000}))
	must(t, d.maps.PolVrfs.Put(id, polVRF{Tunnel: 3, Active: 1}))
	nat := make([]natStats, n)
	nat[0].Flows = 7
	must(t, d.maps.NatCounters.Put(id, nat))
	answers := make([]forwarderPolTunnelAnswers, n)
	answers[0].Sent = 5
	must(t, d.maps.PolTunnelAnswers.Put(id, answers))

	// blue goes; its pod, label and routes are removed, but not its allow
	// set (an earlier process could have left it behind).
	must(t, d.DetachInterface(pod3))
	must(t, d.DeleteLabel(2000))
	must(t, d.DeleteVRF("blue"))
	var got uint32
	k, _ := vrfKey("blue")
	if err := d.vrfIDs.Lookup(k, &got); err == nil {
		t.Errorf("blue still holds id %d in the pinned vrf ids", got)
	}

	// green is given blue's id.
	d.mu.Lock()
	d.vrfNext = id - 1 // the search for a free id starts at blue's
	d.mu.Unlock()
	must(t, d.AttachInterface(Interface{Index: pod3, VRF: "green", PeerMAC: mustMAC("0a:00:00:00:03:02")}))
	must(t, d.SetLabel(2000, LabelTarget{VRF: "green", Interface: pod3}))
	if g := d.VRFs()["green"]; g != id {
		t.Fatalf("green got id %d, want blue's %d", g, id)
	}
	if drops, err := d.Drops("green"); err != nil || drops.Total() != 0 {
		t.Errorf("green starts with drops %+v (%v), want none", drops, err)
	}
	if c, err := d.ExternalCounters("green"); err != nil || c != (ExternalCounters{}) {
		t.Errorf("green starts with external counters %+v (%v), want none", c, err)
	}
	var cfg natVRF
	must(t, d.maps.NatVrfs.Lookup(id, &cfg))
	var pol polVRF
	must(t, d.maps.PolVrfs.Lookup(id, &pol))
	if cfg != (natVRF{}) || pol != (polVRF{}) {
		t.Errorf("green starts with NAT %+v and policy %+v, want none", cfg, pol)
	}
	must(t, d.maps.PolTunnelAnswers.Lookup(id, &answers))
	if slices.ContainsFunc(answers, func(a forwarderPolTunnelAnswers) bool { return a != (forwarderPolTunnelAnswers{}) }) {
		t.Errorf("green starts with tunnel-reject counters %+v", answers)
	}
	if eps, err := d.EndpointVRFs(); err != nil || slices.Contains(eps[remote2], "green") {
		t.Errorf("endpoint vrfs %v (%v): remote2 may send into green, which has no routes through it", eps, err)
	}
	expectDrop(t, e, d.progs.UnderlayIngress, from2, tcShot, "green", unknownEndpoint, "into green from blue's endpoint")

	// Once green has routes through remote2, it may.
	must(t, d.AllowEndpoint(remote2, "green"))
	if ret, _ := run(t, d.progs.UnderlayIngress, from2); ret != tcRedirect {
		t.Errorf("into green from an allowed endpoint: return %d", ret)
	}
}

// TestVRFIDsReleasedByReconciler: VRFs added and removed through commits
// (by delta and in full, with their learnt routes withdrawn before or
// after the commit) give their ids back, so churn many times the id space
// never runs out, and a restarted daemon holds no id of a removed VRF.
func TestVRFIDsReleasedByReconciler(t *testing.T) {
	a, _, addrs := newCoreHosts(t, nil)
	label, err := a.core.Labels().VRF("red")
	must(t, err)
	nis := func(d *gen.Device) map[string]*niT { return d.NetworkInstances.NetworkInstance }
	addVRF := func(name string, full bool) {
		t.Helper()
		a.commit(t, func(d *gen.Device) error {
			c := d.NetworkInstances.GetOrCreateNetworkInstance(name).GetOrCreateConfig()
			c.Name, c.Type, c.RouteDistinguisher = ygot.String(name), gen.IsthmusTypes_NetworkInstanceType_L3VRF, ygot.String("65000:77")
			if full { // compiled across VRFs: applied in full
				c.TunnelIngressDefaultAction = gen.IsthmusAcl_AclAction_ACCEPT
			}
			return nil
		})
	}
	route := func(name string, deleted bool) {
		a.core.FIB().Update([]nos.RouteChange{{Route: nos.Route{
			RouteKey: nos.RouteKey{VRF: name, Prefix: netip.MustParsePrefix("10.77.0.0/16")},
			NextHops: []nos.NextHop{{Endpoint: addrs[1], Label: label, Encap: nos.EncapMPLSoUDP}}}, Deleted: deleted}})
	}
	// programmed waits for the dataplane to have (or not) the learnt route
	// of name (FIB changes reach it asynchronously).
	programmed := func(name string, want bool) {
		t.Helper()
		k := RouteKey{VRF: name, Prefix: netip.MustParsePrefix("10.77.0.0/16")}
		deadline := time.Now().Add(5 * time.Second)
		for {
			a.rec.mu.Lock()
			_, have := a.rec.remote[k]
			a.rec.mu.Unlock()
			if have == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("route of %s programmed %v, want %v", name, have, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	held := func(name string) bool {
		t.Helper()
		dp := a.rec.Dataplane()
		k, _ := vrfKey(name)
		var id uint32
		_, known := dp.VRFs()[name]
		return known || dp.vrfIDs.Lookup(k, &id) == nil
	}

	// A removed VRF is not held by the next process.
	addVRF("gone", false)
	route("gone", false)
	programmed("gone", true)
	route("gone", true)
	programmed("gone", false)
	a.commit(t, func(d *gen.Device) error { delete(nis(d), "gone"); return nil })
	a.cancel()
	a.start(t)
	if held("gone") {
		t.Errorf("a restarted daemon holds the id of a removed VRF")
	}

	// Two ids to spare: ten VRFs come and go.
	dp := a.rec.Dataplane()
	dp.mu.Lock()
	top := uint32(0)
	for id := range dp.vrfNames {
		top = max(top, id)
	}
	dp.vrfSpace = top + 3
	dp.mu.Unlock()
	for i := range 10 {
		name := fmt.Sprintf("churn%d", i)
		full, late := i%2 == 1, i%4 >= 2
		addVRF(name, full)
		route(name, false)
		programmed(name, true)
		if _, ok := dp.VRFs()[name]; !ok {
			t.Fatalf("%s has no id", name)
		}
		if !late {
			route(name, true)
			programmed(name, false)
		}
		a.commit(t, func(d *gen.Device) error { delete(nis(d), name); return nil })
		if late {
			if !held(name) {
				t.Errorf("%s gave back its id while a learnt route still named it", name)
			}
			route(name, true) // withdrawn after the commit
			programmed(name, false)
		}
		if held(name) {
			t.Fatalf("%s (full %v, route withdrawn late %v) still holds its id", name, full, late)
		}
	}
	if _, ok := dp.VRFs()["red"]; !ok {
		t.Error("red lost its id")
	}
}
