package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/isthmus-net/isthmus/testbed"
	"github.com/isthmus-net/isthmus/testbed/k8s"
)

type outcome struct {
	s    k8s.Scenario
	err  error
	took time.Duration
}

func demo(ctx context.Context, log *slog.Logger, out io.Writer, bin, gnmic, chartImages string, keep bool) (err error) {
	repo := k8s.RepoRoot()
	bins := testbed.Binaries{Isthmusd: abs(filepath.Join(bin, "isthmusd")), CNI: abs(filepath.Join(bin, "isthmus-cni")), Gnmic: abs(gnmic)}
	for _, b := range []string{bins.Isthmusd, bins.CNI, bins.Gnmic} {
		if _, err := os.Stat(b); err != nil {
			return fmt.Errorf("%s missing (run `make build`): %w", b, err)
		}
	}
	for _, img := range []string{"isthmusd.tar", "isthmus-controller.tar"} {
		if _, err := os.Stat(filepath.Join(chartImages, img)); err != nil {
			return fmt.Errorf("%s missing (run `make images`): %w", img, err)
		}
	}
	helm, err := k8s.HelmBinary(ctx, repo)
	if err != nil {
		return err
	}
	kubeBins, err := k8s.BinDir(repo)
	if err != nil {
		return err
	}
	if err := k8s.CheckBinaries(kubeBins); err != nil {
		return err
	}
	times := map[string]time.Duration{}
	start := time.Now()
	fmt.Fprintf(out, "== bringing the testbed up (mission topology + control-plane node %s at %s)\n", k8s.ControlPlaneNode, k8s.ControlPlaneAddr)
	before := k8s.SnapshotMachine() // teardown compares the machine with it
	tb, err := testbed.Up(ctx, k8s.Topology(), testbed.Options{Log: log})
	if err != nil {
		return err
	}
	var c *k8s.Cluster
	var env *k8s.Env
	if !keep {
		defer func() {
			fmt.Fprintf(out, "\n== tearing down\n")
			t := time.Now()
			err = errors.Join(err, teardown(context.WithoutCancel(ctx), out, tb, c, env, before))
			fmt.Fprintf(out, "  torn down in %s\n", time.Since(t).Round(100*time.Millisecond))
		}()
	}
	if err := tb.SetBinaries(bins); err != nil {
		return err
	}
	dcgw, err := tb.StartFRR(ctx, "dcgw")
	if err != nil {
		return err
	}
	for _, h := range tb.Topology().NodesWithRole(testbed.RoleHost) {
		if _, err := tb.StartIsthmusd(ctx, h, testbed.IsthmusdOptions{}); err != nil {
			return err
		}
		if err := tb.ConfigureHost(ctx, h); err != nil {
			return err
		}
	}
	if err := dcgw.WaitEstablished(ctx, "10.10.0.11", "10.10.0.12", "10.20.0.11", "10.20.0.12"); err != nil {
		return err
	}
	times["testbed (namespaces, FRR, isthmusd x4, BGP up)"] = time.Since(start)
	t := time.Now()
	images := filepath.Join(tb.Dir(), "images")
	if err := k8s.BuildImages(ctx, repo, images); err != nil {
		return err
	}
	times["images (pause, podserver)"] = time.Since(t)
	t = time.Now()
	fmt.Fprintf(out, "== starting Kubernetes v1.37.2: control plane in %s, nodes c1 and c2 (containerd + kubelet)\n", tb.Namespace(k8s.ControlPlaneNode))
	c, err = k8s.Up(ctx, tb, k8s.Options{Log: log, Bins: kubeBins, Images: images})
	if err != nil {
		return err
	}
	times["cluster (control plane, 2 nodes Ready)"] = time.Since(t)
	nodes, err := c.Kubectl(ctx, "get", "nodes", "-o", "wide")
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "$ kubectl get nodes -o wide\n%s", nodes)
	var scen strings.Builder
	env, err = k8s.NewEnv(ctx, tb, c, io.MultiWriter(out, &scen))
	if err != nil {
		return err
	}
	env.Helm, env.ChartImages = helm, abs(chartImages)
	var outcomes []outcome
	for _, s := range k8s.Scenarios() {
		fmt.Fprintf(out, "\n== k8s scenario %s: %s\n", s.Name, s.Title)
		t := time.Now()
		runErr := s.Run(ctx, env)
		outcomes = append(outcomes, outcome{s, runErr, time.Since(t)})
		if runErr != nil {
			fmt.Fprintf(out, "  FAIL: %v\n", runErr)
			break // the scenarios build on each other
		}
		fmt.Fprintf(out, "  pass\n")
	}
	pods, err := c.Kubectl(ctx, "get", "pods", "-A", "-o", "wide")
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\n$ kubectl get pods -A -o wide\n%s", pods)
	times["scenarios"] = time.Since(t)
	if err := summary(out, outcomes, times); err != nil {
		return err
	}
	if keep {
		fmt.Fprintf(out, "\n== kept up; poke at it (as root):\n")
		fmt.Fprintf(out, "  %s get pods -A -o wide\n", c.KubectlCommand())
		fmt.Fprintf(out, "  %s -n shop logs deploy/web\n", c.KubectlCommand())
		fmt.Fprintf(out, "  %s -n %s logs deploy/isthmus-controller\n", c.KubectlCommand(), k8s.ChartNamespace)
		fmt.Fprintf(out, "  vtysh --vty_socket %s -c 'show bgp ipv4 vpn'\n", tb.FRRAt("dcgw").Dir)
		fmt.Fprintf(out, "  ctr --address %s -n k8s.io containers ls\n", c.Nodes["c1"].Socket)
		fmt.Fprintf(out, "  go run ./testbed/k8s/demo --down %s    # remove it all\n", tb.Dir())
	}
	for _, o := range outcomes {
		if o.err != nil {
			return fmt.Errorf("scenario %s failed", o.s.Name)
		}
	}
	return nil
}

func summary(out io.Writer, outcomes []outcome, times map[string]time.Duration) error {
	passed := 0
	for _, o := range outcomes {
		if o.err == nil {
			passed++
		}
	}
	fmt.Fprintf(out, "\n== SUMMARY: %d of %d Kubernetes scenarios passed\n\n", passed, len(k8s.Scenarios()))
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tRESULT\tTIME\tWHAT")
	for _, o := range outcomes {
		res := "pass"
		if o.err != nil {
			res = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", o.s.Name, res, o.took.Round(100*time.Millisecond), o.s.Title)
	}
	fmt.Fprintln(tw, "\nSTEP\t\tTIME\t")
	for _, k := range []string{"testbed (namespaces, FRR, isthmusd x4, BGP up)", "images (pause, podserver)", "cluster (control plane, 2 nodes Ready)", "scenarios"} {
		fmt.Fprintf(tw, "%s\t\t%s\t\n", k, times[k].Round(100*time.Millisecond))
	}
	return tw.Flush()
}

// teardown takes the cluster and the testbed down, then checks both what
// the cluster recorded (Leftovers) and the machine against before.
func teardown(ctx context.Context, out io.Writer, tb *testbed.Testbed, c *k8s.Cluster, env *k8s.Env, before *k8s.MachineSnapshot) error {
	var errs []error
	if env != nil {
		errs = append(errs, env.Close(ctx))
	}
	var left []string
	if c != nil {
		errs = append(errs, c.Down(ctx))
		left = c.Leftovers()
	}
	errs = append(errs, tb.Down(ctx))
	left = append(left, before.LeftSince(tb.Prefix())...)
	if len(left) > 0 {
		errs = append(errs, fmt.Errorf("left after teardown: %s", strings.Join(left, "; ")))
	} else if c != nil {
		fmt.Fprintf(out, "  no cgroup, mount, pod namespace, process or containerd state of the cluster left\n")
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return tb.RemoveDir()
}

func down(ctx context.Context, log *slog.Logger, dir string) error {
	return k8s.DownKept(ctx, log, dir)
}

func abs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}
