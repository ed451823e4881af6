package nos

import (
	"context"
	"sort"
	"strings"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"
	"google.golang.org/protobuf/proto"
)

// TestConfigDiffMatchesFullDiff checks the entry-scoped diff against
// ygot's whole-tree diff: the same updates, and every leaf ygot deletes is
// deleted by ours too (ours deletes a removed entry as one subtree).
func TestConfigDiffMatchesFullDiff(t *testing.T) {
	ctx := context.Background()
	c := newTestCore(t, t.TempDir())
	steps := []*gpb.SetRequest{
		{Update: []*gpb.Update{vrfUpdate(t, "a", 1), vrfUpdate(t, "b", 2), vrfUpdate(t, "c", 3)}},
		{Update: []*gpb.Update{
			jsonUpdate(t, "/network-instances/network-instance[name=b]/config/description", `"changed"`),
			jsonUpdate(t, "/interfaces/interface[name=p1]/config", `{"name":"p1","type":"POD","network-instance":"a","ipv4-address":"10.0.1.5/32"}`),
			jsonUpdate(t, "/tunnel/config", `{"source-address":"192.0.2.1","udp-port":6635}`),
		}},
		{Delete: []*gpb.Path{mustPath(t, "/interfaces/interface[name=p1]"), mustPath(t, "/network-instances/network-instance[name=c]")},
			Update: []*gpb.Update{jsonUpdate(t, "/tunnel/config/mtu", `9000`)}},
	}
	for i, req := range steps {
		old := c.Config()
		if _, err := c.Set(ctx, "t", req); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		cand := c.Config()
		want, err := ygot.Diff(old, cand)
		if err != nil {
			t.Fatal(err)
		}
		got, err := configDiff(old, cand, computeDelta(old, cand))
		if err != nil {
			t.Fatal(err)
		}
		if g, w := updateSet(got), updateSet(want); strings.Join(g, "\n") != strings.Join(w, "\n") {
			t.Fatalf("step %d updates:\n%s\nwant\n%s", i, strings.Join(g, "\n"), strings.Join(w, "\n"))
		}
		// The stored revision, assembled from per-entry encodings, decodes
		// to the running configuration.
		head, err := c.store.head()
		if err != nil {
			t.Fatalf("step %d: read stored revision: %v", i, err)
		}
		stored, err := decodeConfig(head.Config)
		if err != nil {
			t.Fatalf("step %d: decode stored revision: %v\n%s", i, err, head.Config)
		}
		a, _ := encodeConfig(stored)
		b, _ := encodeConfig(cand)
		if string(a) != string(b) {
			t.Fatalf("step %d: stored revision\n%s\nwant\n%s", i, a, b)
		}
		for _, d := range want.GetDelete() {
			ds := pathString(d)
			covered := false
			for _, o := range got.GetDelete() {
				os := pathString(o)
				covered = covered || ds == os || strings.HasPrefix(ds, os+"/")
			}
			if !covered {
				t.Fatalf("step %d: ygot deletes %s, the scoped diff does not", i, ds)
			}
		}
	}
}

func updateSet(n *gpb.Notification) []string {
	var out []string
	for _, u := range n.GetUpdate() {
		b, _ := proto.Marshal(u.GetVal())
		out = append(out, pathString(u.GetPath())+"="+string(b))
	}
	sort.Strings(out)
	return out
}
