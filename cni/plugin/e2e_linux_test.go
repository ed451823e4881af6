package plugin

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"

	"github.com/isthmus-net/isthmus/cni/daemon"
	"github.com/isthmus-net/isthmus/cni/internal/testdaemon"
	"github.com/isthmus-net/isthmus/dataplane"
)

// e2eHostEnv, when set, tells the test binary it runs as the node: inside
// the network namespace whose path the variable holds.
const e2eHostEnv = "ISTHMUS_CNI_E2E_HOST_NETNS"

// TestEndToEndDataplane attaches pods through the real cnitool and the
// plugin, a daemon with the real dataplane reconciler (the one isthmusd
// runs), and pings between them through eBPF, in two VRFs with the same
// addresses. The dataplane works in the network namespace of its process,
// so the test runs itself again inside a namespace it made, which plays the
// node's host namespace.
func TestEndToEndDataplane(t *testing.T) {
	requireRoot(t)
	if os.Getenv(e2eHostEnv) == "" {
		host := newNS(t)
		cmd := exec.Command(os.Args[0], "-test.run=^TestEndToEndDataplane$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), e2eHostEnv+"="+host.Path())
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		var runErr error
		if err := host.Do(func(ns.NetNS) error { runErr = cmd.Run(); return nil }); err != nil {
			t.Fatal(err)
		}
		if runErr != nil || !strings.Contains(out.String(), "--- PASS: TestEndToEndDataplane") {
			t.Fatalf("node process: %v\n%s", runErr, out.String())
		}
		return
	}
	runNode(t)
}

// runNode is the node's side: everything here runs in the host namespace.
func runNode(t *testing.T) {
	var self, want unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &self); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(os.Getenv(e2eHostEnv), &want); err != nil {
		t.Fatal(err)
	}
	if self.Ino != want.Ino || self.Dev != want.Dev {
		t.Fatal("the node process is not in the namespace it was started for")
	}
	host, err := ns.GetCurrentNS()
	if err != nil {
		t.Fatal(err)
	}
	pins := t.TempDir()
	t.Cleanup(func() { unix.Unmount(pins, unix.MNT_DETACH) })
	rec := dataplane.New(dataplane.ReconcilerConfig{Config: dataplane.Config{BPFFS: pins, Logger: slog.New(slog.DiscardHandler)}})
	t.Cleanup(func() {
		if dp := rec.Dataplane(); dp != nil {
			if err := dp.Destroy(); err != nil {
				t.Errorf("destroy dataplane: %v", err)
			}
		}
	})
	d := testdaemon.Start(t, daemon.Config{}, rec)
	e := &env{t: t, d: d, host: host, p: New(slog.New(slog.DiscardHandler), io.Discard), socket: d.Socket}
	d.AddVRF("red", "65000:1", "10.1.0.0/24")
	d.AddVRF("blue", "65000:2", "10.1.0.0/24")
	tool := newCNITool(t, e, "red")

	podA, podB, podC, podD := newNS(t), newNS(t), newNS(t), newNS(t)
	resA := tool.add("red", podA)
	resB := tool.add("red", podB)
	resC, err := e.add("blue", "e2e-c", podC, "")
	if err != nil {
		t.Fatal(err)
	}
	resD, err := e.add("blue", "e2e-d", podD, "")
	if err != nil {
		t.Fatal(err)
	}
	a, b, c, dd := resultAddr(t, resA), resultAddr(t, resB), resultAddr(t, resC), resultAddr(t, resD)
	if a != c || b != dd {
		t.Fatalf("red has %s %s, blue %s %s: want the same addresses in both", a, b, c, dd)
	}
	if err := ping(podA, a, b, 5*time.Second); err != nil {
		t.Fatalf("red: ping a → b: %v", err)
	}
	if err := ping(podD, dd, c, 5*time.Second); err != nil {
		t.Fatalf("blue: ping d → c: %v", err)
	}
	if _, err := tool.run("", "check", "red", podA.Path()); err != nil {
		t.Fatal(err)
	}
	// Red's b goes; a's packets to b's address must not reach blue's d,
	// which has the same address.
	if _, err := tool.run("", "del", "red", podB.Path()); err != nil {
		t.Fatal(err)
	}
	if err := ping(podA, a, b, 500*time.Millisecond); err == nil {
		t.Fatal("red: ping to a deleted pod was answered (from blue?)")
	}
	if err := ping(podC, c, dd, 5*time.Second); err != nil {
		t.Fatalf("blue: ping c → d after red's del: %v", err)
	}
}
