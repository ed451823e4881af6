package nos

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"testing"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	bolt "go.etcd.io/bbolt"

	"github.com/isthmus-net/isthmus/gen"
)

// restartCore opens the store in dir and starts a core on it; stop closes
// the store, so the next restartCore on dir sees what was persisted.
func restartCore(t *testing.T, dir string) (c *Core, stop func()) {
	t.Helper()
	st, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err = New(st)
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := c.Start(ctx); err != nil {
		cancel()
		st.Close()
		t.Fatal(err)
	}
	return c, func() { cancel(); st.Close() }
}

func vrfNames(c *Core) []string {
	var out []string
	c.Read(func(cfg, _ *gen.Device) error {
		out = sortedKeys(NetworkInstances(cfg))
		return nil
	})
	return out
}

// TestStoreKeepsChangesPerEntry checks that a revision stores only the
// entries its commit changed, and that every revision of the history
// (adds, changes, removals, the tunnel) is rebuilt exactly from the
// running entries, after a restart too.
func TestStoreKeepsChangesPerEntry(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c, stop := restartCore(t, dir)
	steps := []*gpb.SetRequest{
		{Update: []*gpb.Update{vrfUpdate(t, "a", 1), vrfUpdate(t, "b", 2), vrfUpdate(t, "c", 3)}},
		{Update: []*gpb.Update{jsonUpdate(t, "/network-instances/network-instance[name=b]/config/description", `"blue"`)}},
		{Update: []*gpb.Update{jsonUpdate(t, "/tunnel/config", `{"source-address":"192.0.2.1","udp-port":6635}`)}},
		{Delete: []*gpb.Path{mustPath(t, "/network-instances/network-instance[name=a]")}},
		{Delete: []*gpb.Path{mustPath(t, "/tunnel")}, Update: []*gpb.Update{vrfUpdate(t, "d", 4)}},
	}
	want := map[uint64][]byte{}
	for i, req := range steps {
		rev, err := c.Set(ctx, "t", req)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if want[rev], err = encodeConfig(c.Config()); err != nil {
			t.Fatal(err)
		}
	}
	// The one-VRF commit (step 2) stored that VRF and nothing else.
	err := c.store.db.View(func(tx *bolt.Tx) error {
		r, err := readStored(tx, 2)
		if err != nil {
			return err
		}
		if r.Config != nil || len(r.Changes) != 1 || r.Changes[0].Key != "ni/b" || r.Changes[0].Old == nil || r.Changes[0].New == nil {
			return fmt.Errorf("revision 2 stored %+v, want the change of ni/b alone", r)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	check := func(c *Core) {
		t.Helper()
		for rev, w := range want {
			rec, err := c.store.revision(rev)
			if err != nil {
				t.Fatalf("revision %d: %v", rev, err)
			}
			d, err := decodeConfig(rec.Config)
			if err != nil {
				t.Fatalf("revision %d: %v\n%s", rev, err, rec.Config)
			}
			got, _ := encodeConfig(d)
			if string(got) != string(w) {
				t.Fatalf("revision %d rebuilt as\n%s\nwant\n%s", rev, got, w)
			}
		}
	}
	check(c)
	stop()
	c, stop = restartCore(t, dir)
	defer stop()
	if got, _ := encodeConfig(c.Config()); string(got) != string(want[c.Revision()]) {
		t.Fatalf("restored\n%s\nwant\n%s", got, want[c.Revision()])
	}
	check(c)
	if _, err := c.Rollback(ctx, "t", 2); err != nil {
		t.Fatal(err)
	}
	if got, _ := encodeConfig(c.Config()); string(got) != string(want[2]) {
		t.Fatalf("rolled back to\n%s\nwant\n%s", got, want[2])
	}
}

// writeWholeRevisions writes a store as it was before the per-entry
// format: each revision holds the whole configuration, and no format mark.
func writeWholeRevisions(t *testing.T, dir string, configs []string) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, "isthmus.db"), 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		commits, err := tx.CreateBucket(bucketCommits)
		if err != nil {
			return err
		}
		meta, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		for i, cfg := range configs {
			rev, _ := commits.NextSequence()
			v, err := json.Marshal(commitRecord{CommitInfo: CommitInfo{Revision: rev, Time: time.Unix(int64(i), 0).UTC(), User: "old"}, Config: json.RawMessage(cfg)})
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
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestStoreMigratesWholeRevisions opens a store written in the earlier
// format (every revision the whole configuration): the head is restored,
// a commit on top keeps every entry across a restart, and both the old
// revisions and the new ones roll back.
func TestStoreMigratesWholeRevisions(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	vrf := func(name string, n int) string {
		return fmt.Sprintf(`{"name":%q,"config":{"name":%q,"type":"L3VRF","route-distinguisher":"65000:%d"}}`, name, name, n)
	}
	doc := func(vrfs ...string) string {
		var raw []json.RawMessage
		for _, v := range vrfs {
			raw = append(raw, json.RawMessage(v))
		}
		b, _ := json.Marshal(raw)
		return `{"isthmus-network-instance:network-instances":{"network-instance":` + string(b) + `},"isthmus-tunnel:tunnel":{"config":{"source-address":"192.0.2.7"}}}`
	}
	writeWholeRevisions(t, dir, []string{doc(vrf("a", 1)), doc(vrf("a", 1), vrf("b", 2))})

	c, stop := restartCore(t, dir)
	if c.Revision() != 2 || fmt.Sprint(vrfNames(c)) != "[a b]" {
		t.Fatalf("restored revision %d with VRFs %v, want 2 with [a b]", c.Revision(), vrfNames(c))
	}
	if _, err := c.Set(ctx, "t", &gpb.SetRequest{Update: []*gpb.Update{vrfUpdate(t, "c", 3)}}); err != nil {
		t.Fatal(err)
	}
	stop()

	c, stop = restartCore(t, dir)
	defer stop()
	if got := fmt.Sprint(vrfNames(c)); got != "[a b c]" {
		t.Fatalf("after a commit on the migrated store and a restart: VRFs %s, want [a b c]", got)
	}
	if c.Config().GetTunnel().GetConfig().GetSourceAddress() != "192.0.2.7" {
		t.Fatal("the tunnel of the migrated head was lost")
	}
	hist, err := c.History(10)
	if err != nil {
		t.Fatal(err)
	}
	var revs []uint64
	for _, h := range hist {
		revs = append(revs, h.Revision)
	}
	sort.Slice(revs, func(i, j int) bool { return revs[i] < revs[j] })
	if fmt.Sprint(revs) != "[1 2 3]" {
		t.Fatalf("history %v, want [1 2 3]", revs)
	}
	for _, tc := range []struct {
		rev  uint64
		want string
	}{{1, "[a]"}, {3, "[a b c]"}, {2, "[a b]"}} {
		if _, err := c.Rollback(ctx, "t", tc.rev); err != nil {
			t.Fatalf("roll back to %d: %v", tc.rev, err)
		}
		if got := fmt.Sprint(vrfNames(c)); got != tc.want {
			t.Fatalf("rolled back to %d: VRFs %s, want %s", tc.rev, got, tc.want)
		}
	}
}
