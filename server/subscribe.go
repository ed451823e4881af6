package server

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Subscribe implements gNMI Subscribe from the core's telemetry cache,
// which holds every configuration leaf (published at each commit) and
// every state leaf (published by the reconcilers).
//
//   - ONCE sends the current leaves, sync_response, and ends.
//   - POLL does the same at the start and at every Poll request.
//   - STREAM sends the current leaves, sync_response, then:
//     ON_CHANGE: every change and delete as it reaches the cache;
//     SAMPLE: every leaf each sample_interval (0: the minimum, 100 ms),
//     with suppress_redundant only leaves whose value changed, plus all
//     of them each heartbeat_interval; leaves gone since the last sample
//     as deletes;
//     TARGET_DEFINED: counters (leaves of type counter64, such as
//     interface and drop counters) as SAMPLE at sample_interval (default
//     10 s), every other leaf ON_CHANGE.
//     heartbeat_interval on ON_CHANGE re-sends every leaf at that interval.
//
// Encodings: PROTO sends the cache's scalar TypedValues as they are; JSON
// and JSON_IETF send each leaf as a JSON scalar (RFC 7951 rules for
// JSON_IETF). updates_only skips the initial leaves: ONCE sends only
// sync_response; POLL sends only sync_response at the start, then all
// leaves at each Poll; STREAM sends sync_response, then ON_CHANGE leaves
// as they change and SAMPLE leaves from the second sample on (the first
// is the baseline of suppress_redundant). The Depth extension on the
// SubscribeRequest limits how far below each path leaves are sent, in the
// initial sync, changes, samples and deletes alike (depth.go).
// Paths may use "*" and "..." and omit list keys. Leaves that changed at
// the same time travel in one notification whose timestamp is theirs
// (for samples, the sample time); update paths are full paths, and the
// prefix carries the request's target.
//
// Flow control: a STREAM subscriber's changes wait in a queue that keeps
// at most one change per leaf (the latest value, or the delete), so a
// slow client receives fewer intermediate values but always converges,
// and never slows the core. A queue holding more than maxPending distinct
// paths ends the subscription with ResourceExhausted.
func (s *Server) Subscribe(stream gpb.GNMI_SubscribeServer) error {
	ctx := stream.Context()
	if _, err := s.authorize(ctx, false); err != nil {
		return err
	}
	req, err := stream.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return err
	}
	list := req.GetSubscribe()
	if list == nil {
		return status.Error(codes.InvalidArgument, "the first SubscribeRequest must carry a subscription list")
	}
	sub, err := s.compile(list, req.GetExtension())
	if err != nil {
		return err
	}
	snd := &sender{stream: stream, target: sub.target, encoding: sub.encoding, root: s.core.SchemaRoot(), depth: newDepthFilter(sub)}
	switch sub.mode {
	case gpb.SubscriptionList_ONCE:
		err = s.once(ctx, snd, sub)
	case gpb.SubscriptionList_POLL:
		err = s.poll(ctx, stream, snd, sub)
	default:
		err = s.streamSub(ctx, stream, snd, sub)
	}
	// The error, if any, goes to the client, not to the log.
	s.log.Debug("gnmi subscribe ended", "mode", sub.mode, "sent", snd.sent)
	return toStatus(err)
}

// once serves a ONCE subscription.
func (s *Server) once(ctx context.Context, snd *sender, sub *subscription) error {
	if !sub.updatesOnly {
		if err := s.dumpAll(ctx, snd, sub); err != nil {
			return err
		}
	}
	return snd.syncResponse(ctx)
}

// dumpAll sends every leaf under every entry of sub, with its own
// timestamp.
func (s *Server) dumpAll(ctx context.Context, snd *sender, sub *subscription) error {
	var buf []*gpb.Notification
	var lbuf []leaf
	for _, e := range sub.entries {
		var err error
		if buf, err = s.collect(e.queries, e.counters, buf[:0]); err != nil {
			return err
		}
		for _, n := range buf {
			if lbuf, err = snd.addNotification(ctx, n.GetTimestamp(), n, lbuf); err != nil {
				return err
			}
		}
		if err := s.aftDump(ctx, snd, e.queries); err != nil { // aft.go
			return err
		}
	}
	return snd.flush(ctx)
}

// receiver reads the client's requests after the first one. For POLL it
// passes each Poll on polls, and EOF (the client closed its side) ends
// the subscription; any other request is an error. For STREAM, EOF is not
// an error: the subscription goes on.
//
// It ends on a receive error or when the RPC's context does; gRPC cancels
// that context when Subscribe returns, so Subscribe waits for it only when
// the context is already done.
type receiver struct {
	polls chan struct{}
	errc  chan error // at most one error
	wg    sync.WaitGroup
}

func startReceiver(ctx context.Context, stream gpb.GNMI_SubscribeServer, poll bool) *receiver {
	r := &receiver{polls: make(chan struct{}), errc: make(chan error, 1)}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			req, err := stream.Recv()
			switch {
			case errors.Is(err, io.EOF):
				if poll {
					r.errc <- err // no more polls: the RPC is done
				}
				return
			case err != nil:
				r.errc <- err
				return
			case poll && req.GetPoll() != nil:
				select {
				case r.polls <- struct{}{}:
				case <-ctx.Done():
					return
				}
			case poll:
				r.errc <- status.Error(codes.InvalidArgument, "a POLL subscription takes only Poll requests after the subscription list")
				return
			default:
				r.errc <- status.Error(codes.InvalidArgument, "a STREAM subscription takes no request after the subscription list")
				return
			}
		}
	}()
	return r
}

// stop waits for the receiver when it can end by itself: when the
// context is done (or the receiver already ended).
func (r *receiver) stop(ctx context.Context) {
	if ctx.Err() != nil {
		r.wg.Wait()
	}
}

// poll serves a POLL subscription.
func (s *Server) poll(ctx context.Context, stream gpb.GNMI_SubscribeServer, snd *sender, sub *subscription) error {
	if err := s.once(ctx, snd, sub); err != nil {
		return err
	}
	r := startReceiver(ctx, stream, true)
	defer r.stop(ctx)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-r.errc:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case <-r.polls:
			if err := s.dumpAll(ctx, snd, sub); err != nil {
				return err
			}
			if err := snd.syncResponse(ctx); err != nil {
				return err
			}
		}
	}
}

// streamSub serves a STREAM subscription.
func (s *Server) streamSub(ctx context.Context, stream gpb.GNMI_SubscribeServer, snd *sender, sub *subscription) error {
	q := newQueue()
	f := s.fan
	// The forwarding table streams from its own queue (aft.go), every mode
	// as ON_CHANGE; registered before the initial sync.
	var aftQs []query
	for _, e := range sub.entries {
		aftQs = append(aftQs, e.queries...)
	}
	aft := s.aftWatch(aftQs)
	defer aft.close()
	var samplers []*sampler
	for _, e := range sub.entries {
		switch e.mode {
		case gpb.SubscriptionMode_SAMPLE:
			samplers = append(samplers, &sampler{queries: e.queries, every: e.sample, track: true, suppress: e.suppress, heartbeat: e.heartbeat})
			continue
		case gpb.SubscriptionMode_TARGET_DEFINED:
			if len(e.counters) > 0 {
				samplers = append(samplers, &sampler{queries: e.counters, every: e.sample, track: true})
			}
		}
		// ON_CHANGE, and TARGET_DEFINED for all but counters. Registered
		// before the initial sync, so no change falls between the two.
		defer f.watch(q, e.queries, e.counters)()
		if e.heartbeat > 0 {
			samplers = append(samplers, &sampler{queries: e.queries, every: e.heartbeat, next: time.Now().Add(e.heartbeat)})
		}
	}

	// Initial sync: current leaves of the ON_CHANGE parts, the first
	// sample of the SAMPLE parts.
	now := time.Now()
	for _, e := range sub.entries {
		if sub.updatesOnly {
			continue
		}
		if e.mode == gpb.SubscriptionMode_SAMPLE {
			if err := s.aftDump(ctx, snd, e.queries); err != nil {
				return err
			}
			continue
		}
		if err := s.dumpEntry(ctx, snd, e); err != nil {
			return err
		}
	}
	for _, sm := range samplers {
		if sm.track {
			if err := sm.run(ctx, s, snd, now, !sub.updatesOnly); err != nil {
				return err
			}
		}
	}
	if err := snd.syncResponse(ctx); err != nil {
		return err
	}

	r := startReceiver(ctx, stream, false)
	defer r.stop(ctx)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var batch []*change
	var lbuf []leaf
	for {
		next := nextSample(samplers)
		var tick <-chan time.Time
		if next != nil {
			timer.Reset(time.Until(next.next))
			tick = timer.C
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-r.errc:
			return err
		case now := <-tick:
			if err := next.run(ctx, s, snd, now, true); err != nil {
				return err
			}
		case <-aft.ready():
			if err := s.aftChanges(ctx, snd, aft); err != nil {
				return err
			}
		case <-aft.resumed():
			aft.resume()
		case <-q.ready:
			var overflow bool
			batch, overflow = q.take(batch)
			if overflow {
				return status.Errorf(codes.ResourceExhausted, "subscriber too slow: more than %d leaves waiting; subscribe again", maxPending)
			}
			for _, c := range batch {
				var err error
				if lbuf, err = snd.addNotification(ctx, c.n.GetTimestamp(), c.n, lbuf); err != nil {
					return err
				}
			}
			if err := snd.flush(ctx); err != nil {
				return err
			}
		}
	}
}

// dumpEntry sends every leaf of one entry with its own timestamp.
func (s *Server) dumpEntry(ctx context.Context, snd *sender, e *subEntry) error {
	return s.dumpAll(ctx, snd, &subscription{entries: []*subEntry{e}})
}
