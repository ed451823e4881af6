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
	c := &Cluster{Dir: dir, madeHostDirs: []string{"/var/lib/kubelet"}, madeRunIsthmus: true}
	if err := c.saveMadeDirs(); err != nil {
		t.Fatal(err)
	}
	kept := &Cluster{Dir: dir}
	if err := kept.loadMadeDirs(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(kept.madeHostDirs, []string{"/var/lib/kubelet"}) || !kept.madeRunIsthmus {
		t.Errorf("read back %v, /run/isthmus %v; want [/var/lib/kubelet], true", kept.madeHostDirs, kept.madeRunIsthmus)
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
