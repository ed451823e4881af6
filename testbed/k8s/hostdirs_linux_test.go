package k8s

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestMadeDirsRoundTrip checks that what Up records of the host
// directories it made is what DownKept reads back, and that a path no
// cluster makes is never taken from the file (Down removes what it names).
func TestMadeDirsRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "k8s")
	made := []string{"/var/lib/kubelet", "/run/containerd/s", "/run/containerd"}
	c := &Cluster{Dir: dir, madeHostDirs: made, madeRunIsthmus: true}
	if err := c.saveMadeDirs(); err != nil {
		t.Fatal(err)
	}
	kept := &Cluster{Dir: dir}
	if err := kept.loadMadeDirs(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(kept.madeHostDirs, made) || !kept.madeRunIsthmus {
		t.Errorf("read back %v, /run/isthmus %v; want %v, true", kept.madeHostDirs, kept.madeRunIsthmus, made)
	}
	if err := os.WriteFile(filepath.Join(dir, madeDirsFile), []byte("/etc\n/var/log/containers\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	other := &Cluster{Dir: dir}
	if err := other.loadMadeDirs(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(other.madeHostDirs, []string{"/var/log/containers"}) || other.madeRunIsthmus {
		t.Errorf("read %v, /run/isthmus %v from a file naming /etc; want [/var/log/containers], false", other.madeHostDirs, other.madeRunIsthmus)
	}
	if err := (&Cluster{Dir: t.TempDir()}).loadMadeDirs(); err != nil {
		t.Errorf("no file: %v", err)
	}
}

// TestRemoveMadeDirKeepsUsedShimDir: a shim directory the cluster made is
// removed only when empty, and kept without error otherwise (a containerd of the machine started meanwhile
// may keep its shims' sockets there); the kubelet's go with what they hold.
func TestRemoveMadeDirKeepsUsedShimDir(t *testing.T) {
	saved := shimHostDirs
	t.Cleanup(func() { shimHostDirs = saved })
	root := t.TempDir()
	shim, kubelet := filepath.Join(root, "s"), filepath.Join(root, "kubelet")
	shimHostDirs = []string{shim}
	for _, d := range []string{shim, kubelet} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "sock"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := removeMadeDir(shim); err != nil {
		t.Errorf("a shim directory holding a socket: %v, want it kept without error", err)
	}
	if !exists(filepath.Join(shim, "sock")) {
		t.Errorf("the socket in the shim directory is gone")
	}
	if err := removeMadeDir(kubelet); err != nil || exists(kubelet) {
		t.Errorf("kubelet directory: %v, still there %v", err, exists(kubelet))
	}
	if err := os.Remove(filepath.Join(shim, "sock")); err != nil {
		t.Fatal(err)
	}
	if err := removeMadeDir(shim); err != nil || exists(shim) {
		t.Errorf("empty shim directory: %v, still there %v", err, exists(shim))
	}
	if err := removeMadeDir(shim); err != nil {
		t.Errorf("shim directory already gone: %v", err)
	}
}
