package server

import (
	"context"
	"encoding/json"
	"slices"
	"sort"
	"strings"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/gnmi/proto/gnmi_ext"
	"github.com/openconfig/goyang/pkg/yang"
	"github.com/openconfig/ygot/ygot"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/isthmus-net/isthmus/gen"
)

// depthExt is the Depth extension at level.
func depthExt(level uint32) []*gnmi_ext.Extension {
	return []*gnmi_ext.Extension{{Ext: &gnmi_ext.Extension_Depth{Depth: &gnmi_ext.Depth{Level: level}}}}
}

// setDepthVRF commits VRF name with an address pool and writes state for
// it through the core: the mirrored route distinguisher at level 2 below
// the VRF, counters and exported routes at level 3. Below the pool's
// entry (level 3) its config is at level 4.
func (e *subEnv) setDepthVRF(tb testing.TB, name, rd string, noRoute uint64) {
	tb.Helper()
	js := `{"config":{"name":"` + name + `","type":"L3VRF","description":"tenant ` + name + `","route-distinguisher":"` + rd + `"},
	  "address-pools":{"address-pool":[{"prefix":"10.9.0.0/24","config":{"prefix":"10.9.0.0/24"}}]}}`
	if _, err := e.core.Set(context.Background(), "test", &gpb.SetRequest{Update: []*gpb.Update{{
		Path: subPath(tb, vrfPath(name)),
		Val:  &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: []byte(js)}},
	}}}); err != nil {
		tb.Fatal(err)
	}
	st := &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_State{
		RouteDistinguisher: ygot.String(rd),
		Counters: &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_State_Counters{
			NoRoute: ygot.Uint64(noRoute), TtlExpired: ygot.Uint64(0),
		},
		Exported: &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_State_Exported{
			Routes: ygot.Uint32(3), Labels: []uint32{100},
		},
	}
	if err := e.core.UpdateState(vrfPath(name)+"/state", st); err != nil {
		tb.Fatal(err)
	}
}

// relLeaves renders leaf paths relative to the base path, with list keys
// and module names dropped: "state/counters/no-route".
func relLeaves(tb testing.TB, base string, paths []string) []string {
	tb.Helper()
	b := subPath(tb, base)
	var out []string
	for _, s := range paths {
		p := subPath(tb, s)
		if len(p.GetElem()) < len(b.GetElem()) {
			tb.Fatalf("%s is not below %s", s, base)
		}
		var names []string
		for _, e := range p.GetElem()[len(b.GetElem()):] {
			names = append(names, e.GetName())
		}
		out = append(out, strings.Join(names, "/"))
	}
	return sortedUnique(out)
}

// jsonLeaves renders the leaves of a JSON or JSON_IETF subtree whose
// schema node is schema like relLeaves.
func jsonLeaves(tb testing.TB, raw []byte, schema *yang.Entry) []string {
	tb.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		tb.Fatalf("not JSON: %v\n%s", err, raw)
	}
	var out []string
	var walk func(v any, e *yang.Entry, at string)
	walk = func(v any, e *yang.Entry, at string) {
		m, ok := v.(map[string]any)
		if !ok {
			out = append(out, at) // the path names a leaf
			return
		}
		for k, c := range m {
			if _, name, ok := strings.Cut(k, ":"); ok {
				k = name
			}
			child := e.Dir[k]
			if child == nil {
				tb.Fatalf("member %q is not in the schema under %s", k, e.Name)
			}
			if at != "" {
				k = at + "/" + k
			}
			switch entries := c.(type) {
			case []any:
				if !child.IsList() {
					out = append(out, k) // a leaf-list
					continue
				}
				for _, entry := range entries {
					walk(entry, child, k)
				}
			case map[string]any:
				if !child.IsList() {
					walk(entries, child, k)
					continue
				}
				for _, entry := range entries { // JSON: entries by key
					walk(entry, child, k)
				}
			default:
				out = append(out, k)
			}
		}
	}
	walk(v, schema, "")
	return sortedUnique(out)
}

func sortedUnique(s []string) []string {
	sort.Strings(s)
	return slices.Compact(s)
}

// upTo returns the leaves of all that are at most level deep.
func upTo(all []string, level int) []string {
	var out []string
	for _, l := range all {
		if strings.Count(l, "/")+1 <= level {
			out = append(out, l)
		}
	}
	return out
}

// getLeaves runs a Get of path with depth level and returns the leaves
// relative to base.
func (e *subEnv) getLeaves(tb testing.TB, path, base string, enc gpb.Encoding, level uint32) []string {
	tb.Helper()
	req := &gpb.GetRequest{Path: []*gpb.Path{subPath(tb, path)}, Encoding: enc}
	if level > 0 {
		req.Extension = depthExt(level)
	}
	resp, err := e.client.Get(context.Background(), req)
	if err != nil {
		tb.Fatalf("get %s depth %d: %v", path, level, err)
	}
	var out []string
	for _, n := range resp.GetNotification() {
		for _, u := range n.GetUpdate() {
			if enc == gpb.Encoding_PROTO {
				out = append(out, pathString(u.GetPath()))
				continue
			}
			rel := relLeaves(tb, base, []string{pathString(u.GetPath())})[0]
			raw := u.GetVal().GetJsonIetfVal()
			if enc == gpb.Encoding_JSON {
				raw = u.GetVal().GetJsonVal()
			}
			for _, l := range jsonLeaves(tb, raw, schemaLeaf(e.core.SchemaRoot(), u.GetPath())) {
				out = append(out, strings.TrimPrefix(rel+"/"+l, "/"))
			}
		}
	}
	if enc == gpb.Encoding_PROTO {
		return relLeaves(tb, base, out)
	}
	return sortedUnique(out)
}

// onceLeaves runs a ONCE subscription to path with depth level and
// returns the leaves relative to base.
func (e *subEnv) onceLeaves(tb testing.TB, path, base string, level uint32) []string {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := e.client.Subscribe(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	req := &gpb.SubscribeRequest{Request: &gpb.SubscribeRequest_Subscribe{Subscribe: &gpb.SubscriptionList{
		Mode: gpb.SubscriptionList_ONCE, Encoding: gpb.Encoding_PROTO,
		Subscription: []*gpb.Subscription{subAt(path, 0)},
	}}}
	if level > 0 {
		req.Extension = depthExt(level)
	}
	if err := st.Send(req); err != nil {
		tb.Fatal(err)
	}
	got := untilSync(tb, st)
	expectEOF(tb, st)
	return relLeaves(tb, base, pathKeys(got.vals))
}

func TestDepthVRFSubtree(t *testing.T) {
	e := newSubEnv(t)
	e.setDepthVRF(t, "red", "65000:1", 7)
	red := vrfPath("red")

	all := e.getLeaves(t, red, red, gpb.Encoding_PROTO, 0)
	for _, want := range []string{"name", "config/route-distinguisher", "state/route-distinguisher", "state/counters/no-route",
		"state/exported/labels", "address-pools/address-pool/prefix", "address-pools/address-pool/config/prefix"} {
		if !slices.Contains(all, want) {
			t.Fatalf("the whole VRF lacks %s: %v", want, all)
		}
	}
	// The levels the specification's examples name, spelled out.
	spelled := map[uint32]struct{ has, lacks []string }{
		1: {has: []string{"name"}, lacks: []string{"config/name", "state/route-distinguisher"}},
		2: {has: []string{"name", "config/route-distinguisher", "config/description", "state/route-distinguisher"},
			lacks: []string{"state/counters/no-route", "state/exported/routes", "address-pools/address-pool/prefix"}},
		3: {has: []string{"state/counters/no-route", "state/exported/routes", "state/exported/labels", "address-pools/address-pool/prefix"},
			lacks: []string{"address-pools/address-pool/config/prefix"}},
	}
	for _, level := range []uint32{1, 2, 3, 4, 9} {
		want := upTo(all, int(level))
		if level == 1 && !slices.Equal(want, []string{"name"}) {
			t.Fatalf("depth 1 of the VRF: %v", want)
		}
		for _, enc := range []gpb.Encoding{gpb.Encoding_PROTO, gpb.Encoding_JSON_IETF, gpb.Encoding_JSON} {
			if got := e.getLeaves(t, red, red, enc, level); !slices.Equal(got, want) {
				t.Errorf("get depth %d %s:\n got %v\nwant %v", level, enc, got, want)
			}
		}
		if got := e.onceLeaves(t, red, red, level); !slices.Equal(got, want) {
			t.Errorf("subscribe once depth %d:\n got %v\nwant %v", level, got, want)
		}
		for _, l := range spelled[level].has {
			if !slices.Contains(want, l) {
				t.Errorf("depth %d lacks %s", level, l)
			}
		}
		for _, l := range spelled[level].lacks {
			if slices.Contains(want, l) {
				t.Errorf("depth %d has %s", level, l)
			}
		}
	}
	if got := e.getLeaves(t, red, red, gpb.Encoding_JSON_IETF, 0); !slices.Equal(got, all) {
		t.Errorf("get without depth in JSON_IETF:\n got %v\nwant %v", got, all)
	}
	// A path naming a leaf returns it at any depth.
	rd := red + "/state/route-distinguisher"
	if got := e.getLeaves(t, rd, rd, gpb.Encoding_JSON_IETF, 1); !slices.Equal(got, []string{""}) {
		t.Errorf("get of a leaf at depth 1: %v", got)
	}
}

func TestDepthWildcards(t *testing.T) {
	e := newSubEnv(t)
	e.setDepthVRF(t, "red", "65000:1", 7)
	e.setDepthVRF(t, "blue", "65000:2", 8)
	e.setCounters(t, "eth0", true, 5)
	eth0 := "/interfaces/interface[name=eth0]"
	// Each path's matches have base elements; depth counts from there.
	tests := []struct {
		path       string
		level      uint32
		base       int
		has, lacks []string // full paths
	}{{
		path: "/network-instances/network-instance[name=*]", level: 1, base: 2,
		has:   []string{vrfPath("blue") + "/name", vrfPath("red") + "/name"},
		lacks: []string{vrfPath("red") + "/config/name"},
	}, {
		path: "/network-instances/network-instance/state", level: 1, base: 3,
		has:   []string{vrfPath("blue") + "/state/route-distinguisher", vrfPath("red") + "/state/route-distinguisher"},
		lacks: []string{vrfPath("red") + "/state/counters/no-route"},
	}, {
		// "*" names each child; a leaf child comes at any depth.
		path: "/network-instances/network-instance[name=red]/*", level: 1, base: 3,
		has:   []string{vrfPath("red") + "/name", vrfPath("red") + "/config/description", vrfPath("red") + "/state/route-distinguisher"},
		lacks: []string{vrfPath("red") + "/state/counters/no-route", vrfPath("red") + "/address-pools/address-pool[prefix=10.9.0.0/24]/prefix"},
	}, {
		// "..." reaches each counters container; depth counts from there.
		path: "/.../counters", level: 1, base: 4,
		has: []string{eth0 + "/state/counters/in-pkts", eth0 + "/state/counters/out-drops",
			vrfPath("blue") + "/state/counters/no-route", vrfPath("red") + "/state/counters/ttl-expired"},
	}, {
		// A trailing "..." is the subtree of what comes before it.
		path: "/interfaces/...", level: 2, base: 1,
		has:   []string{eth0 + "/name"},
		lacks: []string{eth0 + "/config/name", eth0 + "/state/counters/in-pkts"},
	}}
	for _, tc := range tests {
		var want []string
		for _, p := range e.getFull(t, tc.path, 0) {
			if within(tc.level, tc.base, len(mustParse(p).GetElem())) {
				want = append(want, p)
			}
		}
		for _, p := range tc.has {
			if !slices.Contains(want, p) {
				t.Errorf("%s depth %d: want lacks %s", tc.path, tc.level, p)
			}
		}
		for _, p := range tc.lacks {
			if slices.Contains(want, p) {
				t.Errorf("%s depth %d: want has %s", tc.path, tc.level, p)
			}
		}
		if got := e.getFull(t, tc.path, tc.level); !slices.Equal(got, want) {
			t.Errorf("get %s depth %d:\n got %v\nwant %v", tc.path, tc.level, got, want)
		}
		if got := e.onceLeaves(t, tc.path, "/", tc.level); !slices.Equal(got, relAll(want)) {
			t.Errorf("subscribe %s depth %d:\n got %v\nwant %v", tc.path, tc.level, got, relAll(want))
		}
	}
}

// getFull runs a PROTO Get of path at depth level and returns the full
// paths of the leaves.
func (e *subEnv) getFull(tb testing.TB, path string, level uint32) []string {
	tb.Helper()
	resp, err := e.client.Get(context.Background(), &gpb.GetRequest{
		Path: []*gpb.Path{subPath(tb, path)}, Encoding: gpb.Encoding_PROTO, Extension: depthExt(level),
	})
	if err != nil {
		tb.Fatalf("get %s depth %d: %v", path, level, err)
	}
	var out []string
	for _, n := range resp.GetNotification() {
		for _, u := range n.GetUpdate() {
			out = append(out, pathString(u.GetPath()))
		}
	}
	sort.Strings(out)
	return out
}

// relAll drops list keys from full paths, as relLeaves does from "/".
func relAll(paths []string) []string {
	var out []string
	for _, p := range paths {
		var names []string
		for _, e := range mustParse(p).GetElem() {
			names = append(names, e.GetName())
		}
		out = append(out, strings.Join(names, "/"))
	}
	return sortedUnique(out)
}

func mustParse(s string) *gpb.Path {
	p, err := ygot.StringToStructuredPath(s)
	if err != nil {
		panic(err)
	}
	return p
}

// TestDepthStream: a STREAM subscription with depth 2 on a VRF sends
// neither the initial values nor the changes of deeper leaves.
func TestDepthStream(t *testing.T) {
	e := newSubEnv(t)
	e.setDepthVRF(t, "red", "65000:1", 7)
	red := vrfPath("red")
	for _, mode := range []gpb.SubscriptionMode{gpb.SubscriptionMode_ON_CHANGE, gpb.SubscriptionMode_TARGET_DEFINED} {
		t.Run(mode.String(), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			st, err := e.client.Subscribe(ctx)
			if err != nil {
				t.Fatal(err)
			}
			sub := &gpb.Subscription{Path: subPath(t, red), Mode: mode}
			if mode == gpb.SubscriptionMode_TARGET_DEFINED {
				sub.SampleInterval = uint64(minSampleInterval) // counters
			}
			if err := st.Send(&gpb.SubscribeRequest{
				Request: &gpb.SubscribeRequest_Subscribe{Subscribe: &gpb.SubscriptionList{
					Mode: gpb.SubscriptionList_STREAM, Encoding: gpb.Encoding_PROTO,
					Subscription: []*gpb.Subscription{sub},
				}},
				Extension: depthExt(2),
			}); err != nil {
				t.Fatal(err)
			}
			got := untilSync(t, st)
			if l := relLeaves(t, red, pathKeys(got.vals)); !slices.Contains(l, "config/description") || slices.Contains(l, "state/counters/no-route") {
				t.Fatalf("initial sync at depth 2: %v", l)
			}
			// A counter changes, then the description: only the latter
			// arrives, and the counter, sent first, would come before it.
			e.setDepthVRF(t, "red", "65000:1", 70)
			descr := red + "/config/description"
			if _, err := e.core.Set(context.Background(), "test", &gpb.SetRequest{Update: []*gpb.Update{{
				Path: subPath(t, descr), Val: strVal("changed " + mode.String()),
			}}}); err != nil {
				t.Fatal(err)
			}
			r := recvUntil(t, st, func(r *received, _ *gpb.Notification) bool {
				return proto.Equal(r.vals[descr], strVal("changed "+mode.String()))
			})
			for p := range r.vals {
				if strings.Contains(p, "/counters/") || strings.Contains(p, "/exported/") || strings.Contains(p, "address-pool/") {
					t.Errorf("leaf deeper than 2 sent: %s", p)
				}
			}
			// Deletes obey depth too: removing the VRF deletes its level-2
			// leaves only.
			if mode == gpb.SubscriptionMode_TARGET_DEFINED {
				return
			}
			if _, err := e.core.Set(context.Background(), "test", &gpb.SetRequest{Delete: []*gpb.Path{subPath(t, red)}}); err != nil {
				t.Fatal(err)
			}
			r = recvUntil(t, st, func(r *received, _ *gpb.Notification) bool { return r.deletes[descr] })
			for p := range r.deletes {
				if strings.Contains(p, "/counters/") || strings.Contains(p, "address-pool/") {
					t.Errorf("delete deeper than 2 sent: %s", p)
				}
			}
			e.setDepthVRF(t, "red", "65000:1", 7)
		})
	}
}

// TestDepthNothingLeft: data that all lies deeper than the depth is an
// answer without updates, not NotFound.
func TestDepthNothingLeft(t *testing.T) {
	e := newSubEnv(t)
	e.setDepthVRF(t, "red", "65000:1", 7)
	for _, enc := range []gpb.Encoding{gpb.Encoding_PROTO, gpb.Encoding_JSON_IETF} {
		resp, err := e.client.Get(context.Background(), &gpb.GetRequest{
			Path: []*gpb.Path{subPath(t, "/network-instances")}, Encoding: enc, Extension: depthExt(1),
		})
		if err != nil {
			t.Fatalf("get %s: %v", enc, err)
		}
		if n := resp.GetNotification(); len(n) != 1 || len(n[0].GetUpdate()) != 0 {
			t.Errorf("get %s at depth 1: %v", enc, n)
		}
	}
}

func TestDepthRefused(t *testing.T) {
	e := newSubEnv(t)
	e.setDepthVRF(t, "red", "65000:1", 7)
	two := append(depthExt(1), depthExt(2)...)
	_, err := e.client.Get(context.Background(), &gpb.GetRequest{Path: []*gpb.Path{subPath(t, vrfPath("red"))}, Extension: two})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "depth extension") {
		t.Errorf("get with two depth extensions: %v", err)
	}
	st, err := e.client.Subscribe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&gpb.SubscribeRequest{
		Request:   &gpb.SubscribeRequest_Subscribe{Subscribe: &gpb.SubscriptionList{Mode: gpb.SubscriptionList_ONCE, Subscription: []*gpb.Subscription{subAt(vrfPath("red"), 0)}}},
		Extension: two,
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Errorf("subscribe with two depth extensions: %v", err)
	}
	if _, err := e.client.Capabilities(context.Background(), &gpb.CapabilityRequest{Extension: depthExt(1)}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("capabilities with depth: %v", err)
	}
	if _, err := e.client.Set(context.Background(), &gpb.SetRequest{Delete: []*gpb.Path{subPath(t, vrfPath("red"))}, Extension: depthExt(1)}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "not Set") {
		t.Errorf("set with depth: %v", err)
	}
}
