package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/isthmus-net/isthmus/testbed"
	"github.com/isthmus-net/isthmus/testbed/k8s"
)

// daemonsetDemo runs the mission's first scenario with Isthmus on c1 and c2
// entirely from the chart (k8s.DaemonSetMission), then the NetworkPolicy
// truth table (k8s.NetpolTruthTable): a second testbed whose nodes each
// have a mount namespace of their own and no isthmusd process.
func daemonsetDemo(ctx context.Context, log *slog.Logger, out io.Writer, bin, gnmic, chartImages string) (err error) {
	repo := k8s.RepoRoot()
	helm, err := k8s.HelmBinary(ctx, repo)
	if err != nil {
		return err
	}
	kubeBins, err := k8s.BinDir(repo)
	if err != nil {
		return err
	}
	start := time.Now()
	fmt.Fprintf(out, "\n== Isthmus entirely from its chart: isthmusd as the DaemonSet's pod on c1 and c2 (a mount namespace per node)\n")
	before := k8s.SnapshotMachine() // teardown compares the machine with it
	tb, err := testbed.Up(ctx, k8s.Topology(), testbed.Options{Log: log})
	if err != nil {
		return err
	}
	var c *k8s.Cluster
	var env *k8s.Env
	defer func() {
		t := time.Now()
		err = errors.Join(err, teardown(context.WithoutCancel(ctx), out, tb, c, env, before))
		fmt.Fprintf(out, "  torn down in %s\n", time.Since(t).Round(100*time.Millisecond))
	}()
	bins := testbed.Binaries{Isthmusd: abs(filepath.Join(bin, "isthmusd")), CNI: abs(filepath.Join(bin, "isthmus-cni")), Gnmic: abs(gnmic)}
	if err := tb.SetBinaries(bins); err != nil {
		return err
	}
	dcgw, err := tb.StartFRR(ctx, "dcgw")
	if err != nil {
		return err
	}
	for _, h := range []string{"d1", "d2"} {
		if _, err := tb.StartIsthmusd(ctx, h, testbed.IsthmusdOptions{}); err != nil {
			return err
		}
		if err := tb.ConfigureHost(ctx, h); err != nil {
			return err
		}
	}
	if err := dcgw.WaitEstablished(ctx, "10.20.0.11", "10.20.0.12"); err != nil {
		return err
	}
	images := filepath.Join(tb.Dir(), "images")
	if err := k8s.BuildImages(ctx, repo, images); err != nil {
		return err
	}
	c, err = k8s.Up(ctx, tb, k8s.Options{Log: log, Bins: kubeBins, Images: images, OwnMounts: true})
	if err != nil {
		return err
	}
	env, err = k8s.NewEnv(ctx, tb, c, out)
	if err != nil {
		return err
	}
	env.Helm, env.ChartImages = helm, abs(chartImages)
	if err := k8s.DaemonSetMission(ctx, env); err != nil {
		fmt.Fprintf(out, "  FAIL: %v\n", err)
		return fmt.Errorf("the chart's DaemonSet scenario failed: %w", err)
	}
	fmt.Fprintf(out, "  pass (%s from an empty testbed)\n", time.Since(start).Round(100*time.Millisecond))
	fmt.Fprintf(out, "\n== NetworkPolicy truth table through the kubelets: 9 pods in namespaces x, y, z, every case of kube/netpoltest applied with kubectl, TCP and UDP probed from inside the pods\n")
	tableStart := time.Now()
	if err := k8s.NetpolTruthTable(ctx, env); err != nil {
		fmt.Fprintf(out, "  FAIL: %v\n", err)
		return fmt.Errorf("the NetworkPolicy truth table failed: %w", err)
	}
	fmt.Fprintf(out, "  pass (%s)\n", time.Since(tableStart).Round(100*time.Millisecond))
	return nil
}
