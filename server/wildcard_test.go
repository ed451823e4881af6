package server

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/gnmi/value"
	"github.com/openconfig/ygot/ygot"
	"google.golang.org/protobuf/proto"

	"github.com/isthmus-net/isthmus/gen"
)

// Paths of the state that wildcardEnv writes.
const (
	nbr2        = bgp + "/neighbors/neighbor[neighbor-address=192.0.2.2]"
	nbr3        = bgp + "/neighbors/neighbor[neighbor-address=192.0.2.3]"
	vpnv4       = "/afi-safis/afi-safi[afi-safi-name=L3VPN_IPV4_UNICAST]"
	redNoRoute  = red + "/state/counters/no-route"
	blueNoRoute = blue + "/state/counters/no-route"
)

// wildcardEnv commits the base configuration plus a second neighbor, and
// writes state as reconcilers would, unevenly: red has counters and blue
// only forwarding state; neighbor .2 has session and prefix state, .3
// only session state. A wildcard must skip the entries that lack the
// rest of its path rather than fail on them.
func wildcardEnv(t *testing.T) *testEnv {
	t.Helper()
	e := newTestEnv(t)
	baseConfig(t, e)
	if _, err := e.cli.Set(admin(), &gpb.SetRequest{Update: []*gpb.Update{
		upd(t, nbr3+"/config", ietf(`{"neighbor-address":"192.0.2.3","peer-as":65003}`)),
	}}); err != nil {
		t.Fatal(err)
	}
	type ni = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_State
	type nbrState = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Protocols_Protocol_Bgp_Neighbors_Neighbor_State
	type afiState = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Protocols_Protocol_Bgp_Neighbors_Neighbor_AfiSafis_AfiSafi_State
	type prefixes = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Protocols_Protocol_Bgp_Neighbors_Neighbor_AfiSafis_AfiSafi_State_Prefixes
	for path, st := range map[string]ygot.GoStruct{
		red + "/state":          &ni{Counters: &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_State_Counters{NoRoute: ygot.Uint64(7)}},
		blue + "/state":         &ni{Forwarding: &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_State_Forwarding{Labels: []uint32{200}}},
		nbr2 + "/state":         &nbrState{SessionState: gen.IsthmusTypes_SessionState_ESTABLISHED},
		nbr3 + "/state":         &nbrState{SessionState: gen.IsthmusTypes_SessionState_ACTIVE},
		nbr2 + vpnv4 + "/state": &afiState{AfiSafiName: gen.IsthmusTypes_AfiSafiType_L3VPN_IPV4_UNICAST, Prefixes: &prefixes{Received: ygot.Uint32(5)}},
	} {
		if err := e.core.UpdateState(path, st); err != nil {
			t.Fatalf("state %s: %v", path, err)
		}
	}
	return e
}

// wildcardCases are wildcard paths at several depths and what each
// returns: exactly the leaves of the named forms.
var wildcardCases = []struct {
	path string
	want map[string]any
}{
	{"/network-instances/network-instance[name=*]/state/counters/no-route", map[string]any{redNoRoute: uint64(7)}},
	{"/network-instances/network-instance/state/counters", map[string]any{redNoRoute: uint64(7)}},
	{"/network-instances/network-instance[name=*]/state/*/no-route", map[string]any{redNoRoute: uint64(7)}},
	{"/network-instances/.../no-route", map[string]any{redNoRoute: uint64(7)}},
	{"/.../counters/no-route", map[string]any{redNoRoute: uint64(7)}},
	{"/network-instances/network-instance[name=*]/protocols/protocol[identifier=*][name=*]/bgp/neighbors/neighbor[neighbor-address=*]" + vpnv4 + "/state/prefixes/received",
		map[string]any{nbr2 + vpnv4 + "/state/prefixes/received": uint64(5)}},
	{"/network-instances/network-instance[name=default]/protocols/protocol[identifier=BGP][name=*]/bgp/neighbors/neighbor/afi-safis/afi-safi[afi-safi-name=*]/state/prefixes",
		map[string]any{nbr2 + vpnv4 + "/state/prefixes/received": uint64(5)}},
	{"/network-instances/network-instance/protocols/protocol/bgp/neighbors/neighbor[neighbor-address=*]/state/session-state",
		map[string]any{nbr2 + "/state/session-state": "ESTABLISHED", nbr3 + "/state/session-state": "ACTIVE"}},
	{"/.../session-state", map[string]any{nbr2 + "/state/session-state": "ESTABLISHED", nbr3 + "/state/session-state": "ACTIVE"}},
}

func TestGetWildcardsAtEveryDepth(t *testing.T) {
	e := wildcardEnv(t)
	for _, tc := range wildcardCases {
		for _, typ := range []gpb.GetRequest_DataType{gpb.GetRequest_STATE, gpb.GetRequest_ALL} {
			// Lists are maps: repeat so that every order of visiting the
			// entries is likely to be met.
			for range 5 {
				got := leafMap(t, getOne(t, e, typ, gpb.Encoding_PROTO, tc.path))
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Fatalf("get %s %s (-want +got):\n%s", typ, tc.path, diff)
				}
			}
		}
	}
}

// subscribeLeaves runs a ONCE subscription of path and returns the leaves
// it sent as scalars.
func subscribeLeaves(t *testing.T, e *testEnv, mode gpb.SubscriptionList_Mode, path string) (gpb.GNMI_SubscribeClient, map[string]any) {
	t.Helper()
	st, err := e.cli.Subscribe(viewer())
	if err != nil {
		t.Fatal(err)
	}
	list := &gpb.SubscriptionList{Mode: mode, Encoding: gpb.Encoding_PROTO, Subscription: []*gpb.Subscription{subAt(path, gpb.SubscriptionMode_ON_CHANGE)}}
	if err := st.Send(&gpb.SubscribeRequest{Request: &gpb.SubscribeRequest_Subscribe{Subscribe: list}}); err != nil {
		t.Fatal(err)
	}
	return st, scalars(t, untilSync(t, st).vals)
}

func scalars(t *testing.T, vals map[string]*gpb.TypedValue) map[string]any {
	t.Helper()
	out := map[string]any{}
	for p, v := range vals {
		s, err := value.ToScalar(v)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		out[p] = s
	}
	return out
}

func TestSubscribeWildcardsAtEveryDepth(t *testing.T) {
	e := wildcardEnv(t)
	for _, tc := range wildcardCases {
		st, got := subscribeLeaves(t, e, gpb.SubscriptionList_ONCE, tc.path)
		expectEOF(t, st)
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ONCE %s (-want +got):\n%s", tc.path, diff)
		}
	}

	// STREAM: the initial sync, then a change of an entry that had
	// nothing under the wildcard's path.
	st, got := subscribeLeaves(t, e, gpb.SubscriptionList_STREAM, "/network-instances/network-instance[name=*]/state/counters")
	if diff := cmp.Diff(map[string]any{redNoRoute: uint64(7)}, got); diff != "" {
		t.Errorf("STREAM initial sync (-want +got):\n%s", diff)
	}
	if err := e.core.UpdateState(blue+"/state", &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_State{
		Counters: &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_State_Counters{NoRoute: ygot.Uint64(3)},
	}); err != nil {
		t.Fatal(err)
	}
	recvUntil(t, st, func(r *received, _ *gpb.Notification) bool { return proto.Equal(r.vals[blueNoRoute], uintVal(3)) })
	st2, _ := subscribeLeaves(t, e, gpb.SubscriptionList_STREAM, "/network-instances/.../neighbor[neighbor-address=*]/state/session-state")
	if err := e.core.UpdateState(nbr3+"/state", &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Protocols_Protocol_Bgp_Neighbors_Neighbor_State{
		SessionState: gen.IsthmusTypes_SessionState_ESTABLISHED,
	}); err != nil {
		t.Fatal(err)
	}
	recvUntil(t, st2, func(r *received, _ *gpb.Notification) bool {
		return proto.Equal(r.vals[nbr3+"/state/session-state"], strVal("ESTABLISHED"))
	})
}
