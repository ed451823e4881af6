package kube

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Backoff bounds of a node's retries.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 30 * time.Second
	// commitWaitBackoff bounds the wait before a Set refused because a
	// confirmed commit waits on the node is sent again.
	commitWaitBackoff = 5 * time.Second
)

// errCommitWaiting marks a Set a node refused because a confirmed commit
// waits for its confirmation there: while one does, isthmusd answers
// every Set without the commit extension FailedPrecondition, as the gNMI
// commit confirmed specification says. Nothing was applied; the worker
// sends the change again, with backoff, until the commit is confirmed,
// cancelled or rolled back, and the node's condition says which commit
// holds it up.
var errCommitWaiting = errors.New("a confirmed commit waits for confirmation on the node")

// setError wraps the error of a Set of what ("" for the node's
// configuration, "policy", "services") to node.
func setError(node, what string, err error) error {
	if what != "" {
		what = " " + what
	}
	if status.Code(err) == codes.FailedPrecondition {
		return fmt.Errorf("set node %s%s: %w (%s)", node, what, errCommitWaiting, status.Convert(err).Message())
	}
	return fmt.Errorf("set node %s%s: %w", node, what, err)
}

// nodeWorker brings one node's isthmusd to the latest intent it was given
// (its VRFs, namespace entries and BGP neighbors) over its own gnmiWorker:
// one goroutine per node, so a slow or dead node delays nobody else. A
// subscription to the node's commit revision makes it read the node again
// after a restart.
type nodeWorker struct {
	gnmiWorker
	// report is called after every attempt with what the node holds (nil
	// when unknown) and the error, if any.
	report func(name string, have *nodeConfig, err error)
	// sets counts the Set RPCs sent, for tests and benchmarks.
	sets *countingSets
	// diff makes the next Set towards the intent; nil: setRequest (a
	// node). Route reflectors use reflectorSetRequest.
	diff func(nodeConfig, nodeIntent) (*gpb.SetRequest, nodeConfig, error)

	mu    sync.Mutex // guards want, stale
	want  nodeIntent
	stale bool // what the node holds must be read again

	// have is what the node holds (nil: unknown) and lastErr the error of
	// the last pass; owned by the loop goroutine.
	have    *nodeConfig
	lastErr error
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
	w := &nodeWorker{sets: sets, report: report, stale: true}
	w.gnmiWorker = newGNMIWorker(name, addr, cfg, cfg.Logger.With("node", name, "gnmi", addr), "configure node", maxBackoff)
	w.pass, w.watchNode = w.configure, w.watch
	return w
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

func (w *nodeWorker) markStale() {
	w.mu.Lock()
	w.stale = true
	w.mu.Unlock()
	w.poke()
}

// configure is the worker's pass: it applies the latest intent (the node
// read again when it came back or the resync period passed) and reports
// news. A node without BGP is not retried: its neighbors wait for the
// next change.
func (w *nodeWorker) configure(ctx context.Context, c gpb.GNMIClient, resync bool) error {
	if resync {
		w.have = nil
	}
	w.mu.Lock()
	want, stale := w.want, w.stale
	w.stale = false
	w.mu.Unlock()
	if stale {
		w.have = nil
	}
	next, err := w.apply(ctx, c, w.have, want)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	// Report only news: a pass that changed nothing and failed the
	// same way as the last one would only wake the leader for nothing.
	if next != w.have || errString(err) != errString(w.lastErr) {
		w.report(w.name, next, err)
	}
	w.have, w.lastErr = next, err
	if errors.Is(err, errNoBGP) {
		return nil
	}
	return err
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
			// timeout leaves it unknown: read again next time. One
			// refused while a confirmed commit waits leaves it known.
			err = setError(w.name, "", err)
			if errors.Is(err, errCommitWaiting) {
				return have, err
			}
			return nil, err
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
