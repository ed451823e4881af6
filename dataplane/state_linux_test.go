package dataplane

import (
	"net/netip"
	"testing"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// TestStateOwnership: the dataplane writes a network instance's config
// mirror, forwarding and counters, and never what BGP owns (exported,
// imported); the tunnel's state carries its config mirror.
func TestStateOwnership(t *testing.T) {
	h := newSpoofHost(t)
	must(t, h.rec.PublishState())
	h.core.Read(func(_, state *gen.Device) error {
		for _, name := range []string{"red", "blue"} {
			st := nos.NetworkInstances(state)[name].GetState()
			if st.GetExported() != nil || st.GetImported() != nil {
				t.Errorf("%s: the dataplane wrote BGP's subtrees: exported %+v, imported %+v", name, st.GetExported(), st.GetImported())
			}
			if st.GetName() != name || st.GetRouteDistinguisher() == "" || st.GetType() != gen.IsthmusTypes_NetworkInstanceType_L3VRF {
				t.Errorf("%s: config mirror name %q rd %q type %v", name, st.GetName(), st.GetRouteDistinguisher(), st.GetType())
			}
			if st.GetForwarding() == nil || st.GetCounters() == nil {
				t.Errorf("%s: forwarding or counters missing", name)
			}
		}
		if ts := state.GetTunnel().GetState(); ts.GetSourceAddress() != spoofHostAddr.String() || ts.GetUnderlayInterface() != "ul" {
			t.Errorf("tunnel state mirror: source %q underlay %q", ts.GetSourceAddress(), ts.GetUnderlayInterface())
		}
		return nil
	})
}

// TestStateOfDeletedEntriesStaysGone: a publish that took its snapshot
// before a commit deleted a VRF and a pod interface writes nothing for
// them, and reports no error (the core refuses the writes; the publish
// loop must not log every refusal).
func TestStateOfDeletedEntriesStaysGone(t *testing.T) {
	h := newSpoofHost(t)
	must(t, h.rec.PublishState())
	snap, ok := h.rec.snapshot()
	if !ok {
		t.Fatal("no snapshot")
	}
	h.commit(t, func(d *gen.Device) error {
		delete(d.GetInterfaces().Interface, "pblue")
		delete(d.GetNetworkInstances().NetworkInstance, "blue")
		return nil
	})
	if err := h.rec.writeState(snap); err != nil {
		t.Fatalf("publish from a snapshot older than the commit: %v", err)
	}
	if err := h.rec.PublishState(); err != nil {
		t.Fatalf("publish: %v", err)
	}
	h.core.Read(func(_, state *gen.Device) error {
		if _, ok := nos.NetworkInstances(state)["blue"]; ok {
			t.Error("state of the deleted vrf blue is back")
		}
		if _, ok := nos.Interfaces(state)["pblue"]; ok {
			t.Error("state of the deleted interface pblue is back")
		}
		if _, ok := nos.NetworkInstances(state)["red"]; !ok {
			t.Error("state of red is gone")
		}
		return nil
	})
}

// TestEndpointStateGoesWithTheEndpoint: tunnel/endpoints is a state-only
// list; the dataplane removes an endpoint's entry once no route uses it.
func TestEndpointStateGoesWithTheEndpoint(t *testing.T) {
	h := newSpoofHost(t)
	must(t, h.rec.PublishState())
	has := func(addr string) bool {
		var ok bool
		h.core.Read(func(_, state *gen.Device) error {
			ok = state.GetTunnel().GetEndpoints().GetEndpoint(addr) != nil
			return nil
		})
		return ok
	}
	if !has(bluePeer.String()) || !has(redPeer.String()) {
		t.Fatal("endpoint state not published")
	}
	h.core.FIB().Update([]nos.RouteChange{{Route: nos.Route{RouteKey: nos.RouteKey{VRF: "blue", Prefix: netip.MustParsePrefix("10.2.0.0/24")}}, Deleted: true}})
	waitFor(t, "the route withdrawn", func() bool { return h.rec.Dataplane().Routes() == 3 })
	must(t, h.rec.PublishState())
	if has(bluePeer.String()) {
		t.Error("state of an endpoint no route uses is still there")
	}
	if !has(redPeer.String()) {
		t.Error("state of an endpoint in use is gone")
	}
}

// TestTunnelStateGoesWithTheTunnel: tunnel/state is a container no commit
// prunes; the dataplane deletes it when the tunnel is deconfigured.
func TestTunnelStateGoesWithTheTunnel(t *testing.T) {
	h := newSpoofHost(t)
	must(t, h.rec.PublishState())
	tunnelState := func() *gen.IsthmusTunnel_Tunnel_State {
		var st *gen.IsthmusTunnel_Tunnel_State
		h.core.Read(func(_, state *gen.Device) error {
			st = state.GetTunnel().GetState()
			return nil
		})
		return st
	}
	if tunnelState() == nil {
		t.Fatal("tunnel state not published")
	}
	h.commit(t, func(d *gen.Device) error {
		d.Tunnel.Config = nil
		return nil
	})
	must(t, h.rec.PublishState())
	if st := tunnelState(); st != nil {
		t.Errorf("tunnel state %+v after the tunnel was deconfigured", st)
	}
}
