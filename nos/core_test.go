package nos

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
)

func newTestCore(t testing.TB, dir string, recs ...Reconciler) *Core {
	t.Helper()
	st, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c, err := New(st, WithReconcilers(recs...))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

func mustPath(t testing.TB, s string) *gpb.Path {
	t.Helper()
	p, err := ygot.StringToStructuredPath(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func jsonUpdate(t testing.TB, path, js string) *gpb.Update {
	return &gpb.Update{Path: mustPath(t, path), Val: &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: []byte(js)}}}
}

const redVRF = `{"config":{"name":"red","type":"L3VRF","route-distinguisher":"65000:1","import-route-target":["65000:1"],"export-route-target":["65000:1"]},
 "address-pools":{"address-pool":[{"prefix":"10.1.0.0/24","config":{"prefix":"10.1.0.0/24"}}]}}`

func TestSetCommitsAndPersists(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	c := newTestCore(t, dir)
	rev, err := c.Set(ctx, "alice", &gpb.SetRequest{Update: []*gpb.Update{jsonUpdate(t, "/network-instances/network-instance[name=red]", redVRF)}})
	if err != nil {
		t.Fatal(err)
	}
	if rev != 1 {
		t.Fatalf("revision = %d, want 1", rev)
	}
	if got := c.Config().GetNetworkInstances().GetNetworkInstance("red").GetConfig().GetRouteDistinguisher(); got != "65000:1" {
		t.Fatalf("rd = %q", got)
	}
	hist, err := c.History(10)
	if err != nil || len(hist) != 1 || hist[0].User != "alice" {
		t.Fatalf("history = %v, %v", hist, err)
	}
}

func TestSetRejectsAndKeepsRunning(t *testing.T) {
	ctx := context.Background()
	c := newTestCore(t, t.TempDir())
	if _, err := c.Set(ctx, "a", &gpb.SetRequest{Update: []*gpb.Update{jsonUpdate(t, "/network-instances/network-instance[name=red]", redVRF)}}); err != nil {
		t.Fatal(err)
	}
	before, _ := encodeConfig(c.Config())
	_, err := c.Set(ctx, "a", &gpb.SetRequest{
		Update: []*gpb.Update{
			jsonUpdate(t, "/network-instances/network-instance[name=blue]", strings.ReplaceAll(redVRF, "red", "blue")),
		},
	})
	var pe *PathError
	if !errors.As(err, &pe) || !errors.Is(err, ErrInvalid) || !strings.Contains(pe.Path, "[name=blue]/config/route-distinguisher") {
		t.Fatalf("duplicate RD: err = %v", err)
	}
	after, _ := encodeConfig(c.Config())
	if string(before) != string(after) {
		t.Fatal("running configuration changed after a rejected Set")
	}
}

// panickingReconciler panics in Apply: always, or with onlyWithConfig
// only when the intended configuration has network instances.
type panickingReconciler struct {
	failingReconciler
	onlyWithConfig bool
}

func (p *panickingReconciler) Apply(_ context.Context, _, intended *gen.Device) error {
	if p.onlyWithConfig && intended.GetNetworkInstances() == nil {
		return nil
	}
	var m map[string]int
	m["boom"]++ // a nil-map write: a reconciler bug
	return nil
}

func TestReconcilerPanicFailsTheCommitOnly(t *testing.T) {
	ctx := context.Background()
	st, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c, _ := New(st, WithReconcilers(&failingReconciler{}, &panickingReconciler{}))
	// Start applies the (empty) configuration: the panic is an error.
	if err := c.Start(ctx); !errors.Is(err, ErrReconcile) {
		t.Fatalf("start: %v, want ErrReconcile", err)
	}

	c = newTestCore(t, t.TempDir(), &failingReconciler{}, &panickingReconciler{onlyWithConfig: true})
	_, err = c.Set(ctx, "a", &gpb.SetRequest{Update: []*gpb.Update{jsonUpdate(t, "/network-instances/network-instance[name=red]", redVRF)}})
	if !errors.Is(err, ErrReconcile) || !strings.Contains(err.Error(), "panicked") {
		t.Fatalf("set: %v, want a reconcile error saying it panicked", err)
	}
	if c.Revision() != 0 || c.Config().GetNetworkInstances() != nil {
		t.Fatal("a commit whose reconciler panicked changed the configuration")
	}
}

// TestCommitNeedsStart: a core that has not started, or whose start
// failed, has reconcilers that never saw the configuration; a commit
// applied to them would be applied against the wrong old state.
func TestCommitNeedsStart(t *testing.T) {
	ctx := context.Background()
	st, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rec := &failingReconciler{}
	c, _ := New(st, WithReconcilers(rec))
	set := func() error {
		_, err := c.Set(ctx, "a", &gpb.SetRequest{Update: []*gpb.Update{jsonUpdate(t, "/network-instances/network-instance[name=red]", redVRF)}})
		return err
	}
	if err := set(); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("set before start: %v, want ErrNotStarted", err)
	}
	if _, err := c.Commit(ctx, "a", func(*gen.Device) error { return nil }); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("commit before start: %v, want ErrNotStarted", err)
	}
	if rec.applied != 0 || c.Revision() != 0 {
		t.Fatalf("a refused commit reached the reconciler (%d applies) or the store (revision %d)", rec.applied, c.Revision())
	}

	// A start that fails leaves the core refusing commits.
	c, _ = New(st, WithReconcilers(&panickingReconciler{}))
	if err := c.Start(ctx); err == nil {
		t.Fatal("start with a panicking reconciler succeeded")
	}
	if err := set(); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("set after a failed start: %v, want ErrNotStarted", err)
	}

	// Once started, commits go through; a second Start is refused.
	c = newTestCore(t, t.TempDir())
	if err := set(); err != nil {
		t.Fatalf("set after start: %v", err)
	}
	if err := c.Start(ctx); err == nil {
		t.Fatal("second start accepted")
	}
}

type failingReconciler struct {
	fail    bool
	applied int
}

func (f *failingReconciler) ID() string                         { return "failing" }
func (f *failingReconciler) Start(context.Context, *Core) error { return nil }
func (f *failingReconciler) Validate(*gen.Device) error         { return nil }
func (f *failingReconciler) Stop(context.Context) error         { return nil }
func (f *failingReconciler) Apply(_ context.Context, _, _ *gen.Device) error {
	f.applied++
	if f.fail {
		return errors.New("boom")
	}
	return nil
}

func TestReconcilerFailureRollsBack(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	good := &failingReconciler{}
	bad := &failingReconciler{}
	c := newTestCore(t, dir, good, bad)
	if _, err := c.Set(ctx, "a", &gpb.SetRequest{Update: []*gpb.Update{jsonUpdate(t, "/network-instances/network-instance[name=red]", redVRF)}}); err != nil {
		t.Fatal(err)
	}
	bad.fail = true
	good.applied = 0
	_, err := c.Set(ctx, "a", &gpb.SetRequest{Delete: []*gpb.Path{mustPath(t, "/network-instances/network-instance[name=red]")}})
	if !errors.Is(err, ErrReconcile) {
		t.Fatalf("err = %v, want ErrReconcile", err)
	}
	if good.applied != 2 { // apply, then roll back
		t.Fatalf("good reconciler applied %d times, want 2 (apply + rollback)", good.applied)
	}
	if c.Config().GetNetworkInstances().GetNetworkInstance("red") == nil {
		t.Fatal("VRF red vanished after a failed commit")
	}
	if c.Revision() != 1 {
		t.Fatalf("revision = %d after failed commit", c.Revision())
	}
}

func TestRestartRestoresConfig(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := New(st)
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Set(ctx, "a", &gpb.SetRequest{Update: []*gpb.Update{jsonUpdate(t, "/network-instances/network-instance[name=red]", redVRF)}}); err != nil {
		t.Fatal(err)
	}
	lbl, err := c.Labels().VRF("red")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := encodeConfig(c.Config())
	st.Close()

	rec := &failingReconciler{}
	c2 := newTestCore(t, dir, rec)
	got, _ := encodeConfig(c2.Config())
	if string(got) != string(want) {
		t.Fatalf("restored config differs:\n%s\nwant\n%s", got, want)
	}
	if rec.applied != 1 {
		t.Fatalf("restored config applied %d times, want 1", rec.applied)
	}
	if l2, _ := c2.Labels().VRF("red"); l2 != lbl {
		t.Fatalf("label after restart = %d, want %d", l2, lbl)
	}
	if _, err := c2.Rollback(ctx, "a", 1); err != nil {
		t.Fatal(err)
	}
}

func TestStateIsPrunedWithItsConfig(t *testing.T) {
	ctx := context.Background()
	c := newTestCore(t, t.TempDir())
	if _, err := c.Set(ctx, "a", &gpb.SetRequest{Update: []*gpb.Update{jsonUpdate(t, "/network-instances/network-instance[name=red]", redVRF)}}); err != nil {
		t.Fatal(err)
	}
	st := &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_State{Exported: &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_State_Exported{Labels: []uint32{100000}}}
	if err := c.UpdateState("/network-instances/network-instance[name=red]/state", st); err != nil {
		t.Fatal(err)
	}
	hasState := func() bool {
		var ok bool
		c.Read(func(_, s *gen.Device) error {
			ok = s.GetNetworkInstances().GetNetworkInstance("red").GetState() != nil
			return nil
		})
		return ok
	}
	if !hasState() {
		t.Fatal("state not written")
	}
	if _, err := c.Set(ctx, "a", &gpb.SetRequest{Delete: []*gpb.Path{mustPath(t, "/network-instances/network-instance[name=red]")}}); err != nil {
		t.Fatal(err)
	}
	if hasState() {
		t.Fatal("state of a deleted VRF survived")
	}
}

func TestCommitsShownUnderSystem(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c := newTestCore(t, dir)
	for i := 0; i < HistoryShown+2; i++ {
		if _, err := c.Commit(ctx, "bob", func(d *gen.Device) error {
			d.GetOrCreateNetworkInstances().GetOrCreateNetworkInstance("default").GetOrCreateConfig().Description = ygot.String(fmt.Sprint(i))
			d.GetNetworkInstances().GetNetworkInstance("default").GetConfig().Type = gen.IsthmusTypes_NetworkInstanceType_DEFAULT
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	check := func(c *Core) {
		t.Helper()
		c.Read(func(_, s *gen.Device) error {
			sys := s.GetSystem()
			if got := sys.GetState().GetRevision(); got != HistoryShown+2 {
				t.Errorf("/system/state/revision = %d", got)
			}
			if sys.GetState().GetUser() != "bob" || sys.GetState().GetTime() == 0 {
				t.Errorf("/system/state = %+v", sys.GetState())
			}
			if n := len(sys.GetCommits().Commit); n != HistoryShown {
				t.Errorf("%d commits shown, want %d", n, HistoryShown)
			}
			if sys.GetCommits().GetCommit(2) != nil || sys.GetCommits().GetCommit(3) == nil {
				t.Error("the oldest commits are not the ones dropped")
			}
			return nil
		})
	}
	check(c)
	// A restarted core shows the same history.
	c.Store().Close()
	check(newTestCore(t, dir))
}

// deadlineReconciler refuses work on a done context, as a reconciler
// talking to the kernel or to GoBGP does; with blockOn it waits for the
// context to end before failing when the intended configuration has that
// VRF. at is the configuration it last applied.
type deadlineReconciler struct {
	failingReconciler
	blockOn string
	at      *gen.Device
}

func (r *deadlineReconciler) Apply(ctx context.Context, _, intended *gen.Device) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if r.blockOn != "" && NetworkInstances(intended)[r.blockOn] != nil {
		<-ctx.Done()
		return ctx.Err()
	}
	r.at = intended
	return nil
}

// TestRollbackOutlivesTheClientDeadline: a commit that fails because the
// client's deadline passed is still undone on every reconciler.
func TestRollbackOutlivesTheClientDeadline(t *testing.T) {
	first, second := &deadlineReconciler{}, &deadlineReconciler{blockOn: "blue"}
	c := newTestCore(t, t.TempDir(), first, second)
	if _, err := c.Set(context.Background(), "a", &gpb.SetRequest{Update: []*gpb.Update{jsonUpdate(t, redPath, redVRF)}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.Set(ctx, "a", &gpb.SetRequest{Update: []*gpb.Update{jsonUpdate(t, "/network-instances/network-instance[name=blue]", redVRFNamed("blue", "65000:2"))}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("set: %v, want the deadline", err)
	}
	if NetworkInstances(first.at)["blue"] != nil || NetworkInstances(first.at)["red"] == nil {
		t.Fatal("the first reconciler was left at the failed candidate: its rollback was cancelled with the client's deadline")
	}
	if NetworkInstances(c.Config())["blue"] != nil {
		t.Fatal("the failed commit is running")
	}
}
