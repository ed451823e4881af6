package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// checkConfig is `isthmusd check-config --config FILE`: it reads the file as
// the daemon would (environment expansion, unknown keys, role settings)
// and commits its startup-config into a scratch store with no reconcilers
// but the role's guard, so every schema and semantic rule of a real start
// runs without touching the host. The Helm chart's tests run it on the
// configurations the chart renders.
func checkConfig(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("isthmusd check-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "YAML configuration file (required)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *cfgPath == "" || fs.NArg() > 0 {
		return errors.New("check-config: want --config FILE and nothing else")
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	if err := cfg.finish(); err != nil {
		return err
	}
	if _, err := parseLevel(cfg.LogLevel); err != nil {
		return err
	}
	startup, err := parseStartup(&cfg.StartupConfig)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "isthmusd-check-")
	if err != nil {
		return fmt.Errorf("check-config: %w", err)
	}
	defer os.RemoveAll(dir)
	store, err := nos.OpenStore(dir)
	if err != nil {
		return err
	}
	defer store.Close()
	var recs []nos.Reconciler
	if cfg.Role == roleRR {
		recs = append(recs, rrGuard{})
	}
	log := slog.New(slog.DiscardHandler)
	core, err := nos.New(store, nos.WithLogger(log), nos.WithReconcilers(recs...))
	if err != nil {
		return err
	}
	ctx := context.Background()
	if err := core.Start(ctx); err != nil {
		return err
	}
	if err := applyStartup(ctx, core, startup, log); err != nil {
		return err
	}
	n := 0
	if err := core.Read(func(c, _ *gen.Device) error {
		if c.NetworkInstances != nil {
			n = len(c.NetworkInstances.NetworkInstance)
		}
		return nil
	}); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: role %s, startup-config valid (%d network instances)\n", *cfgPath, cfg.Role, n)
	return nil
}
