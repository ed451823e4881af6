package main

import (
	"log/slog"

	"github.com/isthmus-net/isthmus/bgp"
	"github.com/isthmus-net/isthmus/nos"
)

// reconcilers builds the reconcilers in the order commits reach them:
// forwarding state is programmed before BGP advertises it. The returned
// func releases what they hold (pinned forwarding state stays).
func reconcilers(cfg config, log *slog.Logger) ([]nos.Reconciler, func(), error) {
	b := bgp.New(bgp.Config{
		Logger:      log.With("component", "bgp"),
		GRPCAddress: cfg.BGP.GRPCAddress,
	})
	return []nos.Reconciler{b}, func() {}, nil
}
