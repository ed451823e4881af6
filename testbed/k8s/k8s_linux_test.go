package k8s

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/isthmus-net/isthmus/internal/testenv"
	"github.com/isthmus-net/isthmus/testbed"
)

// shared holds what every test of the package builds once: isthmusd,
// isthmus-cni, gnmic and the chart's image archives; TestMain removes it.
var shared struct {
	dir                string
	binOnce, imageOnce sync.Once
	bins               testbed.Binaries
	images             string
	binErr, imageErr   error
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "isthmus-k8s-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	shared.dir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildBinaries builds isthmusd and isthmus-cni for the testbed once and
// takes gnmic from its cache (tools/gnmic/build.sh), or takes all three
// from $ISTHMUS_TESTBED_BIN when set.
func buildBinaries(t *testing.T) testbed.Binaries {
	t.Helper()
	if dir := os.Getenv("ISTHMUS_TESTBED_BIN"); dir != "" {
		return testbed.Binaries{Isthmusd: filepath.Join(dir, "isthmusd"), CNI: filepath.Join(dir, "isthmus-cni"), Gnmic: filepath.Join(dir, "gnmic")}
	}
	shared.binOnce.Do(func() {
		dir := filepath.Join(shared.dir, "bin")
		b := testbed.Binaries{Isthmusd: filepath.Join(dir, "isthmusd"), CNI: filepath.Join(dir, "isthmus-cni")}
		repo := RepoRoot()
		for _, c := range []struct{ out, pkg string }{
			{b.Isthmusd, "./cmd/isthmusd"},
			{b.CNI, "./cmd/isthmus-cni"},
		} {
			cmd := exec.Command("go", "build", "-o", c.out, c.pkg)
			cmd.Dir = repo
			if out, err := cmd.CombinedOutput(); err != nil {
				shared.binErr = fmt.Errorf("build %s: %w: %s", c.pkg, err, out)
				return
			}
		}
		// gnmic from its cache outside the clone, built there if missing.
		gnmic, err := testbed.CachedGnmic(repo)
		if err != nil {
			shared.binErr = err
			return
		}
		b.Gnmic = gnmic
		shared.bins = b
	})
	if shared.binErr != nil {
		t.Fatal(shared.binErr)
	}
	return shared.bins
}

// clusterUp builds the mission topology with the control-plane node, FRR
// on dcgw, configured isthmusd on every host, and the cluster on c1 and c2.
func clusterUp(t *testing.T, ctx context.Context) (*testbed.Testbed, *Cluster, *MachineSnapshot) {
	return clusterUpWith(t, ctx, false)
}

// clusterUpWith is clusterUp; ownMounts leaves isthmusd off c1 and c2 (the
// chart's DaemonSet runs it there) and gives each node its mount namespace.
// It snapshots the machine first and, when the test ends, after the
// cluster and the testbed are down, fails the test on anything of the run
// left (MachineSnapshot.LeftSince); the snapshot is returned for checks
// within the test.
func clusterUpWith(t *testing.T, ctx context.Context, ownMounts bool) (*testbed.Testbed, *Cluster, *MachineSnapshot) {
	t.Helper()
	testenv.Privileged(t, "nsenter", "containerd", "ctr", "runc", "/usr/lib/frr/bgpd")
	bins, err := BinDir(RepoRoot())
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckBinaries(bins); err != nil {
		testenv.Unavailable(t, err.Error())
	}
	images := t.TempDir()
	if err := BuildImages(ctx, RepoRoot(), images); err != nil {
		t.Fatal(err)
	}
	before := SnapshotMachine()
	var prefix string
	// Registered before NewTestbed's cleanup, so it runs after it.
	t.Cleanup(func() {
		if prefix == "" {
			return
		}
		if left := before.LeftSince(prefix); len(left) > 0 {
			t.Errorf("left on the machine after teardown:\n%s", strings.Join(left, "\n"))
		}
	})
	tb := testbed.NewTestbed(t, Topology())
	prefix = tb.Prefix()
	if err := tb.SetBinaries(buildBinaries(t)); err != nil {
		t.Fatal(err)
	}
	dcgw, err := tb.StartFRR(ctx, "dcgw")
	if err != nil {
		t.Fatal(err)
	}
	hosts, peers := tb.Topology().NodesWithRole(testbed.RoleHost), []string{"10.10.0.11", "10.10.0.12", "10.20.0.11", "10.20.0.12"}
	if ownMounts {
		hosts, peers = []string{"d1", "d2"}, peers[2:]
	}
	for _, h := range hosts {
		if _, err := tb.StartIsthmusd(ctx, h, testbed.IsthmusdOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := tb.ConfigureHost(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	if err := dcgw.WaitEstablished(ctx, peers...); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c, err := Up(ctx, tb, Options{Log: testLog(t), Bins: bins, Images: images, OwnMounts: ownMounts})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cluster up in %s", time.Since(start).Round(time.Millisecond))
	// Registered after NewTestbed's cleanup, so it runs first.
	t.Cleanup(func() {
		if exists(c.Dir) { // else DownKept removed it all
			if err := c.Down(context.Background()); err != nil {
				t.Errorf("tear down cluster: %v", err)
			}
		}
		if left := c.Leftovers(); len(left) > 0 {
			t.Errorf("left after teardown: %v", left)
		}
	})
	return tb, c, before
}

// TestKubernetesScenarios runs every Kubernetes scenario on one cluster
// (as `make demo K8S=1` does), then treats it as a kept cluster: kubectl
// through a shell with the command line the demo prints for `--keep`
// (KubectlCommand), and the teardown from the run directory alone
// (DownKept, as `demo --down`); nothing of the run may be left on the
// machine: mounts, cgroups, namespaces, processes, containerd state.
func TestKubernetesScenarios(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	tb, c, before := clusterUp(t, ctx)
	out, err := c.Kubectl(ctx, "get", "nodes", "-o", "wide")
	t.Logf("%s", out)
	if err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	e, err := NewEnv(ctx, tb, c, &log)
	if err != nil {
		t.Fatal(err)
	}
	if e.Helm, err = HelmBinary(ctx, RepoRoot()); err != nil {
		t.Fatal(err)
	}
	e.ChartImages = chartImages(t)
	for _, s := range Scenarios() {
		ok := t.Run(s.Name, func(t *testing.T) {
			log.Reset()
			start := time.Now()
			err := s.Run(ctx, e)
			t.Logf("%s (%s)\n%s", s.Title, time.Since(start).Round(100*time.Millisecond), log.String())
			if err != nil {
				t.Fatal(err)
			}
		})
		if !ok {
			break // the scenarios build on each other
		}
	}
	if err := e.Close(ctx); err != nil {
		t.Error(err)
	}
	// The cleanup tears down again; here the teardown itself is the test.
	nodeCgroups := c.Nodes["c1"].CgroupRoot
	if !exists("/sys/fs/cgroup/memory" + nodeCgroups + "/kubepods") {
		t.Errorf("no kubepods cgroup under %s while the cluster ran", nodeCgroups)
	}
	kubectl := c.KubectlCommand() + " get nodes -o name"
	out, err = exec.CommandContext(ctx, "sh", "-c", kubectl).CombinedOutput()
	t.Logf("$ %s\n%s", kubectl, out)
	if err != nil {
		t.Fatalf("run the kept cluster's kubectl: %v", err)
	}
	if got := strings.Fields(string(out)); !slices.Equal(got, []string{"node/c1", "node/c2"}) {
		t.Errorf("kubectl get nodes through the printed command: got %q, want node/c1 and node/c2", got)
	}
	start := time.Now()
	if err := DownKept(ctx, testLog(t), tb.Dir()); err != nil {
		t.Fatalf("tear down the kept cluster: %v", err)
	}
	t.Logf("kept cluster torn down in %s", time.Since(start).Round(100*time.Millisecond))
	if left := before.LeftSince(tb.Prefix()); len(left) > 0 {
		t.Fatalf("left on the machine after DownKept:\n%s", strings.Join(left, "\n"))
	}
}

// chartImages runs `make images` once into a bin dir of its own (or takes
// the archives from $ISTHMUS_IMAGES) and returns the archives' directory.
func chartImages(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv("ISTHMUS_IMAGES"); dir != "" {
		return dir
	}
	shared.imageOnce.Do(func() {
		bin := filepath.Join(shared.dir, "images-bin")
		cmd := exec.Command("make", "--no-print-directory", "images", "BIN="+bin)
		cmd.Dir = RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			shared.imageErr = fmt.Errorf("make images: %w: %s", err, out)
			return
		}
		shared.images = filepath.Join(bin, "images")
	})
	if shared.imageErr != nil {
		t.Fatal(shared.imageErr)
	}
	return shared.images
}

// TestChartDaemonSet installs Isthmus entirely from its chart: isthmusd as
// the DaemonSet's pod on c1 and c2 (each node with its own mount
// namespace, so the chart's host paths are its own), the controller and
// the route reflector as pods; the mission's first scenario then runs
// through them, then the NetworkPolicy truth table (subtest truth-table,
// NetpolTruthTable), and the cluster is torn down without leftovers.
func TestChartDaemonSet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 14*time.Minute)
	defer cancel()
	tb, c, before := clusterUpWith(t, ctx, true)
	var log strings.Builder
	e, err := NewEnv(ctx, tb, c, &log)
	if err != nil {
		t.Fatal(err)
	}
	if e.Helm, err = HelmBinary(ctx, RepoRoot()); err != nil {
		t.Fatal(err)
	}
	e.ChartImages = chartImages(t)
	err = DaemonSetMission(ctx, e)
	t.Logf("%s", log.String())
	if err != nil {
		out, _ := c.Kubectl(ctx, "get", "pods", "-A", "-o", "wide")
		t.Fatalf("%v\n%s", err, out)
	}
	t.Run("truth-table", func(t *testing.T) {
		log.Reset()
		start := time.Now()
		err := NetpolTruthTable(ctx, e)
		t.Logf("NetworkPolicy truth table through the kubelets (%s)\n%s", time.Since(start).Round(100*time.Millisecond), log.String())
		if err != nil {
			out, _ := c.Kubectl(ctx, "get", "pods", "-A", "-o", "wide")
			t.Fatalf("%v\n%s", err, out)
		}
	})
	if err := e.Close(ctx); err != nil {
		t.Error(err)
	}
	if err := c.Down(ctx); err != nil {
		t.Fatalf("tear down: %v", err)
	}
	if left := c.Leftovers(); len(left) > 0 {
		t.Fatalf("left after teardown: %v", left)
	}
	if err := tb.Down(ctx); err != nil {
		t.Fatalf("tear down testbed: %v", err)
	}
	if left := before.LeftSince(tb.Prefix()); len(left) > 0 {
		t.Fatalf("left on the machine after teardown:\n%s", strings.Join(left, "\n"))
	}
}
