package kubetest

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestClusterStartedAhead: after StartAhead each test gets a cluster of
// its own, the one started while the test before it ran, and its etcd and
// kube-apiserver stop with it; StopAhead stops the cluster no test took
// and removes its directory.
func TestClusterStartedAhead(t *testing.T) {
	pattern := filepath.Join(os.TempDir(), clusterDirPrefix()+"*")
	before, _ := filepath.Glob(pattern)
	StartAhead()
	t.Cleanup(StopAhead)
	var first *Cluster
	t.Run("first", func(t *testing.T) {
		first = StartCluster(t)
		if _, err := first.Client.Discovery().ServerVersion(); err != nil {
			t.Fatalf("first cluster: %v", err)
		}
	})
	if c, err := net.DialTimeout("tcp", strings.TrimPrefix(first.Config.Host, "https://"), time.Second); err == nil {
		c.Close()
		t.Errorf("the first test's kube-apiserver still listens after the test")
	}
	if ahead.next == nil {
		t.Fatal("no cluster started ahead for the next test")
	}
	started := ahead.next
	t.Run("second", func(t *testing.T) {
		second := StartCluster(t)
		if second.Config.Host == first.Config.Host {
			t.Errorf("the second test got the first's API server, %s", first.Config.Host)
		}
		if _, err := second.Client.Discovery().ServerVersion(); err != nil {
			t.Fatalf("second cluster: %v", err)
		}
		if ahead.next == nil || ahead.next == started {
			t.Errorf("the second test took no cluster started ahead, or started none for the next")
		}
	})
	StopAhead()
	if ahead.next != nil {
		t.Errorf("a cluster is still on its way after StopAhead")
	}
	after, _ := filepath.Glob(pattern)
	for _, d := range after {
		if !slices.Contains(before, d) {
			t.Errorf("%s left after StopAhead", d)
		}
	}
}
