package nos

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openconfig/gnmi/ctree"
	gpb "github.com/openconfig/gnmi/proto/gnmi"
	bolt "go.etcd.io/bbolt"

	"github.com/isthmus-net/isthmus/gen"
)

func descrUpdate(t testing.TB, vrf, descr string) *gpb.Update {
	return jsonUpdate(t, fmt.Sprintf("/network-instances/network-instance[name=%s]/config/description", vrf), fmt.Sprintf("%q", descr))
}

// crashCopy runs action on c and returns a core opened on a copy of c's
// store taken when the first leaf is published during it: after the
// action's transaction, before it returns, where a crash leaves what
// the copy holds.
func crashCopy(t *testing.T, c *Core, action func() error) *Core {
	t.Helper()
	dir := t.TempDir()
	var (
		once    sync.Once
		armed   atomic.Bool
		snapErr = errors.New("no copy taken")
	)
	remove := c.WatchCache(func(*ctree.Leaf) {
		if !armed.Load() {
			return
		}
		once.Do(func() {
			snapErr = c.store.db.View(func(tx *bolt.Tx) error {
				return tx.CopyFile(filepath.Join(dir, "isthmus.db"), 0o600)
			})
		})
	})
	armed.Store(true)
	err := action()
	remove()
	if err != nil {
		t.Fatal(err)
	}
	if snapErr != nil {
		t.Fatal(snapErr)
	}
	return newTestCore(t, dir)
}

// TestConfirmedCommitCrashWindow: a crash right after the transaction of
// a confirmed commit leaves it applied only together with its pending
// record and deadline; one right after the transaction of its rollback
// leaves it pending only if not rolled back (a record left beside the
// rollback would roll back again, later, whatever was set since).
func TestConfirmedCommitCrashWindow(t *testing.T) {
	ctx := context.Background()
	c := newTestCore(t, t.TempDir())
	if _, err := c.Set(ctx, "t", &gpb.SetRequest{Update: []*gpb.Update{vrfUpdate(t, "red", 1), descrUpdate(t, "red", "a")}}); err != nil {
		t.Fatal(err)
	}
	check := func(after *Core, when string) {
		t.Helper()
		got := after.Config().GetNetworkInstances().GetNetworkInstance("red").GetConfig().GetDescription()
		p, pending := after.PendingCommit()
		switch {
		case got != "a" && got != "b":
			t.Fatalf("%s: description %q after the crash, want a or b", when, got)
		case got == "b" && (!pending || p.ID != "c1" || p.Deadline.IsZero()):
			t.Fatalf("%s: the confirmed commit is applied after the crash without its pending record (pending %v: %+v)", when, pending, p)
		case got == "a" && pending:
			t.Fatalf("%s: the confirmed commit is not applied after the crash, yet pending (%+v)", when, p)
		}
	}
	check(crashCopy(t, c, func() error {
		_, err := c.SetConfirmed(ctx, "t", "c1", time.Hour, &gpb.SetRequest{Update: []*gpb.Update{descrUpdate(t, "red", "b")}})
		return err
	}), "commit")
	check(crashCopy(t, c, func() error {
		_, err := c.CancelCommit(ctx, "t", "c1")
		return err
	}), "cancel")
}

// TestConfirmedRollbackKeepsLaterEntries: the rollback of a confirmed
// commit reverts what it changed and nothing else; a VRF it added that
// a pod attached since uses stays (its removal does not validate), is
// named in the cancel's error, and the pod stays too.
func TestConfirmedRollbackKeepsLaterEntries(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c, stop := restartCore(t, dir)
	if _, err := c.Set(ctx, "t", &gpb.SetRequest{Update: []*gpb.Update{vrfUpdate(t, "red", 1), descrUpdate(t, "red", "a")}}); err != nil {
		t.Fatal(err)
	}
	req := &gpb.SetRequest{Update: []*gpb.Update{descrUpdate(t, "red", "b"), vrfUpdate(t, "green", 7)}}
	if _, err := c.SetConfirmed(ctx, "t", "c1", time.Hour, req); err != nil {
		t.Fatal(err)
	}
	pod := jsonUpdate(t, "/interfaces/interface[name=pod1]/config", `{"name":"pod1","type":"POD","network-instance":"green","ipv4-address":"10.0.7.2/32"}`)
	if _, err := c.Set(ctx, "cni", &gpb.SetRequest{Update: []*gpb.Update{pod}}); err != nil {
		t.Fatal(err)
	}
	_, err := c.CancelCommit(ctx, "t", "c1")
	const green = "/network-instances/network-instance[name=green]"
	if !errors.Is(err, ErrPrecondition) || !strings.Contains(err.Error(), green) {
		t.Fatalf("cancel: want a precondition error naming %s, got %v", green, err)
	}
	var shown []string
	var id string
	var rev *uint64
	err = c.Read(func(_, state *gen.Device) error {
		st := state.GetSystem().GetConfirmedCommit().GetLastRollback().GetState()
		shown, id, rev = st.GetNotReverted(), st.GetId(), st.Revision
		return nil
	})
	if err != nil || !slices.Equal(shown, []string{green}) {
		t.Fatalf("last-rollback/state/not-reverted: %v (%v), want [%s]", shown, err, green)
	}
	if id != "c1" || rev == nil || *rev == 0 {
		t.Fatalf("last-rollback/state: id %q, revision %v; want c1 and the rollback's revision", id, rev)
	}
	check := func(c *Core) {
		t.Helper()
		cfg := c.Config()
		if d := cfg.GetNetworkInstances().GetNetworkInstance("red").GetConfig().GetDescription(); d != "a" {
			t.Errorf("red's description is %q, want it reverted to a", d)
		}
		if cfg.GetNetworkInstances().GetNetworkInstance("green") == nil || cfg.GetInterfaces().GetInterface("pod1") == nil {
			t.Errorf("green or the pod attached to it since the commit is gone")
		}
		if p, ok := c.PendingCommit(); ok {
			t.Errorf("commit %q still pending", p.ID)
		}
	}
	check(c)
	stop()
	c, stop = restartCore(t, dir)
	defer stop()
	check(c)
}

// TestConfirmedCommitGarbageIndependentOfVRFs: a confirmed Set of one
// VRF and its rollback allocate about the same with many VRFs as with
// ten: neither copies, encodes nor walks the untouched entries. It takes
// the least of 15 rounds: the process's other goroutines, and under
// -race the sync.Pool that drops a share of what is put back, only add
// to a round's count, while a copy that grows with the list would be in
// every round.
func TestConfirmedCommitGarbageIndependentOfVRFs(t *testing.T) {
	const manyVRFs = 2000
	perRound := func(n int) uint64 {
		ctx := context.Background()
		c := newTestCore(t, t.TempDir())
		ups := make([]*gpb.Update, 0, n)
		for i := 0; i < n; i++ {
			ups = append(ups, vrfUpdate(t, fmt.Sprintf("v%d", i), i))
		}
		if _, err := c.Set(ctx, "t", &gpb.SetRequest{Update: ups}); err != nil {
			t.Fatal(err)
		}
		var sizes []uint64
		for i := 0; i < 15; i++ {
			req := &gpb.SetRequest{Update: []*gpb.Update{descrUpdate(t, fmt.Sprintf("v%d", i%n), fmt.Sprint(i))}}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			if _, err := c.SetConfirmed(ctx, "t", "c", time.Hour, req); err != nil {
				t.Fatal(err)
			}
			if _, err := c.CancelCommit(ctx, "t", "c"); err != nil {
				t.Fatal(err)
			}
			runtime.ReadMemStats(&after)
			sizes = append(sizes, after.TotalAlloc-before.TotalAlloc)
		}
		return slices.Min(sizes)
	}
	small, large := perRound(10), perRound(manyVRFs)
	// The ordinary lane holds the bound to 64 kB over the ten-VRF figure
	// (without -race the two differ by 10-20 kB, bbolt's deeper tree).
	// Under -race the least of 15 rounds still varies by 50-70 kB, so the
	// race lane allows 256 kB: it is there for races, and before the
	// fix the 2000-VRF round allocated 502 MB.
	margin := uint64(64 << 10)
	if raceDetector {
		margin = 256 << 10
	}
	if bound := small + margin; large > bound {
		t.Fatalf("a confirmed Set and its rollback allocate %d bytes with %d VRFs, %d with 10 (bound %d)", large, manyVRFs, small, bound)
	}
	t.Logf("a confirmed Set and its rollback allocate %d bytes with %d VRFs, %d with 10", large, manyVRFs, small)
}
