package testbed

import (
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/isthmus-net/isthmus/internal/testenv"
)

// RequirePrivileges skips t unless it runs as root with iproute2 and the
// given extra binaries. Under CI (CI=true) a missing privilege or binary
// fails the test instead: CI is root and must run it.
func RequirePrivileges(t testing.TB, binaries ...string) {
	t.Helper()
	testenv.Privileged(t, binaries...)
}

// NS is a throwaway named network namespace for a test.
type NS struct {
	ns.NetNS
	// Name is the namespace's name under /run/netns.
	Name string
}

// NewNS creates a named network namespace with lo up and deletes it, with
// everything running inside, when the test ends. Run code inside it with
// Do, which locks a fresh OS thread.
//
//	a, b := testbed.NewNS(t), testbed.NewNS(t)
func NewNS(t testing.TB) *NS {
	t.Helper()
	RequirePrivileges(t)
	name := NewPrefix() + "t"
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("create netns %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if err := Sweep(context.Background(), nil, name); err != nil {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("set lo up in %s: %v: %s", name, err, out)
	}
	h, err := ns.GetNS(filepath.Join(netnsDir, name))
	if err != nil {
		t.Fatalf("open netns %s: %v", name, err)
	}
	t.Cleanup(func() { _ = h.Close() }) // closing a handle fails only when already closed
	return &NS{NetNS: h, Name: name}
}

// Exec runs argv inside the namespace and returns its combined output.
func (n *NS) Exec(ctx context.Context, argv ...string) ([]byte, error) {
	out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name}, argv...)...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("exec %v in %s: %w: %s", argv, n.Name, err, out)
	}
	return out, nil
}

// NewTestbed builds topo for a test and tears it down when the test ends,
// failing the test when namespaces, processes or mounts of its prefix are
// left (FindLeftovers). The run directory, with the daemons' logs, is kept when the test failed.
func NewTestbed(t testing.TB, topo *Topology) *Testbed {
	t.Helper()
	RequirePrivileges(t)
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	tb, err := Up(context.Background(), topo, Options{Log: log})
	if err != nil {
		t.Fatalf("build topology: %v", err)
	}
	t.Cleanup(func() {
		if err := tb.Down(context.Background()); err != nil {
			t.Errorf("tear down topology: %v", err)
		}
		if left, err := FindLeftovers(tb.Prefix()); err != nil {
			t.Errorf("check teardown: %v", err)
		} else if !left.Empty() {
			t.Errorf("left after teardown: namespaces %v, processes %v, mounts %v", left.Namespaces, left.PIDs, left.Mounts)
		}
		if t.Failed() {
			t.Logf("run directory kept: %s", tb.Dir())
			return
		}
		if err := tb.RemoveDir(); err != nil {
			t.Errorf("remove run dir: %v", err)
		}
	})
	return tb
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
