package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
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

// commitFile writes a SetRequest in prototext carrying the commit
// extension with action (its body included, e.g. "confirm {}") and the
// given updates, for gnmic's --proto-file.
func commitFile(t *testing.T, id, action string, updates ...*gpb.Update) string {
	t.Helper()
	var b strings.Builder
	for _, u := range updates {
		b.WriteString("update { path {")
		for _, e := range u.GetPath().GetElem() {
			b.WriteString(" elem { name: " + strconv.Quote(e.GetName()))
			for k, v := range e.GetKey() {
				b.WriteString(" key { key: " + strconv.Quote(k) + " value: " + strconv.Quote(v) + " }")
			}
			b.WriteString(" }")
		}
		b.WriteString(" } val { ")
		if js := u.GetVal().GetJsonIetfVal(); js != nil {
			b.WriteString("json_ietf_val: " + strconv.Quote(string(js)))
		} else {
			b.WriteString("string_val: " + strconv.Quote(u.GetVal().GetStringVal()))
		}
		b.WriteString(" } }\n")
	}
	b.WriteString("extension { commit { id: " + strconv.Quote(id) + " " + action + " } }\n")
	f := filepath.Join(t.TempDir(), "set.txt")
	if err := os.WriteFile(f, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func rollbackIn(d time.Duration) string {
	return "commit { rollback_duration { seconds: " + strconv.Itoa(int(d/time.Second)) + " } }"
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

// TestCommitConfirmedGnmic drives the commit confirmed extension from the
// real gnmic: a confirmed commit is kept, an unconfirmed one rolled back
// (keeping a commit made meanwhile by another client of the core), a
// cancelled one rolled back at once, and a pending one survives a restart
// (its timer resumes; one that expired while the daemon was down is
// rolled back at start). Viewers cannot confirm; a second confirmed commit
// and a plain Set wait.
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
	set := func(f string) { g.mustRun(t, nil, "set", "--proto-file", f) }
	change := func(v string) *gpb.Update { return upd(t, descr, str(v)) }

	// Confirmed: kept after its deadline.
	set(commitFile(t, "c1", rollbackIn(2*time.Second), change("c1")))
	if got := description(e); got != "c1" {
		t.Fatalf("after commit c1: description %q", got)
	}
	g.refused(t, adminUser, adminPass, "FailedPrecondition", "set", "--update-path", descr, "--update-value", "plain")
	g.refused(t, adminUser, adminPass, "FailedPrecondition", "set", "--proto-file", commitFile(t, "c2", rollbackIn(time.Minute), change("c2")))
	g.refused(t, viewerUser, viewerPass, "PermissionDenied", "set", "--proto-file", commitFile(t, "c1", "confirm {}"))
	g.refused(t, adminUser, adminPass, "InvalidArgument", "set", "--proto-file", commitFile(t, "other", "confirm {}"))
	set(commitFile(t, "c1", "confirm {}"))
	g.refused(t, adminUser, adminPass, "FailedPrecondition", "set", "--proto-file", commitFile(t, "c1", "confirm {}"))
	time.Sleep(2500 * time.Millisecond)
	if got := description(e); got != "c1" {
		t.Fatalf("confirmed commit c1 was rolled back: description %q", got)
	}

	// Expired: its own changes are rolled back, a commit made meanwhile
	// through the core (as the CNI daemon's attach does) stays.
	blue := upd(t, vrfPath("blue"), ietf(vrfJSON("blue", "65000:2", "10.2.0.0/24")))
	set(commitFile(t, "c3", rollbackIn(time.Second), change("c3"), blue))
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

	// Cancelled: rolled back at once; a new duration works on a pending one.
	set(commitFile(t, "c4", rollbackIn(time.Hour), change("c4")))
	g.mustRun(t, []string{`"c4"`, `"alice"`, "rollback-revision"}, "get", "--type", "state", "--path", "/system/confirmed-commit/state")
	g.refused(t, viewerUser, viewerPass, "PermissionDenied", "set", "--proto-file", commitFile(t, "c4", "cancel {}"))
	set(commitFile(t, "c4", "cancel {}"))
	if got := description(e); got != "plain" {
		t.Fatalf("after cancel of c4: description %q", got)
	}
	if out, err := g.run(t, adminUser, adminPass, "get", "--type", "state", "--path", "/system/confirmed-commit"); err == nil && strings.Contains(out, "c4") {
		t.Fatalf("after cancel of c4, /system/confirmed-commit still shows it:\n%s", out)
	}
	set(commitFile(t, "c5", rollbackIn(time.Hour), change("c5")))
	set(commitFile(t, "c5", "set_rollback_duration { rollback_duration { seconds: 1 } }"))
	eventually(t, "rollback of c5 after its new duration", func() bool { return description(e) == "plain" })

	// Restart in the middle: the timer resumes.
	set(commitFile(t, "c6", rollbackIn(3*time.Second), change("c6")))
	d.stop()
	d.start(t)
	e, g = d.env, newGnmic(t, d.env)
	if got := description(e); got != "c6" {
		t.Fatalf("after restart: description %q, want c6 still pending", got)
	}
	g.refused(t, adminUser, adminPass, "FailedPrecondition", "set", "--update-path", descr, "--update-value", "x")
	eventually(t, "rollback of c6 after the restart", func() bool { return description(e) == "plain" })

	// Expired while down: rolled back at start.
	set(commitFile(t, "c7", rollbackIn(time.Second), change("c7")))
	d.stop()
	time.Sleep(1500 * time.Millisecond)
	d.start(t)
	e = d.env
	eventually(t, "rollback of c7 at start", func() bool { return description(e) == "plain" })
	if _, ok := e.core.PendingCommit(); ok {
		t.Fatal("c7 still pending after its rollback")
	}
}
