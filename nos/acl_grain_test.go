package nos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openconfig/gnmi/ctree"
	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"
	bolt "go.etcd.io/bbolt"

	"github.com/isthmus-net/isthmus/gen"
)

const grainEntries = 200

// grainConfig is aclConfig with 200 entries, an address group that entry
// 10 matches on and a tag key that entry 20 selects by.
func grainConfig(d *gen.Device) {
	aclConfig(d, grainEntries)
	g := d.GetAcl().GetOrCreateAddressGroups().GetOrCreateAddressGroup("g").GetOrCreateConfig()
	g.Name, g.Prefix = ygot.String("g"), []string{"10.9.0.0/16"}
	d.GetAcl().GetOrCreateTagKeys().GetOrCreateTagKey("app").GetOrCreateConfig().Name = ygot.String("app")
	set := d.GetAcl().GetAclSets().GetAclSet("bench")
	set.GetAclEntries().GetAclEntry(10).GetConfig().SourceAddressGroup = ygot.String("g")
	set.GetAclEntries().GetAclEntry(20).GetConfig().DestinationTagSelector = []string{"app=db"}
}

const grainSet = "/acl/acl-sets/acl-set[name=bench]"

func grainEntry(seq int) string {
	return fmt.Sprintf("%s/acl-entries/acl-entry[sequence-id=%d]", grainSet, seq)
}

func grainCore(t *testing.T, dir string) *Core {
	c := newTestCore(t, dir)
	if _, err := c.Commit(context.Background(), "t", func(d *gen.Device) error {
		grainConfig(d)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return c
}

// storedKeys returns the keys of the running configuration in the store.
func storedKeys(t *testing.T, s *Store) []string {
	t.Helper()
	var keys []string
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketConfig).ForEach(func(k, _ []byte) error {
			keys = append(keys, string(k))
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// headChanges returns the keys the head revision changed.
func headChanges(t *testing.T, c *Core) []string {
	t.Helper()
	var keys []string
	err := c.store.db.View(func(tx *bolt.Tx) error {
		r, err := readStored(tx, c.Revision())
		for _, ch := range r.Changes {
			keys = append(keys, ch.Key)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// clipList returns the first keys of keys, for messages.
func clipList(keys []string) []string {
	if len(keys) > 4 {
		return append(keys[:4:4], "...")
	}
	return keys
}

// TestSetOfOneACLEntryWorksOnThatEntry: a Set that changes one entry of
// a large set copies, schema-validates, semantically validates, diffs
// for telemetry and stores that entry alone; the other entries stay the
// very objects of the running configuration.
func TestSetOfOneACLEntryWorksOnThatEntry(t *testing.T) {
	ctx := context.Background()
	c := grainCore(t, t.TempDir())
	last := 10 * grainEntries
	req := &gpb.SetRequest{Update: []*gpb.Update{jsonUpdate(t, grainEntry(last)+"/config/action", `"DROP"`)}}

	// What the commit would validate, as Set computes it.
	old := c.Config()
	cand := &gen.Device{}
	*cand = *old
	var tch touched
	if err := c.editShared(cand, req, &tch); err != nil {
		t.Fatal(err)
	}
	ch := touchedDelta(old, cand, &tch)
	candSet, oldSet := aclSets(cand)["bench"], aclSets(old)["bench"]
	if got := len(aclEntryMap(aclSets(ch.partial(cand))["bench"])); got != 1 {
		t.Errorf("schema validation sees %d entries of the set, want 1", got)
	}
	if got := newRefIndex(old).scope(old, cand, ch).aclEntries("bench", candSet); !slices.Equal(got, []uint32{uint32(last)}) {
		t.Errorf("semantic validation walks entries %v of the set, want [%d]", got, last)
	}
	shared := 0
	for seq, e := range aclEntryMap(candSet) {
		if aclEntryMap(oldSet)[seq] == e {
			shared++
		}
	}
	if shared != grainEntries-1 || aclEntryMap(oldSet)[uint32(last)].GetConfig().GetAction() != gen.IsthmusAcl_AclAction_ACCEPT {
		t.Errorf("the candidate shares %d entries with the running set (want %d), running action %v (want ACCEPT)",
			shared, grainEntries-1, aclEntryMap(oldSet)[uint32(last)].GetConfig().GetAction())
	}

	// Telemetry of the commit: the entry's leaves and nothing else of the set.
	var mu sync.Mutex
	var paths []string
	stop := c.WatchCache(func(l *ctree.Leaf) {
		n, _ := l.Value().(*gpb.Notification)
		mu.Lock()
		defer mu.Unlock()
		for _, u := range n.GetUpdate() {
			paths = append(paths, pathString(&gpb.Path{Elem: append(n.GetPrefix().GetElem(), u.GetPath().GetElem()...)}))
		}
		for _, d := range n.GetDelete() {
			paths = append(paths, "delete "+pathString(&gpb.Path{Elem: append(n.GetPrefix().GetElem(), d.GetElem()...)}))
		}
	})
	if _, err := c.Set(ctx, "t", req); err != nil {
		t.Fatal(err)
	}
	stop()
	var acl []string
	mu.Lock()
	for _, p := range paths {
		if strings.Contains(p, "/acl/") {
			acl = append(acl, p)
		}
	}
	mu.Unlock()
	slices.Sort(acl)
	want := []string{grainEntry(last) + "/config/action", grainEntry(last) + "/state/action"}
	if !slices.Equal(acl, want) {
		t.Errorf("telemetry of the Set under /acl:\n%s\nwant\n%s", strings.Join(acl, "\n"), strings.Join(want, "\n"))
	}
	if got, want := headChanges(t, c), []string{aclEntryKey("bench", uint32(last))}; !slices.Equal(got, want) {
		t.Errorf("the revision stores %d keys %v, want %v", len(got), clipList(got), want)
	}
	keys := storedKeys(t, c.store)
	if n := len(slices.DeleteFunc(slices.Clone(keys), func(k string) bool { return !isEntryOf(k, "bench") })); n != grainEntries || !slices.Contains(keys, "acl/bench") {
		t.Errorf("the store holds %d entry keys of the set (want %d) and the set's key: %v", n, grainEntries, slices.Contains(keys, "acl/bench"))
	}
}

// TestACLEntryGrainKeepsValidation: a bad entry, or a change that breaks
// an entry the Set does not name, is refused naming the path, and nothing
// of the Set is applied.
func TestACLEntryGrainKeepsValidation(t *testing.T) {
	ctx := context.Background()
	c := grainCore(t, t.TempDir())
	before, _ := encodeConfig(c.Config())
	rev := c.Revision()
	good := jsonUpdate(t, grainEntry(30)+"/config/action", `"DROP"`)
	for _, tc := range []struct {
		name string
		req  *gpb.SetRequest
		path string
	}{
		{"reversed port range", &gpb.SetRequest{Update: []*gpb.Update{good,
			jsonUpdate(t, grainEntry(40)+"/config", `{"sequence-id":40,"protocol":6,"destination-port":5000,"destination-port-end":4000,"action":"ACCEPT"}`)}},
			grainEntry(40) + "/config/destination-port-end"},
		{"new entry with a missing group", &gpb.SetRequest{Update: []*gpb.Update{good,
			jsonUpdate(t, grainEntry(5), `{"sequence-id":5,"config":{"sequence-id":5,"source-address-group":"nope","action":"DROP"}}`)}},
			grainEntry(5) + "/config/source-address-group"},
		{"group an untouched entry uses", &gpb.SetRequest{Update: []*gpb.Update{good},
			Delete: []*gpb.Path{mustPath(t, "/acl/address-groups/address-group[name=g]")}},
			grainEntry(10) + "/config/source-address-group"},
		{"tag key an untouched entry uses", &gpb.SetRequest{Update: []*gpb.Update{good},
			Delete: []*gpb.Path{mustPath(t, "/acl/tag-keys/tag-key[name=app]")}},
			grainEntry(20) + "/config/destination-tag-selector"},
	} {
		_, err := c.Set(ctx, "t", tc.req)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.path) {
			t.Errorf("%s: got %v, want ErrInvalid naming %s", tc.name, err, tc.path)
		}
		if after, _ := encodeConfig(c.Config()); string(after) != string(before) || c.Revision() != rev {
			t.Fatalf("%s: the refused Set changed the running configuration", tc.name)
		}
	}
}

// TestACLEntriesStoredPerKey: entry changes, removals, additions, a
// change of the set's own leaves and the removal of the whole set are
// restored exactly after a restart, and every revision rolls back.
func TestACLEntriesStoredPerKey(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c, stop := restartCore(t, dir)
	want := map[uint64][]byte{}
	commit := func(req *gpb.SetRequest) {
		t.Helper()
		rev, err := c.Set(ctx, "t", req)
		if err != nil {
			t.Fatal(err)
		}
		want[rev], _ = encodeConfig(c.Config())
	}
	if _, err := c.Commit(ctx, "t", func(d *gen.Device) error { grainConfig(d); return nil }); err != nil {
		t.Fatal(err)
	}
	want[c.Revision()], _ = encodeConfig(c.Config())
	commit(&gpb.SetRequest{Update: []*gpb.Update{jsonUpdate(t, grainEntry(30)+"/config/action", `"DROP"`)}})
	commit(&gpb.SetRequest{Delete: []*gpb.Path{mustPath(t, grainEntry(40))}})
	commit(&gpb.SetRequest{Update: []*gpb.Update{jsonUpdate(t, grainEntry(45), `{"sequence-id":45,"config":{"sequence-id":45,"protocol":1,"icmp-type":8,"action":"REJECT"}}`),
		jsonUpdate(t, grainSet+"/config/description", `"web tier"`)}})
	commit(&gpb.SetRequest{Delete: []*gpb.Path{mustPath(t, "/interfaces/interface[name=pod1]/acl"), mustPath(t, grainSet)}})
	if keys := storedKeys(t, c.store); slices.ContainsFunc(keys, func(k string) bool { return strings.HasPrefix(k, "acl") }) {
		t.Errorf("keys of the removed set stay in the store: %v", clipList(keys))
	}
	check := func() {
		t.Helper()
		for rev := uint64(1); rev <= c.Revision(); rev++ {
			r, err := c.store.revision(rev)
			if err != nil {
				t.Fatal(err)
			}
			d, err := decodeConfig(r.Config)
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := encodeConfig(d); string(got) != string(want[rev]) {
				t.Fatalf("revision %d rebuilt differently", rev)
			}
		}
	}
	check()
	stop()
	c, stop = restartCore(t, dir)
	defer stop()
	check()
	for _, rev := range []uint64{3, 1, 4} {
		if _, err := c.Rollback(ctx, "t", rev); err != nil {
			t.Fatal(err)
		}
		if got, _ := encodeConfig(c.Config()); string(got) != string(want[rev]) {
			t.Fatalf("rolled back to %d: configuration differs", rev)
		}
	}
	stop()
	c, stop = restartCore(t, dir)
	if got, _ := encodeConfig(c.Config()); string(got) != string(want[4]) {
		t.Fatal("after the rollback and a restart the configuration differs")
	}
}

// TestStoreMigratesWholeACLSets opens a store of the per-entry format from
// before ACL entries had keys of their own (a set stored whole, in the
// running keys and in the revisions): the sets are split, a change of one
// entry on top keeps everything across a restart, and the old revisions
// roll back.
func TestStoreMigratesWholeACLSets(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	set := func(actions ...string) (whole, withoutSet []byte) {
		d := &gen.Device{}
		s := d.GetOrCreateAcl().GetOrCreateAclSets().GetOrCreateAclSet("s")
		s.GetOrCreateConfig().Name = ygot.String("s")
		for i, a := range actions {
			seq := uint32(10 * (i + 1))
			ec := s.GetOrCreateAclEntries().GetOrCreateAclEntry(seq).GetOrCreateConfig()
			ec.SequenceId = ygot.Uint32(seq)
			ec.Action = gen.IsthmusAcl_AclAction_ACCEPT
			if a == "drop" {
				ec.Action = gen.IsthmusAcl_AclAction_DROP
			}
		}
		b, err := encodeEntry(s)
		if err != nil {
			t.Fatal(err)
		}
		doc, _ := encodeConfig(d)
		return b, doc
	}
	v1, doc1 := set("accept")
	v2, doc2 := set("accept", "drop", "accept")
	db, err := bolt.Open(dir+"/isthmus.db", 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		commits, _ := tx.CreateBucket(bucketCommits)
		meta, _ := tx.CreateBucket(bucketMeta)
		cfg, _ := tx.CreateBucket(bucketConfig)
		for i, chs := range [][]entryChange{{{Key: "acl/s", New: v1}}, {{Key: "acl/s", Old: v1, New: v2}}} {
			rev, _ := commits.NextSequence()
			v, err := json.Marshal(storedRecord{CommitInfo: CommitInfo{Revision: rev, Time: time.Unix(int64(i), 0).UTC(), User: "old"}, Changes: chs})
			if err != nil {
				return err
			}
			if err := commits.Put(revKey(rev), v); err != nil {
				return err
			}
			if err := meta.Put([]byte("head"), revKey(rev)); err != nil {
				return err
			}
		}
		if err := meta.Put(formatKey, formatEntries); err != nil {
			return err
		}
		return cfg.Put([]byte("acl/s"), v2)
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}

	c, stop := restartCore(t, dir)
	if got, _ := encodeConfig(c.Config()); string(got) != string(doc2) {
		t.Fatalf("migrated head\n%s\nwant\n%s", got, doc2)
	}
	if got := storedKeys(t, c.store); !slices.Equal(got, []string{"acl/s", aclEntryKey("s", 10), aclEntryKey("s", 20), aclEntryKey("s", 30)}) {
		t.Fatalf("keys after the migration: %v", got)
	}
	if _, err := c.Set(ctx, "t", &gpb.SetRequest{Update: []*gpb.Update{jsonUpdate(t, "/acl/acl-sets/acl-set[name=s]/acl-entries/acl-entry[sequence-id=20]/config/action", `"ACCEPT"`)}}); err != nil {
		t.Fatal(err)
	}
	if got := headChanges(t, c); !slices.Equal(got, []string{aclEntryKey("s", 20)}) {
		t.Errorf("the commit after the migration stores %d keys %v, want one", len(got), clipList(got))
	}
	_, doc3 := set("accept", "accept", "accept")
	stop()
	c, stop = restartCore(t, dir)
	defer stop()
	for _, tc := range []struct {
		rev  uint64
		want []byte
	}{{0, doc3}, {1, doc1}, {2, doc2}, {3, doc3}} {
		if tc.rev > 0 {
			if _, err := c.Rollback(ctx, "t", tc.rev); err != nil {
				t.Fatalf("roll back to %d: %v", tc.rev, err)
			}
		}
		if got, _ := encodeConfig(c.Config()); string(got) != string(tc.want) {
			t.Fatalf("at revision %d (rolled back to %d):\n%s\nwant\n%s", c.Revision(), tc.rev, got, tc.want)
		}
	}
}

// TestConfirmedACLEntryChangeRollsBack: a confirmed commit of one entry
// that is cancelled puts the entry back, in the running configuration
// and in the store.
func TestConfirmedACLEntryChangeRollsBack(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c, stop := restartCore(t, dir)
	if _, err := c.Commit(ctx, "t", func(d *gen.Device) error { grainConfig(d); return nil }); err != nil {
		t.Fatal(err)
	}
	before, _ := encodeConfig(c.Config())
	req := &gpb.SetRequest{Update: []*gpb.Update{jsonUpdate(t, grainEntry(30)+"/config/action", `"DROP"`)},
		Delete: []*gpb.Path{mustPath(t, grainEntry(50))}}
	if _, err := c.SetConfirmed(ctx, "t", "c1", time.Hour, req); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CancelCommit(ctx, "t", "c1"); err != nil {
		t.Fatal(err)
	}
	if got, _ := encodeConfig(c.Config()); string(got) != string(before) {
		t.Fatal("the cancelled commit was not undone")
	}
	stop()
	c, stop = restartCore(t, dir)
	defer stop()
	if got, _ := encodeConfig(c.Config()); string(got) != string(before) {
		t.Fatal("the cancelled commit is back after a restart")
	}
}

// deltaRecorder is a delta reconciler that keeps the last Delta it was
// given to apply.
type deltaRecorder struct {
	mu   sync.Mutex
	last Delta
}

func (r *deltaRecorder) ID() string                                            { return "recorder" }
func (r *deltaRecorder) Start(context.Context, *Core) error                    { return nil }
func (r *deltaRecorder) Stop(context.Context) error                            { return nil }
func (r *deltaRecorder) Validate(*gen.Device) error                            { return nil }
func (r *deltaRecorder) Apply(context.Context, *gen.Device, *gen.Device) error { return nil }
func (r *deltaRecorder) ValidateDelta(*gen.Device, Delta) error                { return nil }
func (r *deltaRecorder) ApplyDelta(_ context.Context, _, _ *gen.Device, d Delta) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last = d
	return nil
}

// TestDeltaNamesACLEntries: a delta reconciler learns which entries of a
// set a commit changed, so it can work on those.
func TestDeltaNamesACLEntries(t *testing.T) {
	ctx := context.Background()
	rec := &deltaRecorder{}
	c := newTestCore(t, t.TempDir(), rec)
	if _, err := c.Commit(ctx, "t", func(d *gen.Device) error { grainConfig(d); return nil }); err != nil {
		t.Fatal(err)
	}
	if _, _, _, ok := rec.last.ACLEntries("bench"); ok {
		t.Error("a set the commit added is named entry by entry")
	}
	for _, tc := range []struct {
		name             string
		req              *gpb.SetRequest
		changed, removed []uint32
		own              bool
	}{
		{"flip", &gpb.SetRequest{Update: []*gpb.Update{jsonUpdate(t, grainEntry(30)+"/config/action", `"DROP"`)}}, []uint32{30}, nil, false},
		{"remove and describe", &gpb.SetRequest{Delete: []*gpb.Path{mustPath(t, grainEntry(40))},
			Update: []*gpb.Update{jsonUpdate(t, grainSet+"/config/description", `"d"`)}}, nil, []uint32{40}, true},
		{"add", &gpb.SetRequest{Update: []*gpb.Update{jsonUpdate(t, grainEntry(45), `{"sequence-id":45,"config":{"sequence-id":45,"action":"DROP"}}`)}}, []uint32{45}, nil, false},
	} {
		if _, err := c.Set(ctx, "t", tc.req); err != nil {
			t.Fatal(err)
		}
		rec.mu.Lock()
		d := rec.last
		rec.mu.Unlock()
		changed, removed, own, ok := d.ACLEntries("bench")
		if sets, _ := d.ACLSets(); !ok || !slices.Equal(sets, []string{"bench"}) || !slices.Equal(changed, tc.changed) || !slices.Equal(removed, tc.removed) || own != tc.own {
			t.Errorf("%s: sets %v, entries changed %v removed %v own %v (known %v), want [bench] %v %v %v", tc.name, sets, changed, removed, own, ok, tc.changed, tc.removed, tc.own)
		}
	}
}
