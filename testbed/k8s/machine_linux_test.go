package k8s

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/isthmus-net/isthmus/internal/testenv"
	"github.com/isthmus-net/isthmus/testbed"
)

// TestLeftSinceNamesEachLeftover leaves one thing of each kind a cluster
// run could leave (a mount, a named namespace, a cgroup, a file under
// /run/containerd, a process of a cluster binary, a pod-style cni-
// namespace) and checks that LeftSince names every one, and nothing once
// they are removed; a namespace of another run's prefix is not named.
func TestLeftSinceNamesEachLeftover(t *testing.T) {
	testenv.Privileged(t, "sleep")
	prefix, other := testbed.NewPrefix(), testbed.NewPrefix()
	stem := strings.TrimSuffix(prefix, "-")
	before := SnapshotMachine()

	dir := filepath.Join(t.TempDir(), stem)
	mnt := filepath.Join(dir, "mnt")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(mnt, syscall.MNT_DETACH) }) // unmounted below unless the test failed
	podNS := "cni-" + stem + "-pod"
	for _, n := range []string{prefix + "c1", podNS, other + "c1"} {
		if out, err := exec.Command("ip", "netns", "add", n).CombinedOutput(); err != nil {
			t.Fatalf("add netns %s: %v: %s", n, err, out)
		}
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", n).Run() }) // deleted below unless the test failed
	}
	var cgroup string
	if hs := cgroupHierarchies(); len(hs) > 0 {
		cgroup = filepath.Join(hs[0], prefix+"c1")
		if err := os.Mkdir(cgroup, 0o755); err != nil {
			t.Fatalf("make cgroup: %v", err)
		}
		t.Cleanup(func() { _ = syscall.Rmdir(cgroup) }) // removed below unless the test failed
	}
	madeRun := !exists("/run/containerd")
	shimSock := filepath.Join("/run/containerd/s", stem+"-test")
	if err := os.MkdirAll(filepath.Dir(shimSock), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(shimSock, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	removeShim := func() {
		_ = os.Remove(shimSock)
		if madeRun {
			_ = os.RemoveAll("/run/containerd")
		}
	}
	t.Cleanup(removeShim)
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	kubelet := filepath.Join(dir, "kubelet")
	b, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kubelet, b, 0o755); err != nil {
		t.Fatal(err)
	}
	proc := exec.Command(kubelet, "60")
	if err := proc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proc.Process.Kill(); _ = proc.Wait() }) // killed below unless the test failed

	left := strings.Join(before.LeftSince(prefix), "\n")
	t.Logf("left:\n%s", left)
	want := []string{"mount " + mnt + " (tmpfs", "network namespace " + prefix + "c1", "network namespace " + podNS, "file " + shimSock, "(" + kubelet + " 60)"}
	if cgroup != "" {
		want = append(want, "cgroup "+cgroup)
	}
	for _, w := range want {
		if !strings.Contains(left, w) {
			t.Errorf("LeftSince does not name %q", w)
		}
	}
	if strings.Contains(left, other) {
		t.Errorf("LeftSince names another run's namespace %s", other+"c1")
	}

	if err := syscall.Unmount(mnt, 0); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{prefix + "c1", podNS} {
		if out, err := exec.Command("ip", "netns", "delete", n).CombinedOutput(); err != nil {
			t.Fatalf("delete netns %s: %v: %s", n, err, out)
		}
	}
	if cgroup != "" {
		if err := syscall.Rmdir(cgroup); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
	}
	removeShim()
	_ = proc.Process.Kill()
	_ = proc.Wait()
	if left := before.LeftSince(prefix); len(left) > 0 {
		t.Errorf("LeftSince after removing everything: %v", left)
	}
}
