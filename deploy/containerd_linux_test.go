package deploy

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/isthmus-net/isthmus/internal/testenv"
)

// containerd is a throwaway containerd with its own root, state and
// socket, without the CRI plugin, stopped (and its mounts gone) at cleanup.
type containerd struct {
	sock string
	logs bytes.Buffer
}

func startContainerd(t *testing.T) *containerd {
	t.Helper()
	testenv.Privileged(t, "containerd", "ctr")
	dir, err := os.MkdirTemp("", "isthmus-containerd-")
	if err != nil {
		t.Fatal(err)
	}
	c := &containerd{sock: filepath.Join(dir, "containerd.sock")}
	conf := filepath.Join(dir, "config.toml")
	os.WriteFile(conf, []byte(`version = 2
disabled_plugins = ["io.containerd.grpc.v1.cri"]
`), 0o600)
	cmd := exec.Command("containerd", "--config", conf, "--root", filepath.Join(dir, "root"),
		"--state", filepath.Join(dir, "state"), "--address", c.sock, "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = &c.logs, &c.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start containerd: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		// Snapshot mounts under root go with it; unmount any left before
		// removing the directory.
		exec.Command("umount", "-R", "-l", filepath.Join(dir, "root")).Run()
		os.RemoveAll(dir)
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if err := exec.Command("ctr", "--address", c.sock, "version").Run(); err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd not serving after 20s:\n%s", c.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *containerd) ctr(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ctr", append([]string{"--address", c.sock, "-n", "k8s.io"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ctr %s: %v\n%s\ncontainerd:\n%s", strings.Join(args, " "), err, out, c.logs.String())
	}
	return string(out)
}

// TestImagesImportIntoContainerd: every archive `make images` writes is
// imported by `ctr -n k8s.io images import` into a real containerd and
// unpacked into its snapshotter, under the tag the chart runs.
func TestImagesImportIntoContainerd(t *testing.T) {
	c := startContainerd(t)
	bin := makeImages(t)
	version := chartAppVersion(t)
	for _, img := range []string{"isthmusd", "isthmus-cni", "isthmus-controller"} {
		c.ctr(t, "images", "import", filepath.Join(bin, "images", img+".tar"))
		ref := fmt.Sprintf("isthmus.dev/%s:%s", img, version)
		if ls := c.ctr(t, "images", "ls", "-q"); !strings.Contains(ls, ref) {
			t.Errorf("%s not in containerd after import:\n%s", ref, ls)
		}
		if out := c.ctr(t, "images", "check"); !strings.Contains(out, ref) || !strings.Contains(out, "complete") {
			t.Errorf("ctr images check:\n%s", out)
		}
	}
	// Unpacked: one snapshot per image (each has one layer).
	if snaps := strings.Count(strings.TrimSpace(c.ctr(t, "snapshots", "ls")), "\n"); snaps < 3 {
		t.Errorf("%d snapshots after importing 3 images, want 3:\n%s", snaps, c.ctr(t, "snapshots", "ls"))
	}
}
