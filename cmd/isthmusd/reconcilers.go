package main

import (
	"log/slog"
	"path/filepath"

	"github.com/isthmus-net/isthmus/bgp"
	"github.com/isthmus-net/isthmus/cni/daemon"
	"github.com/isthmus-net/isthmus/dataplane"
	"github.com/isthmus-net/isthmus/nos"
)

// reconcilers builds the reconcilers of cfg's role in the order commits
// reach them. A node programs forwarding state before BGP advertises it; a
// route reflector runs BGP alone, behind a guard that refuses what only a
// dataplane could act on.
func reconcilers(cfg config, log *slog.Logger) []nos.Reconciler {
	b := bgp.New(bgp.Config{
		Logger:          log.With("component", "bgp"),
		GRPCAddress:     cfg.BGP.GRPCAddress,
		ListenPort:      cfg.BGP.ListenPort,
		ListenAddresses: cfg.BGP.ListenAddresses,
		PeerPort:        cfg.BGP.PeerPort,
		// A heartbeat here tells a restarted daemon to ask its peers, with
		// the graceful-restart Restart State bit, to keep its routes.
		StateDir: filepath.Join(cfg.DataDir, "bgp"),
	})
	if cfg.Role == roleRR {
		return []nos.Reconciler{rrGuard{}, b}
	}
	dp := dataplane.New(dataplane.ReconcilerConfig{
		Config: dataplane.Config{
			BPFFS:  cfg.Dataplane.BPFFS,
			Logger: log.With("component", "dataplane"),
		},
		StateInterval: cfg.Dataplane.StateInterval,
	})
	// The CNI namespace mappings' state comes last: it reports what the
	// next pod ADD uses, once the rest of the commit is applied.
	return []nos.Reconciler{dp, b, &daemon.NamespaceState{}}
}
