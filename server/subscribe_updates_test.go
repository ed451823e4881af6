package server

import (
	"strings"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/protobuf/proto"
)

// updatesOnly is a STREAM list with updates_only set.
func updatesOnly(subs ...*gpb.Subscription) *gpb.SubscriptionList {
	l := streamList(subs...)
	l.UpdatesOnly = true
	return l
}

// expectEmptySync reads up to sync_response and fails on any leaf before it.
func expectEmptySync(t *testing.T, st gpb.GNMI_SubscribeClient) {
	t.Helper()
	if got := untilSync(t, st); len(got.vals) != 0 || len(got.deletes) != 0 {
		t.Fatalf("updates_only sent leaves before sync_response: %v", pathKeys(got.vals))
	}
}

func TestSubscribeUpdatesOnlySample(t *testing.T) {
	counters := "/interfaces/interface[name=eth0]/state/counters"
	sample := func(suppress bool) *gpb.Subscription {
		return &gpb.Subscription{Path: subPath(t, counters), Mode: gpb.SubscriptionMode_SAMPLE, SampleInterval: 100e6, SuppressRedundant: suppress}
	}
	t.Run("every sample after the first", func(t *testing.T) {
		e := newSubEnv(t)
		e.setCounters(t, "eth0", true, 1)
		st := e.subscribe(t, updatesOnly(sample(false)))
		expectEmptySync(t, st)
		// The next sample is the first update: every leaf, unchanged.
		recvUntil(t, st, func(_ *received, n *gpb.Notification) bool {
			if len(n.GetUpdate()) != 6 {
				t.Fatalf("first update has %d leaves, want 6: %v", len(n.GetUpdate()), n)
			}
			return true
		})
	})
	t.Run("suppress redundant", func(t *testing.T) {
		e := newSubEnv(t)
		e.setCounters(t, "eth0", true, 1)
		st := e.subscribe(t, updatesOnly(sample(true)))
		expectEmptySync(t, st)
		// The values at subscription time are the baseline: nothing is
		// sent until a leaf changes, and then only the changed leaves.
		e.setCounters(t, "eth0", true, 2)
		r := recvUntil(t, st, func(r *received, _ *gpb.Notification) bool { return len(r.vals) > 0 })
		if len(r.vals) != 4 || !proto.Equal(r.vals[inPkts], uintVal(2)) {
			t.Fatalf("first update: %v", pathKeys(r.vals))
		}
		for p := range r.vals {
			if strings.HasSuffix(p, "drops") {
				t.Fatalf("unchanged %s sent", p)
			}
		}
	})
}

func TestSubscribeUpdatesOnlyOnChange(t *testing.T) {
	t.Run("heartbeat", func(t *testing.T) {
		e := newSubEnv(t)
		e.setVRF(t, "red", "65000:1", "tenant red")
		st := e.subscribe(t, updatesOnly(&gpb.Subscription{
			Path: subPath(t, rdRed), Mode: gpb.SubscriptionMode_ON_CHANGE, HeartbeatInterval: 100e6,
		}))
		expectEmptySync(t, st)
		// The heartbeat, not a change, sends the leaf.
		recvUntil(t, st, func(r *received, _ *gpb.Notification) bool { return proto.Equal(r.vals[rdRed], strVal("65000:1")) })
	})
	t.Run("state and deletes", func(t *testing.T) {
		e := newSubEnv(t)
		e.setCounters(t, "eth0", true, 1)
		st := e.subscribe(t, updatesOnly(subAt("/interfaces/interface[name=eth0]/state", gpb.SubscriptionMode_ON_CHANGE)))
		expectEmptySync(t, st)
		e.setCounters(t, "eth0", false, 1)
		r := recvUntil(t, st, func(r *received, _ *gpb.Notification) bool { return r.vals[operUp] != nil })
		if !proto.Equal(r.vals[operUp], strVal("DOWN")) || r.vals[inPkts] != nil {
			t.Fatalf("first update: %v", r.vals)
		}
		if err := e.core.DeleteState("/interfaces/interface[name=eth0]/state"); err != nil {
			t.Fatal(err)
		}
		recvUntil(t, st, func(r *received, _ *gpb.Notification) bool { return r.deletes[inPkts] && r.deletes[operUp] })
	})
}

func TestSubscribeUpdatesOnlyTargetDefined(t *testing.T) {
	e := newSubEnv(t)
	e.setCounters(t, "eth0", true, 1)
	st := e.subscribe(t, updatesOnly(&gpb.Subscription{
		Path: subPath(t, "/interfaces/interface[name=eth0]/state"), Mode: gpb.SubscriptionMode_TARGET_DEFINED, SampleInterval: 100e6,
	}))
	expectEmptySync(t, st)
	// The first update is the next counter sample, without oper-status.
	recvUntil(t, st, func(_ *received, n *gpb.Notification) bool {
		if len(n.GetUpdate()) != 6 {
			t.Fatalf("first update has %d leaves, want the 6 counters: %v", len(n.GetUpdate()), n)
		}
		return true
	})
	e.setCounters(t, "eth0", false, 1)
	recvUntil(t, st, func(r *received, _ *gpb.Notification) bool { return proto.Equal(r.vals[operUp], strVal("DOWN")) })
}

// TestSubscribeUpdatesOnlyPoll: POLL sends only sync_response at the
// start, then every leaf at each Poll.
func TestSubscribeUpdatesOnlyPoll(t *testing.T) {
	e := newSubEnv(t)
	e.setCounters(t, "eth0", true, 1)
	st := e.subscribe(t, &gpb.SubscriptionList{
		Mode: gpb.SubscriptionList_POLL, UpdatesOnly: true, Encoding: gpb.Encoding_PROTO,
		Subscription: []*gpb.Subscription{subAt("/interfaces/interface[name=eth0]/state/counters", 0)},
	})
	expectEmptySync(t, st)
	for _, pkts := range []uint64{1, 2} {
		e.setCounters(t, "eth0", true, pkts)
		if err := st.Send(&gpb.SubscribeRequest{Request: &gpb.SubscribeRequest_Poll{Poll: &gpb.Poll{}}}); err != nil {
			t.Fatal(err)
		}
		got := untilSync(t, st)
		if len(got.vals) != 6 || !proto.Equal(got.vals[inPkts], uintVal(pkts)) {
			t.Fatalf("poll: %v", got.vals)
		}
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	expectEOF(t, st)
}
