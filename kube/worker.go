package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc"
)

// gnmiWorker is the plumbing one part of the controller's work on a node
// shares with the others (the node's configuration, its policy, its
// services): it owns the gNMI connection and one goroutine that runs a
// pass of that part whenever it is woken, whenever the resync period
// passes, and, after a failed pass, again with exponential backoff. One
// worker per node and part, so a slow or dead node delays nobody else.
type gnmiWorker struct {
	name, addr string
	cfg        *Config
	log        *slog.Logger

	// what is the message of the warning a failed pass logs.
	what string
	// backoffLimit bounds the wait before a failed pass is run again.
	backoffLimit time.Duration
	// quiet are errors a pass returns when the node is not ready for the
	// whole intent yet: run again with backoff, without a warning.
	quiet []error
	// pass brings the node to the current intent once; resync says the
	// resync period has passed. nil: done until the next wake or resync;
	// an error: run again with backoff.
	pass func(ctx context.Context, c gpb.GNMIClient, resync bool) error
	// watchNode, when set, runs next to the loop on the same connection.
	watchNode func(ctx context.Context, c gpb.GNMIClient)

	wake chan struct{} // buffered 1: something changed

	cancel context.CancelFunc
	done   chan struct{}
}

func newGNMIWorker(name, addr string, cfg *Config, log *slog.Logger, what string, backoffLimit time.Duration, quiet ...error) gnmiWorker {
	return gnmiWorker{name: name, addr: addr, cfg: cfg, log: log, what: what,
		backoffLimit: backoffLimit, quiet: quiet,
		wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// poke wakes the worker; wakes coalesce while a pass runs.
func (w *gnmiWorker) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// start dials the node and runs the worker until stop.
func (w *gnmiWorker) start(ctx context.Context) error {
	opts, err := dialOptions(w.cfg.GNMI)
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(w.addr, opts...)
	if err != nil {
		return fmt.Errorf("dial node %s at %s: %w", w.name, w.addr, err)
	}
	ctx, w.cancel = context.WithCancel(ctx)
	client := gpb.NewGNMIClient(conn)
	var wg sync.WaitGroup
	run := func(f func(context.Context, gpb.GNMIClient)) {
		wg.Add(1)
		go func() { defer wg.Done(); f(ctx, client) }()
	}
	run(w.loop)
	if w.watchNode != nil {
		run(w.watchNode)
	}
	go func() {
		wg.Wait()
		conn.Close()
		close(w.done)
	}()
	return nil
}

// stop ends the worker and waits for it.
func (w *gnmiWorker) stop() {
	w.cancel()
	<-w.done
}

// loop runs a pass on every wake and at every resync; a failed pass runs
// again with exponential backoff (minBackoff … backoffLimit).
func (w *gnmiWorker) loop(ctx context.Context, c gpb.GNMIClient) {
	backoff := time.Duration(0)
	resync := time.NewTicker(w.cfg.ResyncPeriod)
	defer resync.Stop()
	var retry <-chan time.Time
	for {
		resynced := false
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
		case <-resync.C:
			resynced = true
		case <-retry:
		}
		retry = nil
		err := w.pass(ctx, c, resynced)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			backoff = 0
			continue
		}
		limit := w.backoffLimit
		if errors.Is(err, errCommitWaiting) {
			// Nothing tells the worker when the commit is confirmed:
			// try again soon, so the change follows within seconds.
			limit = min(limit, commitWaitBackoff)
		}
		backoff = min(max(2*backoff, minBackoff), limit)
		if !slices.ContainsFunc(w.quiet, func(q error) bool { return errors.Is(err, q) }) {
			w.log.Warn(w.what, "err", err, "retry_in", backoff)
		}
		retry = time.After(backoff)
	}
}
