package main

import (
	"path/filepath"

	"log/slog"

	"github.com/isthmus-net/isthmus/bgp"
	"github.com/isthmus-net/isthmus/dataplane"
	"github.com/isthmus-net/isthmus/nos"
)

// reconcilers builds the reconcilers in the order commits reach them:
// forwarding state is programmed before BGP advertises it.
func reconcilers(cfg config, log *slog.Logger) []nos.Reconciler {
	b := bgp.New(bgp.Config{
		Logger:      log.With("component", "bgp"),
		GRPCAddress: cfg.BGP.GRPCAddress,
		// A heartbeat here tells a restarted daemon to ask its peers, with
		// the graceful-restart Restart State bit, to keep its routes.
		StateDir: filepath.Join(cfg.DataDir, "bgp"),
	})
	dp := dataplane.New(dataplane.ReconcilerConfig{
		Config: dataplane.Config{
			BPFFS:  cfg.Dataplane.BPFFS,
			Logger: log.With("component", "dataplane"),
		},
		StateInterval: cfg.Dataplane.StateInterval,
	})
	return []nos.Reconciler{dp, b}
}
