package server

import (
	"context"
	"strings"
	"time"

	"github.com/openconfig/gnmi/path"
	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/protobuf/proto"
)

// sampler sends the leaves under its queries every interval. It serves
// SAMPLE subscriptions, the counters of TARGET_DEFINED subscriptions, and
// the heartbeat of ON_CHANGE subscriptions. It is owned by the goroutine
// that runs the subscription.
type sampler struct {
	queries []query
	every   time.Duration
	next    time.Time

	// track remembers what was sent, to report leaves that disappeared
	// between samples as deletes and to suppress redundant values. An
	// ON_CHANGE heartbeat does not track: deletes reach it on change.
	track bool
	// suppress sends a leaf only when its value changed since it was last
	// sent, or when heartbeat has passed since then (0: never).
	suppress  bool
	heartbeat time.Duration

	last  map[string]*sampled // by leaf path key, when tracking
	round uint64              // sample number, to find leaves that vanished
	buf   []*gpb.Notification // reused between samples
	lbuf  []leaf
}

// sampled is what a sampler last sent of one leaf.
type sampled struct {
	path  *gpb.Path
	val   *gpb.TypedValue
	sent  time.Time
	round uint64
}

// run takes one sample at now. With send false it only records the
// values, as the baseline of an updates_only subscription.
func (sm *sampler) run(ctx context.Context, s *Server, snd *sender, now time.Time, send bool) error {
	// Keep to the schedule; after a stall, start again from now.
	if sm.next = sm.next.Add(sm.every); !sm.next.After(now) {
		sm.next = now.Add(sm.every)
	}
	var err error
	if sm.buf, err = s.collect(sm.queries, nil, sm.buf[:0]); err != nil {
		return err
	}
	ts := now.UnixNano()
	sm.round++
	if sm.track && sm.last == nil {
		sm.last = map[string]*sampled{}
	}
	for _, n := range sm.buf {
		sm.lbuf = leaves(n, sm.lbuf[:0])
		for _, l := range sm.lbuf {
			if l.val == nil {
				continue
			}
			if !sm.track {
				if send {
					if err := snd.add(ctx, ts, l); err != nil {
						return err
					}
				}
				continue
			}
			key := strings.Join(path.ToStrings(l.path, false), "\x00")
			prev := sm.last[key]
			if prev == nil {
				prev = &sampled{}
				sm.last[key] = prev
			}
			prev.round = sm.round
			if sm.suppress && prev.val != nil && (prev.val == l.val || proto.Equal(prev.val, l.val)) &&
				(sm.heartbeat == 0 || now.Sub(prev.sent) < sm.heartbeat) {
				continue
			}
			prev.path, prev.val, prev.sent = l.path, l.val, now
			if send {
				if err := snd.add(ctx, ts, l); err != nil {
					return err
				}
			}
		}
	}
	clear(sm.buf)
	for key, prev := range sm.last {
		if prev.round == sm.round {
			continue
		}
		delete(sm.last, key)
		if send {
			if err := snd.add(ctx, ts, leaf{path: prev.path}); err != nil {
				return err
			}
		}
	}
	return snd.flush(ctx)
}

// nextSample returns the sampler due first, or nil when there is none.
func nextSample(sms []*sampler) *sampler {
	var first *sampler
	for _, sm := range sms {
		if first == nil || sm.next.Before(first.next) {
			first = sm
		}
	}
	return first
}
