package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"

	"github.com/openconfig/ygot/ygot"
	"go.yaml.in/yaml/v3"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// The startup configuration is the node-local part of the YANG tree that
// whoever starts isthmusd knows best: on Kubernetes the DaemonSet writes
// the underlay interface, the tunnel source and the BGP router id of its
// node; a route reflector's Deployment writes its AS and listen settings.
//
// Precedence with gNMI: at every start the startup configuration is merged
// into the running configuration restored from the store, as one commit by
// user "startup-config" (visible in /system/commits). The leaves it names
// take its values, even when a gNMI Set changed them since the last start;
// every leaf it does not name keeps whatever gNMI set. A start whose merge
// changes nothing commits nothing. Between starts gNMI may change any leaf,
// the startup ones included, until the next start sets them again. A leaf
// removed from the startup configuration stays in the running
// configuration until a gNMI Set deletes it.

// startupUser names the author of the startup commit in the history.
const startupUser = "startup-config"

// parseStartup turns the startup-config section into RFC 7951 JSON of the
// root, checked against the schema. It refuses what is not configuration:
// unknown nodes, bad values, state (config false) leaves and /system. An
// absent section returns nil.
func parseStartup(n *yaml.Node) ([]byte, error) {
	if n == nil || n.Kind == 0 {
		return nil, nil
	}
	var v any
	if err := n.Decode(&v); err != nil {
		return nil, fmt.Errorf("read startup-config: %w", err)
	}
	if v == nil {
		return nil, nil
	}
	js, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("read startup-config: %w", err)
	}
	d := &gen.Device{}
	if err := gen.Unmarshal(js, d); err != nil {
		return nil, fmt.Errorf("read startup-config: %w", err)
	}
	if d.System != nil {
		return nil, errors.New("read startup-config: /system is not configuration")
	}
	s, err := gen.Schema()
	if err != nil {
		return nil, fmt.Errorf("load schema: %w", err)
	}
	pruned, err := ygot.DeepCopy(d)
	if err != nil {
		return nil, fmt.Errorf("copy startup-config: %w", err)
	}
	if err := ygot.PruneConfigFalse(s.RootSchema(), pruned); err != nil {
		return nil, fmt.Errorf("check startup-config: %w", err)
	}
	if !reflect.DeepEqual(pruned, d) {
		return nil, errors.New("read startup-config: it holds state (config false) nodes; only configuration is allowed")
	}
	return js, nil
}

// applyStartup merges startup (from parseStartup) into the running
// configuration as one commit. The merge is a gNMI Update of the root:
// leaves and leaf-lists it names are replaced, list entries merged by key.
// A merge that changes nothing is no commit (the core makes no revision
// for it). A startup configuration that fails validation is an error
// naming the offending path; nothing of it is committed.
func applyStartup(ctx context.Context, core *nos.Core, startup []byte, log *slog.Logger) error {
	if startup == nil {
		return nil
	}
	before := core.Revision()
	rev, err := core.Commit(ctx, startupUser, func(cand *gen.Device) error {
		if err := gen.Unmarshal(startup, cand); err != nil {
			return fmt.Errorf("merge startup-config: %w", err)
		}
		return nil
	})
	switch {
	case err != nil:
		return fmt.Errorf("apply startup-config: %w", err)
	case rev == before:
		log.Info("startup configuration already running", "revision", rev)
	default:
		log.Info("startup configuration committed", "revision", rev)
	}
	return nil
}
