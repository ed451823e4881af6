package server

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
)

// gnmicBinary returns the path of the pinned gnmic, built by
// tools/gnmic/build.sh into a cache outside the clone keyed by that
// module's files (a stale binary is never used). The first build compiles
// gnmic's many dependencies and takes minutes; set ISTHMUS_GNMIC to use a
// binary built elsewhere.
var gnmicBinary = sync.OnceValues(func() (string, error) {
	if p := os.Getenv("ISTHMUS_GNMIC"); p != "" {
		return p, nil
	}
	_, file, _, _ := runtime.Caller(0)
	cmd := exec.Command("bash", filepath.Join(filepath.Dir(file), "..", "tools", "gnmic", "build.sh"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", &buildError{out: stderr.Bytes(), err: err}
	}
	return strings.TrimSpace(string(out)), nil
})

type buildError struct {
	out []byte
	err error
}

func (e *buildError) Error() string { return "build gnmic: " + e.err.Error() + "\n" + string(e.out) }

// gnmic runs the real gnmic against e with the given credentials; user ""
// sends none.
type gnmicRunner struct {
	bin  string
	base []string
}

func newGnmic(t *testing.T, e *testEnv) *gnmicRunner {
	t.Helper()
	bin, err := gnmicBinary()
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir() // no stray ~/.gnmic.yaml
	t.Setenv("HOME", home)
	return &gnmicRunner{bin: bin, base: []string{
		"--address", e.addr,
		"--tls-ca", filepath.Join(e.dataDir, selfSignedCert),
		"--timeout", "10s",
	}}
}

func (g *gnmicRunner) args(user, pass string, args []string) []string {
	a := append([]string{}, g.base...)
	if user != "" {
		a = append(a, "--username", user, "--password", pass)
	}
	return append(a, args...)
}

// run runs one gnmic command to completion.
func (g *gnmicRunner) run(t *testing.T, user, pass string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, g.bin, g.args(user, pass, args)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// mustRun runs gnmic and fails the test unless it succeeds and prints
// every one of want.
// start runs gnmic as the admin in the background until the test ends and
// returns what it prints, for streams.
func (g *gnmicRunner) start(t *testing.T, args ...string) *lockedBuffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &lockedBuffer{}
	cmd := exec.CommandContext(ctx, g.bin, g.args(adminUser, adminPass, args)...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait() // killed by cancel: its exit status says nothing
	})
	return out
}

func (g *gnmicRunner) mustRun(t *testing.T, want []string, args ...string) string {
	t.Helper()
	out, err := g.run(t, adminUser, adminPass, args...)
	if err != nil {
		t.Fatalf("gnmic %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Fatalf("gnmic %s: output lacks %q:\n%s", strings.Join(args, " "), w, out)
		}
	}
	return out
}

// lockedBuffer collects a running command's output.
type lockedBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor polls out until it contains s.
func waitFor(t *testing.T, out *lockedBuffer, s string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("gnmic never printed %q:\n%s", s, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestGnmic drives the real gnmic binary over TLS with username and
// password through every RPC.
func TestGnmic(t *testing.T) {
	if testing.Short() {
		t.Skip("builds gnmic")
	}
	e := newTestEnv(t)
	g := newGnmic(t, e)
	descr := vrfPath("red") + "/config/description"

	g.mustRun(t, []string{"isthmus-network-instance", "1.0.0", "JSON_IETF", "PROTO", "0.10.0"}, "capabilities")

	// A subtree goes in a file: gnmic splits flag values at commas.
	vrfFile := filepath.Join(t.TempDir(), "red.json")
	if err := os.WriteFile(vrfFile, []byte(vrfJSON("red", "65000:1", "10.1.0.0/24")), 0o600); err != nil {
		t.Fatal(err)
	}
	g.mustRun(t, nil, "set", "--encoding", "json_ietf", "--update-path", vrfPath("red"), "--update-file", vrfFile)
	g.mustRun(t, []string{"UPDATE"}, "set", "--update-path", descr, "--update-value", "hello")

	g.mustRun(t, []string{"hello", "65000:1"}, "get", "--encoding", "json_ietf", "--path", vrfPath("red"))
	g.mustRun(t, []string{"hello"}, "get", "--type", "config", "--path", "/network-instances/network-instance[name=*]/config/description")

	g.mustRun(t, []string{"hello"}, "subscribe", "--mode", "once", "--path", descr)

	// A stream subscription sees a later change.
	out := g.start(t, "subscribe", "--mode", "stream", "--stream-mode", "on-change", "--path", descr)
	waitFor(t, out, "hello")
	if _, err := e.cli.Set(admin(), &gpb.SetRequest{Update: []*gpb.Update{upd(t, descr, str("world"))}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, out, "world")

	// The history is visible, and a rollback to revision 2 (description
	// "hello") is a new commit that the stream sees.
	g.mustRun(t, []string{`"isthmus-system:revision": "3"`, `"isthmus-system:user": "` + adminUser + `"`}, "get", "--type", "state", "--encoding", "json_ietf", "--path", "/system/state")
	hellos := strings.Count(out.String(), "hello")
	g.mustRun(t, []string{"UPDATE"}, "set", "--update-path", "/system/rollback", "--update-value", "2")
	for deadline := time.Now().Add(10 * time.Second); strings.Count(out.String(), "hello") == hellos; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the stream never saw the rollback:\n%s", out.String())
		}
	}
	g.mustRun(t, []string{`"isthmus-system:revision": "4"`}, "get", "--type", "state", "--encoding", "json_ietf", "--path", "/system/state")
	g.mustRun(t, []string{"hello"}, "get", "--path", descr)

	// Refusals.
	if out, err := g.run(t, "", "", "set", "--update-path", descr, "--update-value", "x"); err == nil || !strings.Contains(out, "Unauthenticated") {
		t.Errorf("set without credentials: %v\n%s", err, out)
	}
	if out, err := g.run(t, viewerUser, viewerPass, "set", "--update-path", descr, "--update-value", "x"); err == nil || !strings.Contains(out, "PermissionDenied") {
		t.Errorf("set by a viewer: %v\n%s", err, out)
	}
	if out, err := g.run(t, viewerUser, viewerPass, "get", "--path", descr); err != nil || !strings.Contains(out, "hello") {
		t.Errorf("get by a viewer: %v\n%s", err, out)
	}
}
