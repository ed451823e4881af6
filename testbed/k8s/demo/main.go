// Command demo runs the Kubernetes demo (`make demo K8S=1`): the mission
// testbed with a control-plane node, FRR on dcgw and isthmusd on every
// host, c1 and c2 made Kubernetes nodes, every Kubernetes scenario, a
// summary, and a complete teardown (--keep leaves it up and prints the
// commands to poke at it; --down DIR removes a kept one); then, unless
// kept, a second testbed where isthmusd runs on c1 and c2 as the chart's
// DaemonSet pods, with the mission's first scenario through it and then
// the NetworkPolicy truth table.
//
//	go run ./testbed/k8s/demo [--bin DIR] [--gnmic FILE] [--images DIR] [--keep]
//	go run ./testbed/k8s/demo --down /run/isthmus-testbed/ist-XXXXXX
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	bin := flag.String("bin", "bin", "directory holding isthmusd and isthmus-cni (`make build`)")
	gnmic := flag.String("gnmic", "tools/gnmic/gnmic", "the gnmic binary")
	images := flag.String("images", "bin/images", "the archives of `make images` (the chart's images)")
	keep := flag.Bool("keep", false, "leave the testbed and the cluster up")
	downDir := flag.String("down", "", "remove the kept run in this directory, cluster included")
	verbose := flag.Bool("v", false, "log progress")
	flag.Parse()
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var err error
	if *downDir != "" {
		err = down(ctx, log, *downDir)
	} else {
		err = demo(ctx, log, os.Stdout, *bin, *gnmic, *images, *keep)
		if err == nil && !*keep {
			err = daemonsetDemo(ctx, log, os.Stdout, *bin, *gnmic, *images)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}
