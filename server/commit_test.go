package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// daemon is a core and a gNMI server on a data directory that survives
// stop and start, as isthmusd's does across a restart.
type daemon struct {
	dir   string
	env   *testEnv
	stopF func()
}

func newDaemon(t *testing.T) *daemon {
	d := &daemon{dir: t.TempDir()}
	d.start(t)
	t.Cleanup(d.stop)
	return d
}

func (d *daemon) start(t *testing.T) {
	t.Helper()
	st, err := nos.OpenStore(filepath.Join(d.dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	core, err := nos.New(st, nos.WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := core.Start(ctx); err != nil {
		t.Fatal(err)
	}
	srv := New(core, WithLogger(log), WithSecurity(SecurityConfig{Users: testUsers(t)}), WithDataDir(d.dir))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, lis) }()
	d.env = &testEnv{core: core, srv: srv, addr: lis.Addr().String(), dataDir: d.dir}
	d.env.conn = d.env.dial(t, nil)
	d.env.cli = gpb.NewGNMIClient(d.env.conn)
	d.stopF = func() {
		d.env.conn.Close()
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
		if err := st.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	}
}

func (d *daemon) stop() {
	if d.stopF != nil {
		d.stopF()
		d.stopF = nil
	}
}

// refused runs gnmic as user and fails unless it fails with code.
func (g *gnmicRunner) refused(t *testing.T, user, pass, code string, args ...string) {
	t.Helper()
	out, err := g.run(t, user, pass, args...)
	if err == nil || !strings.Contains(out, code) {
		t.Fatalf("gnmic %s: want %s, got %v\n%s", strings.Join(args, " "), code, err, out)
	}
}

// description returns red's description in the running configuration.
func description(e *testEnv) string {
	return e.core.Config().GetNetworkInstances().GetNetworkInstance("red").GetConfig().GetDescription()
}

// eventually polls cond for up to 20 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: never happened", what)
		}
	}
}

// commitRequest is gnmic's Set of red's description to value as a
// confirmed commit with the given id and rollback duration (none: gnmic
// sends a zero duration, which means the default).
func commitRequest(id, value string, rollback time.Duration) []string {
	args := []string{"set", "--update-path", vrfPath("red") + "/config/description", "--update-value", value,
		"--commit-id", id, "--commit-request"}
	if rollback > 0 {
		args = append(args, "--rollback-duration", rollback.String())
	}
	return args
}

// commitAction is gnmic's Set that carries only the commit extension:
// --commit-confirm, --commit-cancel, or, with action "", a new rollback
// duration in the extra arguments.
func commitAction(id, action string, extra ...string) []string {
	args := []string{"set", "--commit-id", id}
	if action != "" {
		args = append(args, action)
	}
	return append(args, extra...)
}

// TestCommitConfirmedGnmic drives the commit confirmed extension with
// gnmic's own flags (--commit-id with --commit-request, --commit-confirm,
// --commit-cancel, --rollback-duration): a confirmed commit is kept, an
// unconfirmed one rolled back (keeping a commit made meanwhile by another
// client of the core), a cancelled one rolled back at once, a new rollback
// duration moves the deadline, and a pending one survives a restart (its
// timer resumes; one that expired while the daemon was down is rolled back
// at start). Viewers cannot confirm or cancel; a second confirmed commit
// and a plain Set wait; a confirm with another id is refused.
func TestCommitConfirmedGnmic(t *testing.T) {
	if testing.Short() {
		t.Skip("builds gnmic")
	}
	d := newDaemon(t)
	e := d.env
	e.addVRF(t, "red", "65000:1", "10.1.0.0/24")
	descr := vrfPath("red") + "/config/description"
	if _, err := e.cli.Set(admin(), &gpb.SetRequest{Update: []*gpb.Update{upd(t, descr, str("before"))}}); err != nil {
		t.Fatal(err)
	}
	g := newGnmic(t, e)

	// Waiting: what may and may not happen while a commit waits (its
	// rollback duration long enough for six gnmic runs on a loaded machine).
	g.mustRun(t, nil, commitRequest("c0", "c0", time.Minute)...)
	if got := description(e); got != "c0" {
		t.Fatalf("after commit c0: description %q", got)
	}
	g.refused(t, adminUser, adminPass, "FailedPrecondition", "set", "--update-path", descr, "--update-value", "plain")
	g.refused(t, adminUser, adminPass, "FailedPrecondition", commitRequest("c2", "c2", time.Minute)...)
	g.refused(t, viewerUser, viewerPass, "PermissionDenied", commitAction("c0", "--commit-confirm")...)
	g.refused(t, adminUser, adminPass, "InvalidArgument", commitAction("other", "--commit-confirm")...)
	g.mustRun(t, nil, commitAction("c0", "--commit-confirm")...)
	g.refused(t, adminUser, adminPass, "FailedPrecondition", commitAction("c0", "--commit-confirm")...)

	// Confirmed: kept after its deadline.
	const c1Rollback = 5 * time.Second // two gnmic runs, then past it
	c1Sent := time.Now()
	g.mustRun(t, nil, commitRequest("c1", "c1", c1Rollback)...)
	g.mustRun(t, nil, commitAction("c1", "--commit-confirm")...)
	time.Sleep(time.Until(c1Sent.Add(c1Rollback + 500*time.Millisecond)))
	if got := description(e); got != "c1" {
		t.Fatalf("confirmed commit c1 was rolled back: description %q", got)
	}

	// Expired: its own changes (two updates, from files) are rolled back, a
	// commit made meanwhile through the core (as the CNI daemon's attach
	// does) stays.
	dir := t.TempDir()
	descrFile, blueFile := filepath.Join(dir, "descr.json"), filepath.Join(dir, "blue.json")
	for f, js := range map[string]string{descrFile: `"c3"`, blueFile: vrfJSON("blue", "65000:2", "10.2.0.0/24")} {
		if err := os.WriteFile(f, []byte(js), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	g.mustRun(t, nil, "set", "--encoding", "json_ietf",
		"--update-path", descr, "--update-file", descrFile, "--update-path", vrfPath("blue"), "--update-file", blueFile,
		"--commit-id", "c3", "--commit-request", "--rollback-duration", "8s")
	if got := description(e); got != "c3" {
		t.Fatalf("after commit c3: description %q", got)
	}
	if _, err := e.core.Commit(context.Background(), "cni", func(cand *gen.Device) error {
		return gen.Unmarshal([]byte(`{"isthmus-network-instance:network-instances":{"network-instance":[`+
			`{"name":"green","config":{"name":"green","type":"L3VRF","route-distinguisher":"65000:3"}}]}}`), cand)
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "rollback of c3", func() bool { return description(e) == "c1" })
	vrfs := nos.NetworkInstances(e.core.Config())
	if vrfs["blue"] != nil || vrfs["green"] == nil {
		t.Fatalf("after the rollback of c3: blue %v (want gone), green %v (want kept)", vrfs["blue"] != nil, vrfs["green"] != nil)
	}
	g.mustRun(t, []string{`"isthmus-system:user": "rollback of commit c3"`}, "get", "--type", "state", "--encoding", "json_ietf", "--path", "/system/state")
	g.mustRun(t, nil, "set", "--update-path", descr, "--update-value", "plain") // no commit waits any more

	// Cancelled: rolled back at once. Without --rollback-duration gnmic
	// sends a zero duration: the default applies.
	g.mustRun(t, nil, commitRequest("c4", "c4", 0)...)
	if p, ok := e.core.PendingCommit(); !ok || time.Until(p.Deadline) < nos.DefaultRollbackDuration-time.Minute {
		t.Fatalf("commit c4 without a rollback duration: pending %v, deadline in %s, want about %s", ok, time.Until(p.Deadline), nos.DefaultRollbackDuration)
	}
	g.mustRun(t, []string{`"c4"`, `"alice"`, "rollback-revision"}, "get", "--type", "state", "--path", "/system/confirmed-commit/state")
	g.refused(t, viewerUser, viewerPass, "PermissionDenied", commitAction("c4", "--commit-cancel")...)
	g.mustRun(t, nil, commitAction("c4", "--commit-cancel")...)
	if got := description(e); got != "plain" {
		t.Fatalf("after cancel of c4: description %q", got)
	}
	if out, err := g.run(t, adminUser, adminPass, "get", "--type", "state", "--path", "/system/confirmed-commit"); err == nil && strings.Contains(out, "c4") {
		t.Fatalf("after cancel of c4, /system/confirmed-commit still shows it:\n%s", out)
	}

	// A new rollback duration (--commit-id with --rollback-duration alone)
	// moves the deadline of a pending commit.
	g.mustRun(t, nil, commitRequest("c5", "c5", time.Hour)...)
	g.refused(t, adminUser, adminPass, "InvalidArgument", commitAction("other", "", "--rollback-duration", "1s")...)
	g.mustRun(t, nil, commitAction("c5", "", "--rollback-duration", "1s")...)
	eventually(t, "rollback of c5 after its new duration", func() bool { return description(e) == "plain" })

	// Restart in the middle: the timer resumes (12 s: a restart and a
	// gnmic run under the race detector on a loaded machine fit in it).
	g.mustRun(t, nil, commitRequest("c6", "c6", 12*time.Second)...)
	d.stop()
	d.start(t)
	e, g = d.env, newGnmic(t, d.env)
	if got := description(e); got != "c6" {
		t.Fatalf("after restart: description %q, want c6 still pending", got)
	}
	g.refused(t, adminUser, adminPass, "FailedPrecondition", "set", "--update-path", descr, "--update-value", "x")
	eventually(t, "rollback of c6 after the restart", func() bool { return description(e) == "plain" })

	// Expired while down: rolled back at start.
	g.mustRun(t, nil, commitRequest("c7", "c7", time.Second)...)
	d.stop()
	time.Sleep(1500 * time.Millisecond)
	d.start(t)
	e = d.env
	eventually(t, "rollback of c7 at start", func() bool { return description(e) == "plain" })
	if _, ok := e.core.PendingCommit(); ok {
		t.Fatal("c7 still pending after its rollback")
	}
}
