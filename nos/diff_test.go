package nos

import (
	"context"
	"sort"
	"strings"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"
	"google.golang.org/protobuf/proto"

	"github.com/isthmus-net/isthmus/gen"
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
		// ACL sets are diffed entry by entry (diffACLSet).
		{Update: []*gpb.Update{jsonUpdate(t, "/acl/acl-sets/acl-set[name=s]", `{"name":"s","config":{"name":"s"},"acl-entries":{"acl-entry":[`+
			`{"sequence-id":10,"config":{"sequence-id":10,"action":"ACCEPT","protocol":6,"destination-port":80}},`+
			`{"sequence-id":20,"config":{"sequence-id":20,"action":"DROP","source-address":"10.0.0.0/8"}},`+
			`{"sequence-id":30,"config":{"sequence-id":30,"action":"ACCEPT","protocol":17}}]}}`)}},
		{Update: []*gpb.Update{
			jsonUpdate(t, "/acl/acl-sets/acl-set[name=s]/config/description", `"web"`),
			jsonUpdate(t, "/acl/acl-sets/acl-set[name=s]/acl-entries/acl-entry[sequence-id=10]/config/destination-port", `443`),
			jsonUpdate(t, "/acl/acl-sets/acl-set[name=s]/acl-entries/acl-entry[sequence-id=40]/config", `{"sequence-id":40,"action":"DROP","protocol":1}`),
		}, Delete: []*gpb.Path{mustPath(t, "/acl/acl-sets/acl-set[name=s]/acl-entries/acl-entry[sequence-id=20]"),
			mustPath(t, "/acl/acl-sets/acl-set[name=s]/acl-entries/acl-entry[sequence-id=30]/config/protocol")}},
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

// BenchmarkConfigDiffACL: the telemetry diff of a commit that changes one
// entry of a 10,000-entry ACL set, entry by entry (what configDiff does)
// against ygot.Diff of the whole set (what it did).
func BenchmarkConfigDiffACL(b *testing.B) {
	old := &gen.Device{}
	set := old.GetOrCreateAcl().GetOrCreateAclSets().GetOrCreateAclSet("s")
	set.GetOrCreateConfig().Name = ygot.String("s")
	for i := range 10000 {
		cf := set.GetOrCreateAclEntries().GetOrCreateAclEntry(uint32(i + 1)).GetOrCreateConfig()
		cf.SequenceId, cf.Action = ygot.Uint32(uint32(i+1)), gen.IsthmusAcl_AclAction_ACCEPT
		cf.Protocol, cf.DestinationPort = ygot.Uint8(6), ygot.Uint16(uint16(1000+i%50000))
	}
	c, err := ygot.DeepCopy(old)
	if err != nil {
		b.Fatal(err)
	}
	cand := c.(*gen.Device)
	cand.Acl.AclSets.AclSet["s"].AclEntries.AclEntry[5000].Config.Action = gen.IsthmusAcl_AclAction_DROP
	var ch delta
	ch.changed[listACL] = []string{"s"}
	b.Run("entry-by-entry", func(b *testing.B) {
		for b.Loop() {
			n, err := configDiff(old, cand, ch)
			if err != nil || len(n.GetUpdate()) != 1 {
				b.Fatalf("diff: %v, %d updates", err, len(n.GetUpdate()))
			}
		}
	})
	b.Run("whole-set", func(b *testing.B) {
		for b.Loop() {
			if _, err := ygot.Diff(old.Acl.AclSets.AclSet["s"], cand.Acl.AclSets.AclSet["s"]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
