package server

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// adminClient is a gNMI client whose Get and Subscribe calls carry the
// admin's credentials.
type adminClient struct{ gpb.GNMIClient }

func asAdmin(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "username", adminUser, "password", adminPass)
}

func (c adminClient) Get(ctx context.Context, req *gpb.GetRequest, opts ...grpc.CallOption) (*gpb.GetResponse, error) {
	return c.GNMIClient.Get(asAdmin(ctx), req, opts...)
}

func (c adminClient) Subscribe(ctx context.Context, opts ...grpc.CallOption) (gpb.GNMI_SubscribeClient, error) {
	return c.GNMIClient.Subscribe(asAdmin(ctx), opts...)
}

// TestDepthAFT: the Depth extension counts from the requested path for
// the forwarding table too. A Get of VRF red, whose AFT (three entries b
// announces, their next-hop group and next hop, as a's dataplane
// programmed them) lies at .../afts, sends at depth N the leaves within N
// levels of the VRF, in every encoding and on Subscribe, as it does for
// the rest of the VRF.
func TestDepthAFT(t *testing.T) {
	e := newAFTEnv(t, freeBGPPort(t, "127.100.7.1", "127.100.7.2"))
	e.hostB.pods = []string{"10.1.1.7", "10.1.1.8", "10.1.1.9"}
	e.commit(e.b, e.hostB)
	s := &subEnv{core: e.a, conn: e.conn, client: adminClient{e.cli}}
	red := vrfPath("red")

	entries := func() int {
		resp, err := e.cli.Get(admin(), &gpb.GetRequest{
			Path: []*gpb.Path{subPath(t, red+"/afts/ipv4-unicast")}, Type: gpb.GetRequest_STATE, Encoding: gpb.Encoding_PROTO,
		})
		if err != nil {
			return 0
		}
		n := 0
		for _, nt := range resp.GetNotification() {
			for _, u := range nt.GetUpdate() {
				if strings.HasSuffix(pathString(u.GetPath()), "/state/origin-protocol") {
					n++
				}
			}
		}
		return n
	}
	for deadline := time.Now().Add(30 * time.Second); entries() < 3; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("a's forwarding table has %d of b's 3 routes", entries())
		}
	}

	all := s.getLeaves(t, red, red, gpb.Encoding_PROTO, 0)
	for _, want := range []string{"name", "config/route-distinguisher",
		"afts/ipv4-unicast/ipv4-entry/prefix", "afts/ipv4-unicast/ipv4-entry/state/prefix",
		"afts/next-hops/next-hop/index", "afts/next-hops/next-hop/state/ip-address",
		"afts/next-hop-groups/next-hop-group/next-hops/next-hop/state/weight"} {
		if !slices.Contains(all, want) {
			t.Fatalf("the whole VRF lacks %s: %v", want, all)
		}
	}
	for _, level := range []uint32{1, 2, 3, 4, 5, 6} {
		want := upTo(all, int(level))
		for _, enc := range []gpb.Encoding{gpb.Encoding_PROTO, gpb.Encoding_JSON_IETF, gpb.Encoding_JSON} {
			if got := s.getLeaves(t, red, red, enc, level); !slices.Equal(got, want) {
				t.Errorf("get depth %d %s:\n got %v\nwant %v", level, enc, got, want)
			}
		}
		if got := s.onceLeaves(t, red, red, level); !slices.Equal(got, want) {
			t.Errorf("subscribe once depth %d:\n got %v\nwant %v", level, got, want)
		}
	}
	// Depth 4 of the VRF: each entry's key leaf, none of its state.
	var prefixes int
	for _, p := range s.getFull(t, red, 4) {
		if strings.Contains(p, "/ipv4-entry[") && strings.HasSuffix(p, "]/prefix") {
			prefixes++
		}
		if strings.Contains(p, "/ipv4-entry[") && strings.Contains(p, "/state/") {
			t.Errorf("depth 4 of the VRF sent %s, 5 levels below it", p)
		}
	}
	if prefixes != 3 {
		t.Errorf("depth 4 of the VRF sent %d entry prefixes, want 3", prefixes)
	}
	// With a wildcard VRF, depth counts from each VRF the path matched.
	for _, p := range s.getFull(t, "/network-instances/network-instance[name=*]", 4) {
		if strings.Contains(p, "/afts/") && len(mustParse(p).GetElem()) > 2+4 {
			t.Errorf("depth 4 of every VRF sent %s", p)
		}
	}
}
