package server

import (
	"context"
	"io"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// capturedStream is the sending side of a Subscribe RPC that keeps what
// is sent, re-decoded from the wire (as a client would see it).
type capturedStream struct {
	grpc.ServerStream
	got []*gpb.SubscribeResponse
}

func (c *capturedStream) Send(r *gpb.SubscribeResponse) error {
	b, err := proto.Marshal(r)
	if err != nil {
		return err
	}
	out := &gpb.SubscribeResponse{}
	if err := proto.Unmarshal(b, out); err != nil {
		return err
	}
	c.got = append(c.got, out)
	return nil
}

func (c *capturedStream) Recv() (*gpb.SubscribeRequest, error) { return nil, io.EOF }

func (c *capturedStream) Context() context.Context { return context.Background() }

// writeAFT renders items with an aftWriter for queries qs in encoding enc
// (and depth, 0: none) and returns the updates and deletes sent, by path.
func writeAFT(t *testing.T, enc gpb.Encoding, depth *depthFilter, qs []query, items ...nos.AFTItem) (map[string]*gpb.TypedValue, []string) {
	t.Helper()
	s, err := gen.Schema()
	if err != nil {
		t.Fatal(err)
	}
	st := &capturedStream{}
	snd := &sender{stream: st, encoding: enc, root: s.RootSchema(), depth: depth}
	w := newAFTWriter(snd, qs)
	for _, it := range items {
		if err := w.write(context.Background(), 42, it); err != nil {
			t.Fatal(err)
		}
	}
	if err := snd.flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	updates := map[string]*gpb.TypedValue{}
	var deletes []string
	for _, r := range st.got {
		n := r.GetUpdate()
		if n.GetTimestamp() != 42 {
			t.Errorf("notification timestamp %d, want 42", n.GetTimestamp())
		}
		for _, u := range n.GetUpdate() {
			updates[pathString(u.GetPath())] = u.GetVal()
		}
		for _, d := range n.GetDelete() {
			deletes = append(deletes, pathString(d))
		}
	}
	return updates, deletes
}

func aftKey(t *testing.T, vrf, p string) nos.AFTKey {
	t.Helper()
	k, ok := nos.AFTEntryKey(vrf, netip.MustParsePrefix(p))
	if !ok {
		t.Fatalf("no key for %s", p)
	}
	return k
}

// aftSample is one item of each shape: a BGP entry, a group of two next
// hops, a remote next hop and a pod's; and the delete of an entry.
func aftSample(t *testing.T) []nos.AFTItem {
	return []nos.AFTItem{
		{Key: aftKey(t, "red", "10.0.0.0/24"), Present: true, Origin: nos.AFTOriginBGP, Group: 3,
			RDs: []string{"65099:1"}, RTs: []string{"65000:1", "65000:2"}},
		{Key: nos.AFTKey{VRF: "red", Kind: nos.AFTGroup, ID: 3}, Present: true, NextHops: []uint64{1, 2}},
		{Key: nos.AFTKey{VRF: "red", Kind: nos.AFTNextHop, ID: 1}, Present: true,
			Hop: nos.NextHop{Endpoint: netip.MustParseAddr("192.0.2.2"), Label: 100, Encap: nos.EncapMPLSoUDP}},
		{Key: nos.AFTKey{VRF: "red", Kind: nos.AFTNextHop, ID: 2}, Present: true, Interface: "pod0"},
		{Key: aftKey(t, "red", "10.0.1.0/24")},
	}
}

// TestAFTWireForm: items are sent as the leaves isthmus-aft.yang names,
// with their values, in PROTO; deletes name the item's list entry.
func TestAFTWireForm(t *testing.T) {
	str := func(s string) *gpb.TypedValue { return &gpb.TypedValue{Value: &gpb.TypedValue_StringVal{StringVal: s}} }
	u64 := func(n uint64) *gpb.TypedValue { return &gpb.TypedValue{Value: &gpb.TypedValue_UintVal{UintVal: n}} }
	list := func(vs ...*gpb.TypedValue) *gpb.TypedValue {
		return &gpb.TypedValue{Value: &gpb.TypedValue_LeaflistVal{LeaflistVal: &gpb.ScalarArray{Element: vs}}}
	}
	const afts = "/network-instances/network-instance[name=red]/afts"
	const entry = afts + "/ipv4-unicast/ipv4-entry[prefix=10.0.0.0/24]"
	const group = afts + "/next-hop-groups/next-hop-group[id=3]"
	const hop1, hop2 = afts + "/next-hops/next-hop[index=1]", afts + "/next-hops/next-hop[index=2]"
	want := map[string]*gpb.TypedValue{
		entry + "/prefix":                                   str("10.0.0.0/24"),
		entry + "/state/prefix":                             str("10.0.0.0/24"),
		entry + "/state/next-hop-group":                     u64(3),
		entry + "/state/origin-protocol":                    str("BGP"),
		entry + "/state/route-distinguisher":                list(str("65099:1")),
		entry + "/state/route-target":                       list(str("65000:1"), str("65000:2")),
		group + "/id":                                       u64(3),
		group + "/state/id":                                 u64(3),
		group + "/next-hops/next-hop[index=1]/index":        u64(1),
		group + "/next-hops/next-hop[index=1]/state/index":  u64(1),
		group + "/next-hops/next-hop[index=1]/state/weight": u64(1),
		group + "/next-hops/next-hop[index=2]/index":        u64(2),
		group + "/next-hops/next-hop[index=2]/state/index":  u64(2),
		group + "/next-hops/next-hop[index=2]/state/weight": u64(1),
		hop1 + "/index":                                     u64(1),
		hop1 + "/state/index":                               u64(1),
		hop1 + "/state/ip-address":                          str("192.0.2.2"),
		hop1 + "/state/encapsulate-header":                  str("MPLS_OVER_UDP"),
		hop1 + "/state/pushed-mpls-label-stack":             list(u64(100)),
		hop2 + "/index":                                     u64(2),
		hop2 + "/state/index":                               u64(2),
		hop2 + "/interface-ref/state/interface":             str("pod0"),
	}
	updates, deletes := writeAFT(t, gpb.Encoding_PROTO, nil, []query{{}}, aftSample(t)...)
	if d := cmp.Diff(want, updates, protocmp.Transform()); d != "" {
		t.Errorf("updates differ (-want +got):\n%s", d)
	}
	if want := []string{afts + "/ipv4-unicast/ipv4-entry[prefix=10.0.1.0/24]"}; !slices.Equal(deletes, want) {
		t.Errorf("deletes %v, want %v", deletes, want)
	}
}

// TestAFTWireFormJSON: the JSON encodings carry the same values as JSON,
// RFC 7951's quoted 64-bit integers in JSON_IETF.
func TestAFTWireFormJSON(t *testing.T) {
	const entry = "/network-instances/network-instance[name=red]/afts/ipv4-unicast/ipv4-entry[prefix=10.0.0.0/24]/state"
	for _, c := range []struct {
		enc        gpb.Encoding
		group, rts string
	}{
		{gpb.Encoding_JSON, `3`, `["65000:1","65000:2"]`},
		{gpb.Encoding_JSON_IETF, `"3"`, `["65000:1","65000:2"]`},
	} {
		updates, _ := writeAFT(t, c.enc, nil, []query{{}}, aftSample(t)[0])
		json := func(p string) string {
			v := updates[entry+p]
			if c.enc == gpb.Encoding_JSON_IETF {
				return string(v.GetJsonIetfVal())
			}
			return string(v.GetJsonVal())
		}
		if got := json("/next-hop-group"); got != c.group {
			t.Errorf("%s: next-hop-group %s, want %s", c.enc, got, c.group)
		}
		if got := json("/route-target"); got != c.rts {
			t.Errorf("%s: route-target %s, want %s", c.enc, got, c.rts)
		}
		if got := json("/origin-protocol"); got != `"BGP"` {
			t.Errorf("%s: origin-protocol %s, want \"BGP\"", c.enc, got)
		}
	}
}

// TestAFTLeavesReachSubscriptions: the leaves of an entry match a
// subscription to one of them, its delete reaches a subscription to any
// leaf below it, and an entry of another VRF or prefix reaches neither;
// queries that cannot match the AFT are left out, and the VRFs of the
// rest filter what the AFT queues. The Depth extension cuts leaves below
// its level.
func TestAFTLeavesReachSubscriptions(t *testing.T) {
	leafQ := query{"network-instances", "network-instance", "red", "afts", "ipv4-unicast", "ipv4-entry", "10.0.0.0/24", "state", "next-hop-group"}
	qs, want := aftQueries([]query{leafQ, {"network-instances", "network-instance", "red", "state"}})
	if len(qs) != 1 || !want("red") || want("blue") {
		t.Fatalf("aft queries %v, red %v, blue %v", qs, want("red"), want("blue"))
	}
	entry := nos.AFTItem{Key: aftKey(t, "red", "10.0.0.0/24"), Present: true, Group: 3, Origin: nos.AFTOriginBGP}
	updates, _ := writeAFT(t, gpb.Encoding_PROTO, nil, qs, entry)
	if len(updates) != 1 {
		t.Errorf("%d leaves match a subscription to one leaf, want 1: %v", len(updates), updates)
	}
	_, deletes := writeAFT(t, gpb.Encoding_PROTO, nil, qs, nos.AFTItem{Key: entry.Key})
	if len(deletes) != 1 {
		t.Errorf("the entry's delete does not reach a subscription to its leaf: %v", deletes)
	}
	updates, deletes = writeAFT(t, gpb.Encoding_PROTO, nil, qs, nos.AFTItem{Key: aftKey(t, "blue", "10.0.0.0/24")},
		nos.AFTItem{Key: aftKey(t, "red", "10.0.2.0/24"), Present: true, Group: 3, Origin: nos.AFTOriginBGP})
	if len(updates)+len(deletes) != 0 {
		t.Errorf("another VRF's delete or another prefix reaches a subscription to one entry: %v %v", updates, deletes)
	}
	if _, all := aftQueries([]query{{}}); !all("any") {
		t.Error("a subscription to everything does not take every VRF's AFT")
	}
	// Depth 1 below .../ipv4-entry[prefix=...]: the entry's own leaf
	// (prefix), not those of its state container.
	entryQ := leafQ[:7]
	depth := &depthFilter{level: 1, bases: []depthBase{{q: entryQ, elems: 5}}}
	updates, _ = writeAFT(t, gpb.Encoding_PROTO, depth, []query{entryQ}, entry)
	var got []string
	for p := range updates {
		got = append(got, p[strings.LastIndex(p, "]")+1:])
	}
	if !slices.Equal(got, []string{"/prefix"}) {
		t.Errorf("depth 1 sent %v, want only /prefix", got)
	}
}

// TestAFTGetMalformedKey: a Get naming an AFT entry, group or next hop by
// a key that is not of its type is InvalidArgument naming the key and the
// path, not an answer without data.
func TestAFTGetMalformedKey(t *testing.T) {
	e := newSubEnv(t)
	afts := vrfPath("red") + "/afts"
	for _, c := range []struct{ path, key string }{
		{afts + "/ipv4-unicast/ipv4-entry[prefix=10.1.1/33]/state", `prefix "10.1.1/33"`},
		{afts + "/ipv4-unicast/ipv4-entry[prefix=2001:db8::/32]", `prefix "2001:db8::/32"`},
		{"/network-instances/network-instance[name=*]/afts/ipv4-unicast/ipv4-entry[prefix=red]", `prefix "red"`},
		{afts + "/next-hop-groups/next-hop-group[id=one]", `id "one"`},
		{afts + "/next-hops/next-hop[index=-1]/state", `index "-1"`},
	} {
		for _, typ := range []gpb.GetRequest_DataType{gpb.GetRequest_STATE, gpb.GetRequest_ALL} {
			_, err := e.client.Get(context.Background(), &gpb.GetRequest{
				Path: []*gpb.Path{subPath(t, c.path)}, Type: typ, Encoding: gpb.Encoding_JSON_IETF,
			})
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), c.key) ||
				!strings.Contains(err.Error(), pathString(subPath(t, c.path))) {
				t.Errorf("get %s %s: %v, want InvalidArgument naming %s and the path", typ, c.path, err, c.key)
			}
		}
	}
}
