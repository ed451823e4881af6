package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc"
)

// Backoff bounds of a node's retries.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 30 * time.Second
)

// nodeWorker owns the connection to one node's isthmusd and brings the
// node to the latest intent it was given: one goroutine per node, so a
// slow or dead node delays nobody else.
type nodeWorker struct {
	name string
	addr string
	log  *slog.Logger
	cfg  *Config
	// report is called after every attempt with what the node holds (nil
	// when unknown) and the error, if any.
	report func(name string, have *nodeConfig, err error)
	// sets counts the Set RPCs sent, for tests and benchmarks.
	sets *countingSets
	// diff makes the next Set towards the intent; nil: setRequest (a
	// node). Route reflectors use reflectorSetRequest.
	diff func(nodeConfig, nodeIntent) (*gpb.SetRequest, nodeConfig, error)

	wake chan struct{} // buffered 1: something changed

	mu     sync.Mutex // guards want, stale
	want   nodeIntent
	stale  bool // what the node holds must be read again
	cancel context.CancelFunc
	done   chan struct{}
}

// countingSets counts Set RPCs across all workers.
type countingSets struct {
	mu sync.Mutex // guards n
	n  int64
}

func (c *countingSets) add() {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
}

func (c *countingSets) get() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func newNodeWorker(name, addr string, cfg *Config, sets *countingSets, report func(string, *nodeConfig, error)) *nodeWorker {
	return &nodeWorker{
		name: name, addr: addr, cfg: cfg, sets: sets, report: report,
		log:  cfg.Logger.With("node", name, "gnmi", addr),
		wake: make(chan struct{}, 1), stale: true, done: make(chan struct{}),
	}
}

// set hands the worker a new intent.
func (w *nodeWorker) set(in nodeIntent) {
	w.mu.Lock()
	same := w.want.vrfs != nil && w.want.equal(in)
	w.want = in
	w.mu.Unlock()
	if !same {
		w.poke()
	}
}

func (w *nodeWorker) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *nodeWorker) markStale() {
	w.mu.Lock()
	w.stale = true
	w.mu.Unlock()
	w.poke()
}

// start runs the worker until stop.
func (w *nodeWorker) start(ctx context.Context) error {
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
	wg.Add(2)
	go func() { defer wg.Done(); w.watch(ctx, client) }()
	go func() { defer wg.Done(); w.loop(ctx, client) }()
	go func() {
		wg.Wait()
		conn.Close()
		close(w.done)
	}()
	return nil
}

// stop ends the worker and waits for it.
func (w *nodeWorker) stop() {
	w.cancel()
	<-w.done
}

// loop applies the latest intent whenever it changes, the node comes back,
// or the resync period passes; failures retry with exponential backoff.
func (w *nodeWorker) loop(ctx context.Context, c gpb.GNMIClient) {
	var (
		have    *nodeConfig
		lastErr error
	)
	backoff := time.Duration(0)
	resync := time.NewTicker(w.cfg.ResyncPeriod)
	defer resync.Stop()
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
		case <-resync.C:
			have = nil
		case <-retry:
		}
		retry = nil
		w.mu.Lock()
		want, stale := w.want, w.stale
		w.stale = false
		w.mu.Unlock()
		if stale {
			have = nil
		}
		next, err := w.apply(ctx, c, have, want)
		if ctx.Err() != nil {
			return
		}
		// Report only news: a pass that changed nothing and failed the
		// same way as the last one would only wake the leader for nothing.
		if next != have || errString(err) != errString(lastErr) {
			w.report(w.name, next, err)
		}
		have, lastErr = next, err
		if err == nil || errors.Is(err, errNoBGP) {
			backoff = 0
			continue
		}
		backoff = min(max(2*backoff, minBackoff), maxBackoff)
		w.log.Warn("configure node", "err", err, "retry_in", backoff)
		retry = time.After(backoff)
	}
}

// apply reads the node if what it holds is unknown, then sends one Set with
// the difference. It returns what the node holds afterwards (nil: unknown).
func (w *nodeWorker) apply(ctx context.Context, c gpb.GNMIClient, have *nodeConfig, want nodeIntent) (*nodeConfig, error) {
	if have == nil {
		rctx, cancel := context.WithTimeout(ctx, w.cfg.GNMI.Timeout)
		nc, err := readNode(rctx, c)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("read node %s: %w", w.name, err)
		}
		have = &nc
	}
	diff := setRequest
	if w.diff != nil {
		diff = w.diff
	}
	for {
		req, next, err := diff(*have, want)
		if err != nil {
			return have, err
		}
		if req == nil {
			break
		}
		sctx, cancel := context.WithTimeout(ctx, w.cfg.GNMI.Timeout)
		_, err = c.Set(sctx, req)
		cancel()
		w.sets.add()
		if err != nil {
			// A failed Set changed nothing (one transaction), but a
			// timeout leaves it unknown: read again next time.
			return nil, fmt.Errorf("set node %s: %w", w.name, err)
		}
		w.log.Debug("configured node", "deleted", len(req.Delete), "replaced", len(req.Replace))
		have = &next
		if ctx.Err() != nil {
			return have, ctx.Err()
		}
	}
	if len(want.neighbors) > 0 && have.bgpProtocol == "" {
		return have, errNoBGP
	}
	return have, nil
}

// watch keeps a subscription to the node's commit revision open: whenever
// it (re)connects, the node may have restarted or lost its data, so what it
// holds is read again.
func (w *nodeWorker) watch(ctx context.Context, c gpb.GNMIClient) {
	req := &gpb.SubscribeRequest{Request: &gpb.SubscribeRequest_Subscribe{Subscribe: &gpb.SubscriptionList{
		Mode:     gpb.SubscriptionList_STREAM,
		Encoding: gpb.Encoding_JSON_IETF,
		Subscription: []*gpb.Subscription{{
			Path: mustPath("/system/state/revision"),
			Mode: gpb.SubscriptionMode_ON_CHANGE,
		}},
	}}}
	backoff := time.Duration(0)
	for {
		connected := w.subscribeOnce(ctx, c, req)
		if ctx.Err() != nil {
			return
		}
		if connected {
			backoff = 0
		}
		backoff = min(max(2*backoff, minBackoff), maxBackoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
	}
}

// subscribeOnce runs one subscription until it breaks; it reports whether
// it got as far as the initial sync.
func (w *nodeWorker) subscribeOnce(ctx context.Context, c gpb.GNMIClient, req *gpb.SubscribeRequest) bool {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.Subscribe(sctx)
	if err != nil {
		return false
	}
	if err := stream.Send(req); err != nil {
		return false
	}
	synced := false
	for {
		resp, err := stream.Recv()
		if err != nil {
			if synced {
				w.log.Info("node connection lost", "err", err)
				w.markStale()
			}
			return synced
		}
		if resp.GetSyncResponse() && !synced {
			synced = true
			w.markStale()
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
