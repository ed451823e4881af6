package server

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
)

// TestWireEncoding checks the hand-written encoder against the generic
// marshaller: the bytes must decode to the same SubscribeResponse.
func TestWireEncoding(t *testing.T) {
	deep := &gpb.Path{}
	for i := range maxSizedElems + 4 {
		deep.Elem = append(deep.Elem, &gpb.PathElem{Name: "e", Key: map[string]string{"i": strings.Repeat("x", i*10)}})
	}
	paths := []*gpb.Path{
		{},
		{Elem: []*gpb.PathElem{{Name: "interfaces"}, {Name: "interface", Key: map[string]string{"name": "veth1"}}, {Name: "state"}}},
		{Origin: "isthmus", Target: "t", Elem: []*gpb.PathElem{{Name: "a", Key: map[string]string{"k1": "v1", "k2": "", "k3": "ünï"}}}},
		{Element: []string{"old", "style"}},
		deep,
	}
	vals := []*gpb.TypedValue{
		{Value: &gpb.TypedValue_StringVal{StringVal: "65000:1"}},
		{Value: &gpb.TypedValue_StringVal{}},
		{Value: &gpb.TypedValue_UintVal{UintVal: 1 << 63}},
		{Value: &gpb.TypedValue_UintVal{}},
		{Value: &gpb.TypedValue_IntVal{IntVal: -5}},
		{Value: &gpb.TypedValue_BoolVal{BoolVal: true}},
		{Value: &gpb.TypedValue_BoolVal{}},
		{Value: &gpb.TypedValue_DoubleVal{DoubleVal: 2.5}},
		{Value: &gpb.TypedValue_BytesVal{BytesVal: []byte{0, 1}}},
		{Value: &gpb.TypedValue_JsonVal{JsonVal: []byte(`"x"`)}},
		{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: []byte(`"5"`)}},
		{Value: &gpb.TypedValue_LeaflistVal{LeaflistVal: &gpb.ScalarArray{Element: []*gpb.TypedValue{{Value: &gpb.TypedValue_StringVal{StringVal: "a"}}}}}},
		{Value: &gpb.TypedValue_DecimalVal{DecimalVal: &gpb.Decimal64{Digits: 314, Precision: 2}}},
	}
	for _, target := range []string{"", "isthmus"} {
		want := &gpb.Notification{Timestamp: 1234567890123, Prefix: &gpb.Path{Target: target}}
		if target == "" {
			want.Prefix = nil
		}
		var items []byte
		for _, p := range paths {
			for _, v := range vals {
				var err error
				if items, err = appendUpdate(items, p, v); err != nil {
					t.Fatal(err)
				}
				want.Update = append(want.Update, &gpb.Update{Path: p, Val: v})
			}
			items = appendDelete(items, p)
			want.Delete = append(want.Delete, p)
		}
		b, err := proto.Marshal(wireResponse(want.Timestamp, target, items))
		if err != nil {
			t.Fatal(err)
		}
		got := &gpb.SubscribeResponse{}
		if err := proto.Unmarshal(b, got); err != nil {
			t.Fatal(err)
		}
		// Decoded by field, the deletes come after the updates either way.
		wantResp := &gpb.SubscribeResponse{Response: &gpb.SubscribeResponse_Update{Update: want}}
		if d := cmp.Diff(wantResp, got, protocmp.Transform()); d != "" {
			t.Errorf("target %q: decoded response differs (-want +got):\n%s", target, d)
		}
	}
}
