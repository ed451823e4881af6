package server

import (
	"strings"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

const (
	rdRed  = "/network-instances/network-instance[name=red]/config/route-distinguisher"
	rdBlue = "/network-instances/network-instance[name=blue]/config/route-distinguisher"
	inPkts = "/interfaces/interface[name=eth0]/state/counters/in-pkts"
	operUp = "/interfaces/interface[name=eth0]/state/oper-status"
)

func TestSubscribeOnce(t *testing.T) {
	e := newSubEnv(t)
	e.setVRF(t, "red", "65000:1", "tenant red")
	e.setVRF(t, "blue", "65000:2", "tenant blue")
	e.setCounters(t, "eth0", true, 5)

	tests := []struct {
		name     string
		list     *gpb.SubscriptionList
		want     map[string]*gpb.TypedValue
		wantNone []string
	}{{
		name: "prefix with target",
		list: &gpb.SubscriptionList{
			Prefix:       &gpb.Path{Target: "isthmus", Elem: subPath(t, "/network-instances/network-instance[name=red]").Elem},
			Subscription: []*gpb.Subscription{subAt("/config", 0)},
			Encoding:     gpb.Encoding_PROTO,
		},
		want:     map[string]*gpb.TypedValue{rdRed: strVal("65000:1")},
		wantNone: []string{rdBlue},
	}, {
		name: "key wildcard",
		list: &gpb.SubscriptionList{
			Subscription: []*gpb.Subscription{subAt("/network-instances/network-instance[name=*]/config/route-distinguisher", 0)},
			Encoding:     gpb.Encoding_PROTO,
		},
		want: map[string]*gpb.TypedValue{rdRed: strVal("65000:1"), rdBlue: strVal("65000:2")},
	}, {
		name: "missing key and name wildcard, JSON_IETF",
		list: &gpb.SubscriptionList{
			Subscription: []*gpb.Subscription{subAt("/interfaces/interface/state/*", 0)},
			Encoding:     gpb.Encoding_JSON_IETF,
		},
		want: map[string]*gpb.TypedValue{inPkts: ietfVal(`"5"`), operUp: ietfVal(`"UP"`)},
	}, {
		name: "multi-level wildcard, JSON",
		list: &gpb.SubscriptionList{
			Subscription: []*gpb.Subscription{subAt("/.../route-distinguisher", 0)},
			Encoding:     gpb.Encoding_JSON,
		},
		want:     map[string]*gpb.TypedValue{rdRed: jsonVal(`"65000:1"`), rdBlue: jsonVal(`"65000:2"`)},
		wantNone: []string{inPkts},
	}, {
		name: "root, counters in JSON",
		list: &gpb.SubscriptionList{Subscription: []*gpb.Subscription{subAt("/", 0)}},
		want: map[string]*gpb.TypedValue{rdRed: jsonVal(`"65000:1"`), inPkts: jsonVal(`5`)},
	}, {
		name: "updates_only",
		list: &gpb.SubscriptionList{
			Subscription: []*gpb.Subscription{subAt("/network-instances", 0)},
			UpdatesOnly:  true,
		},
		wantNone: []string{rdRed, rdBlue},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.list.Mode = gpb.SubscriptionList_ONCE
			st := e.subscribe(t, tc.list)
			got := untilSync(t, st)
			expectEOF(t, st)
			for p, want := range tc.want {
				v, ok := got.vals[p]
				if !ok {
					t.Errorf("%s missing; got %v", p, pathKeys(got.vals))
					continue
				}
				if !proto.Equal(v, want) {
					t.Errorf("%s = %v, want %v", p, v, want)
				}
			}
			for _, p := range tc.wantNone {
				if _, ok := got.vals[p]; ok {
					t.Errorf("%s sent, want not", p)
				}
			}
			for p := range got.vals {
				if strings.HasPrefix(p, "/meta") {
					t.Errorf("cache metadata %s sent", p)
				}
			}
			for _, n := range got.notes {
				if n.GetPrefix().GetTarget() != tc.list.GetPrefix().GetTarget() {
					t.Errorf("notification target %q, want %q", n.GetPrefix().GetTarget(), tc.list.GetPrefix().GetTarget())
				}
			}
		})
	}
}

func TestSubscribePoll(t *testing.T) {
	e := newSubEnv(t)
	e.setCounters(t, "eth0", true, 1)
	st := e.subscribe(t, &gpb.SubscriptionList{
		Mode:         gpb.SubscriptionList_POLL,
		Subscription: []*gpb.Subscription{subAt("/interfaces/interface[name=eth0]/state/counters", 0)},
		Encoding:     gpb.Encoding_PROTO,
	})
	if got := untilSync(t, st); !proto.Equal(got.vals[inPkts], uintVal(1)) {
		t.Fatalf("initial in-pkts = %v", got.vals[inPkts])
	}
	for _, pkts := range []uint64{2, 3} {
		e.setCounters(t, "eth0", true, pkts)
		if err := st.Send(&gpb.SubscribeRequest{Request: &gpb.SubscribeRequest_Poll{Poll: &gpb.Poll{}}}); err != nil {
			t.Fatal(err)
		}
		got := untilSync(t, st)
		if !proto.Equal(got.vals[inPkts], uintVal(pkts)) {
			t.Fatalf("poll: in-pkts = %v, want %d", got.vals[inPkts], pkts)
		}
		if len(got.vals) != 6 {
			t.Fatalf("poll: %d counters, want 6: %v", len(got.vals), pathKeys(got.vals))
		}
	}
	// Closing the client's side ends a POLL subscription.
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	expectEOF(t, st)
}

func TestSubscribeRejects(t *testing.T) {
	e := newSubEnv(t)
	stream := gpb.SubscriptionList_STREAM
	tests := []struct {
		name string
		list *gpb.SubscriptionList
		code codes.Code
		msg  string // the message contains it
	}{{
		name: "unknown element",
		list: &gpb.SubscriptionList{Mode: stream, Subscription: []*gpb.Subscription{subAt("/interfaces/interface/bogus", 0)}},
		code: codes.InvalidArgument, msg: "/interfaces/interface/bogus",
	}, {
		name: "unknown key",
		list: &gpb.SubscriptionList{Mode: stream, Subscription: []*gpb.Subscription{subAt("/interfaces/interface[ifname=x]", 0)}},
		code: codes.InvalidArgument, msg: "/interfaces/interface[ifname=x]",
	}, {
		name: "sample_interval on ON_CHANGE",
		list: &gpb.SubscriptionList{Mode: stream, Subscription: []*gpb.Subscription{
			{Path: subPath(t, "/interfaces"), Mode: gpb.SubscriptionMode_ON_CHANGE, SampleInterval: 1e9},
		}},
		code: codes.InvalidArgument, msg: "/interfaces: sample_interval",
	}, {
		name: "suppress_redundant on ON_CHANGE",
		list: &gpb.SubscriptionList{Mode: stream, Subscription: []*gpb.Subscription{
			{Path: subPath(t, "/tunnel"), Mode: gpb.SubscriptionMode_ON_CHANGE, SuppressRedundant: true},
		}},
		code: codes.InvalidArgument, msg: "/tunnel: sample_interval and suppress_redundant",
	}, {
		name: "sample_interval too small",
		list: &gpb.SubscriptionList{Mode: stream, Subscription: []*gpb.Subscription{
			{Path: subPath(t, "/interfaces/interface[name=eth0]/state/counters"), Mode: gpb.SubscriptionMode_SAMPLE, SampleInterval: 1e6},
		}},
		code: codes.InvalidArgument, msg: "/interfaces/interface[name=eth0]/state/counters: sample_interval 1ms is below the minimum",
	}, {
		name: "heartbeat_interval too small",
		list: &gpb.SubscriptionList{Mode: stream, Subscription: []*gpb.Subscription{
			{Path: subPath(t, "/interfaces"), Mode: gpb.SubscriptionMode_SAMPLE, SuppressRedundant: true, HeartbeatInterval: 1},
		}},
		code: codes.InvalidArgument, msg: "/interfaces: heartbeat_interval",
	}, {
		name: "sample_interval on ONCE",
		list: &gpb.SubscriptionList{Mode: gpb.SubscriptionList_ONCE, Subscription: []*gpb.Subscription{
			{Path: subPath(t, "/acl"), Mode: gpb.SubscriptionMode_SAMPLE, SampleInterval: 1e9},
		}},
		code: codes.InvalidArgument, msg: "/acl: sample_interval, heartbeat_interval and suppress_redundant apply to STREAM",
	}, {
		name: "unknown subscription mode",
		list: &gpb.SubscriptionList{Mode: stream, Subscription: []*gpb.Subscription{{Path: subPath(t, "/acl"), Mode: 7}}},
		code: codes.InvalidArgument, msg: "/acl: unknown subscription mode",
	}, {
		name: "unknown origin",
		list: &gpb.SubscriptionList{Mode: stream, Subscription: []*gpb.Subscription{
			{Path: &gpb.Path{Origin: "openconfig", Elem: subPath(t, "/interfaces").Elem}},
		}},
		code: codes.InvalidArgument, msg: "/interfaces",
	}, {
		name: "unknown target",
		list: &gpb.SubscriptionList{Mode: stream, Prefix: &gpb.Path{Target: "elsewhere"}, Subscription: []*gpb.Subscription{subAt("/interfaces", 0)}},
		code: codes.NotFound, msg: "elsewhere",
	}, {
		name: "unsupported encoding",
		list: &gpb.SubscriptionList{Mode: stream, Encoding: gpb.Encoding_ASCII, Subscription: []*gpb.Subscription{subAt("/interfaces", 0)}},
		code: codes.Unimplemented, msg: "ASCII",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := e.subscribe(t, tc.list)
			_, err := st.Recv()
			s, _ := status.FromError(err)
			if s.Code() != tc.code || !strings.Contains(s.Message(), tc.msg) {
				t.Fatalf("error = %v; want %s containing %q", err, tc.code, tc.msg)
			}
		})
	}
	t.Run("poll first", func(t *testing.T) {
		st, err := e.client.Subscribe(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&gpb.SubscribeRequest{Request: &gpb.SubscribeRequest_Poll{Poll: &gpb.Poll{}}}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("error = %v, want InvalidArgument", err)
		}
	})
}

func pathKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func strVal(s string) *gpb.TypedValue {
	return &gpb.TypedValue{Value: &gpb.TypedValue_StringVal{StringVal: s}}
}
func uintVal(n uint64) *gpb.TypedValue {
	return &gpb.TypedValue{Value: &gpb.TypedValue_UintVal{UintVal: n}}
}
func jsonVal(s string) *gpb.TypedValue {
	return &gpb.TypedValue{Value: &gpb.TypedValue_JsonVal{JsonVal: []byte(s)}}
}
func ietfVal(s string) *gpb.TypedValue {
	return &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: []byte(s)}}
}
