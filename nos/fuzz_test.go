package nos

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
)

// fuzzBase is the configuration every fuzzed Set starts from: two VRFs,
// a pod, an underlay, BGP with a neighbor, an ACL set and the tunnel.
var fuzzBase = []struct{ path, json string }{
	{redPath, redVRF},
	{"/network-instances/network-instance[name=blue]", `{"config":{"name":"blue","type":"L3VRF","route-distinguisher":"65000:2"},
	  "address-pools":{"address-pool":[{"prefix":"10.2.0.0/24","config":{"prefix":"10.2.0.0/24"}}]}}`},
	{"/interfaces/interface[name=pod1]", `{"config":{"name":"pod1","type":"POD","network-instance":"red","ipv4-address":"10.1.0.5/32"}}`},
	{"/interfaces/interface[name=eth0]", `{"config":{"name":"eth0","type":"UNDERLAY"}}`},
	{"/network-instances/network-instance[name=default]", `{"config":{"name":"default","type":"DEFAULT"},
	  "protocols":{"protocol":[{"identifier":"BGP","name":"bgp","config":{"identifier":"BGP","name":"bgp"},
	    "bgp":{"global":{"config":{"as":65000,"router-id":"192.0.2.1"}},
	      "neighbors":{"neighbor":[{"neighbor-address":"192.0.2.2","config":{"neighbor-address":"192.0.2.2","peer-as":65000}}]}}}]}}`},
	{"/acl/acl-sets/acl-set[name=web]", `{"config":{"name":"web"},"acl-entries":{"acl-entry":[{"sequence-id":10,"config":{"sequence-id":10,"source-address":"10.0.0.0/24","action":"ACCEPT"}}]}}`},
	{"/tunnel/config", `{"underlay-interface":"eth0","source-address":"192.0.2.1"}`},
}

// fuzzValue builds the value of a fuzzed Set: kind picks the encoding.
func fuzzValue(kind uint8, val []byte) *gpb.TypedValue {
	word := func() uint64 {
		var b [8]byte
		copy(b[:], val)
		return binary.BigEndian.Uint64(b[:])
	}
	switch kind % 8 {
	case 0:
		return &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: val}}
	case 1:
		return &gpb.TypedValue{Value: &gpb.TypedValue_JsonVal{JsonVal: val}}
	case 2:
		return &gpb.TypedValue{Value: &gpb.TypedValue_StringVal{StringVal: string(val)}}
	case 3:
		return &gpb.TypedValue{Value: &gpb.TypedValue_UintVal{UintVal: word()}}
	case 4:
		return &gpb.TypedValue{Value: &gpb.TypedValue_IntVal{IntVal: int64(word())}}
	case 5:
		return &gpb.TypedValue{Value: &gpb.TypedValue_DoubleVal{DoubleVal: math.Float64frombits(word())}}
	case 6:
		return &gpb.TypedValue{Value: &gpb.TypedValue_BoolVal{BoolVal: len(val) > 0 && val[0]&1 == 1}}
	default:
		return &gpb.TypedValue{Value: &gpb.TypedValue_LeaflistVal{LeaflistVal: &gpb.ScalarArray{Element: []*gpb.TypedValue{
			{Value: &gpb.TypedValue_StringVal{StringVal: string(val)}}, {Value: &gpb.TypedValue_UintVal{UintVal: word()}},
		}}}}
	}
}

// fuzzPath parses a path in gNMI string form; what does not parse
// becomes one element named by the whole string, which the core must
// refuse on its own.
func fuzzPath(s string) *gpb.Path {
	p, err := ygot.StringToStructuredPath(s)
	if err != nil {
		return &gpb.Path{Elem: []*gpb.PathElem{{Name: s}}}
	}
	return p
}

// FuzzSet sends one gNMI Set (an optional delete, then a delete, replace
// or update of a path with a value in any encoding) to a real core that
// holds fuzzBase. A Set never panics and is all or nothing: when it fails
// the running configuration and the revision are unchanged, byte for
// byte; when it succeeds the stored revision decodes to exactly the
// running configuration, which passes validation as a whole. Each input
// starts from fuzzBase, so a failure reproduces from its input alone.
func FuzzSet(f *testing.F) {
	f.Add(uint8(2), "/network-instances/network-instance[name=red]/config/description", uint8(0), []byte(`"tenant red"`), "")
	f.Add(uint8(2), "/interfaces/interface[name=pod1]/config/mtu", uint8(0), []byte(`1500.5`), "")
	f.Add(uint8(1), "/network-instances/network-instance[name=red]", uint8(0), []byte(`{"config":{"name":"red"},"state":{}}`), "")
	f.Add(uint8(0), "/network-instances/network-instance[name=green]", uint8(0), []byte(nil), "/interfaces/interface[name=pod1]")

	st, err := OpenStore(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	st.DB().NoSync = true // the store's durability is not under test here
	c, err := New(st, WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		f.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Start(ctx); err != nil {
		f.Fatal(err)
	}
	base := &gpb.SetRequest{}
	for _, b := range fuzzBase {
		base.Update = append(base.Update, jsonUpdate(f, b.path, b.json))
	}
	if _, err := c.Set(ctx, "fuzz", base); err != nil {
		f.Fatalf("base configuration: %v", err)
	}
	baseCfg := c.Config()
	baseJSON, err := encodeConfig(baseCfg)
	if err != nil {
		f.Fatal(err)
	}

	var last string // the previous input and what became of it
	f.Fuzz(func(t *testing.T, op uint8, path string, kind uint8, val []byte, before string) {
		if got, _ := encodeConfig(c.Config()); string(got) != string(baseJSON) {
			t.Fatalf("the previous input (%s) left the configuration changed:\n%s", last, got)
		}
		last = fmt.Sprintf("op %d path %q kind %d value %q after delete %q", op, path, kind, val, before)
		req := &gpb.SetRequest{}
		if before != "" {
			req.Delete = append(req.Delete, fuzzPath(before))
		}
		p := fuzzPath(path)
		switch op % 3 {
		case 0:
			req.Delete = append(req.Delete, p)
		case 1:
			req.Replace = []*gpb.Update{{Path: p, Val: fuzzValue(kind, val)}}
		default:
			req.Update = []*gpb.Update{{Path: p, Val: fuzzValue(kind, val)}}
		}
		rev := c.Revision()
		newRev, err := c.Set(ctx, "fuzz", req)
		last += fmt.Sprintf(": revision %d -> %d, %v", rev, newRev, err)
		got, eerr := encodeConfig(c.Config())
		if eerr != nil {
			t.Fatalf("encode running configuration: %v", eerr)
		}
		if err != nil {
			if string(got) != string(baseJSON) || c.Revision() != rev {
				t.Fatalf("a failed Set (%v) changed the configuration:\n%s\nwant\n%s", err, got, baseJSON)
			}
			return
		}
		if newRev == rev {
			if string(got) != string(baseJSON) {
				t.Fatalf("a Set that made no revision changed the configuration:\n%s", got)
			}
			return
		}
		// Back to the base for the next input, whatever this one finds.
		defer func() {
			if _, err := c.Commit(ctx, "fuzz", func(cand *gen.Device) error {
				*cand = *mustCopy(baseCfg)
				return nil
			}); err != nil {
				t.Fatalf("restore the base configuration: %v", err)
			}
		}()
		head, herr := c.store.head()
		if herr != nil {
			t.Fatal(herr)
		}
		stored, derr := decodeConfig(head.Config)
		if derr != nil {
			t.Fatalf("the stored revision does not decode: %v", derr)
		}
		again, _ := encodeConfig(stored)
		if string(again) != string(got) {
			t.Fatalf("stored revision differs from running:\n%s\nrunning\n%s", again, got)
		}
		if verr := c.validate(&gen.Device{}, stored, computeDelta(&gen.Device{}, stored)); verr != nil {
			t.Fatalf("the committed configuration does not validate when read back: %v", verr)
		}
	})
}
