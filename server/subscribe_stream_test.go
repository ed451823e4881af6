package server

import (
	"context"
	"strings"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/protobuf/proto"
)

func streamList(subs ...*gpb.Subscription) *gpb.SubscriptionList {
	return &gpb.SubscriptionList{Mode: gpb.SubscriptionList_STREAM, Encoding: gpb.Encoding_PROTO, Subscription: subs}
}

func TestSubscribeStreamOnChange(t *testing.T) {
	e := newSubEnv(t)
	e.setVRF(t, "red", "65000:1", "tenant red")
	e.setVRF(t, "blue", "65000:2", "tenant blue")
	e.setCounters(t, "eth0", true, 1)
	st := e.subscribe(t, streamList(
		subAt("/network-instances/network-instance/config", gpb.SubscriptionMode_ON_CHANGE),
		subAt("/interfaces/interface[name=eth0]/state", gpb.SubscriptionMode_ON_CHANGE),
	))
	got := untilSync(t, st)
	if !proto.Equal(got.vals[rdBlue], strVal("65000:2")) || !proto.Equal(got.vals[inPkts], uintVal(1)) {
		t.Fatalf("initial sync lacks values: %v", pathKeys(got.vals))
	}

	// A commit that changes one leaf streams that leaf.
	descr := "/network-instances/network-instance[name=red]/config/description"
	e.setVRF(t, "red", "65000:1", "tenant red, renamed")
	recvUntil(t, st, func(r *received, _ *gpb.Notification) bool {
		return proto.Equal(r.vals[descr], strVal("tenant red, renamed"))
	})

	// Deleting a VRF streams deletes of its leaves.
	if _, err := e.core.Set(context.Background(), "test", &gpb.SetRequest{
		Delete: []*gpb.Path{subPath(t, "/network-instances/network-instance[name=blue]")},
	}); err != nil {
		t.Fatal(err)
	}
	recvUntil(t, st, func(r *received, _ *gpb.Notification) bool { return r.deletes[rdBlue] })

	// State: an update, then the removal of the whole subtree.
	e.setCounters(t, "eth0", false, 2)
	recvUntil(t, st, func(r *received, _ *gpb.Notification) bool {
		return proto.Equal(r.vals[inPkts], uintVal(2)) && proto.Equal(r.vals[operUp], strVal("DOWN"))
	})
	if err := e.core.DeleteState("/interfaces/interface[name=eth0]/state"); err != nil {
		t.Fatal(err)
	}
	recvUntil(t, st, func(r *received, _ *gpb.Notification) bool { return r.deletes[inPkts] && r.deletes[operUp] })
}

func TestSubscribeStreamUpdatesOnly(t *testing.T) {
	e := newSubEnv(t)
	e.setVRF(t, "red", "65000:1", "tenant red")
	st := e.subscribe(t, &gpb.SubscriptionList{
		Mode:         gpb.SubscriptionList_STREAM,
		UpdatesOnly:  true,
		Encoding:     gpb.Encoding_JSON_IETF,
		Subscription: []*gpb.Subscription{subAt("/network-instances", gpb.SubscriptionMode_ON_CHANGE)},
	})
	if got := untilSync(t, st); len(got.vals) != 0 {
		t.Fatalf("updates_only sent the current leaves: %v", pathKeys(got.vals))
	}
	e.setVRF(t, "red", "65000:9", "tenant red")
	r := recvUntil(t, st, func(r *received, _ *gpb.Notification) bool { return r.vals[rdRed] != nil })
	if !proto.Equal(r.vals[rdRed], ietfVal(`"65000:9"`)) {
		t.Fatalf("rd = %v", r.vals[rdRed])
	}
	if _, ok := r.vals["/network-instances/network-instance[name=red]/config/description"]; ok {
		t.Fatalf("unchanged description sent")
	}
}

func TestSubscribeStreamSample(t *testing.T) {
	counters := "/interfaces/interface[name=eth0]/state/counters"
	sample := func(suppress bool, heartbeat uint64) *gpb.SubscriptionList {
		return streamList(&gpb.Subscription{
			Path: subPath(t, counters), Mode: gpb.SubscriptionMode_SAMPLE,
			SampleInterval: 100e6, SuppressRedundant: suppress, HeartbeatInterval: heartbeat,
		})
	}
	t.Run("every interval", func(t *testing.T) {
		e := newSubEnv(t)
		e.setCounters(t, "eth0", true, 1)
		st := e.subscribe(t, sample(false, 0))
		if got := untilSync(t, st); len(got.vals) != 6 {
			t.Fatalf("first sample: %v", pathKeys(got.vals))
		}
		// Unchanged leaves come again, every sample, all six at once.
		for range 3 {
			recvUntil(t, st, func(_ *received, n *gpb.Notification) bool {
				if len(n.GetUpdate()) != 6 {
					t.Fatalf("sample with %d leaves, want 6", len(n.GetUpdate()))
				}
				return true
			})
		}
		// A leaf that disappears is reported deleted.
		if err := e.core.DeleteState(counters); err != nil {
			t.Fatal(err)
		}
		recvUntil(t, st, func(r *received, _ *gpb.Notification) bool { return r.deletes[inPkts] })
	})
	t.Run("suppress redundant", func(t *testing.T) {
		e := newSubEnv(t)
		e.setCounters(t, "eth0", true, 1)
		st := e.subscribe(t, sample(true, 0))
		if got := untilSync(t, st); len(got.vals) != 6 {
			t.Fatalf("first sample: %v", pathKeys(got.vals))
		}
		// Only changed leaves: in/out packets and octets, not the drops.
		e.setCounters(t, "eth0", true, 2)
		r := recvUntil(t, st, func(r *received, _ *gpb.Notification) bool { return len(r.vals) >= 4 })
		if len(r.vals) != 4 || !proto.Equal(r.vals[inPkts], uintVal(2)) {
			t.Fatalf("after a change: leaves %v", pathKeys(r.vals))
		}
		for p := range r.vals {
			if strings.HasSuffix(p, "drops") {
				t.Fatalf("unchanged %s sent", p)
			}
		}
	})
	t.Run("suppress redundant with heartbeat", func(t *testing.T) {
		e := newSubEnv(t)
		e.setCounters(t, "eth0", true, 1)
		st := e.subscribe(t, sample(true, 300e6))
		untilSync(t, st)
		// Nothing changes, yet the heartbeat sends every leaf again.
		r := recvUntil(t, st, func(r *received, _ *gpb.Notification) bool { return len(r.vals) == 6 })
		if !proto.Equal(r.vals[inPkts], uintVal(1)) {
			t.Fatalf("heartbeat in-pkts = %v", r.vals[inPkts])
		}
	})
}

func TestSubscribeStreamOnChangeHeartbeat(t *testing.T) {
	e := newSubEnv(t)
	e.setVRF(t, "red", "65000:1", "tenant red")
	st := e.subscribe(t, streamList(&gpb.Subscription{
		Path: subPath(t, rdRed), Mode: gpb.SubscriptionMode_ON_CHANGE, HeartbeatInterval: 100e6,
	}))
	untilSync(t, st)
	// No change: the heartbeat re-sends the leaf.
	recvUntil(t, st, func(r *received, _ *gpb.Notification) bool { return proto.Equal(r.vals[rdRed], strVal("65000:1")) })
}

func TestSubscribeStreamTargetDefined(t *testing.T) {
	e := newSubEnv(t)
	e.setCounters(t, "eth0", true, 1)
	st := e.subscribe(t, streamList(&gpb.Subscription{
		Path: subPath(t, "/interfaces/interface[name=eth0]/state"), Mode: gpb.SubscriptionMode_TARGET_DEFINED,
		SampleInterval: 100e6,
	}))
	if got := untilSync(t, st); len(got.vals) != 9 {
		t.Fatalf("initial sync: want name and type (the applied config), oper-status and 6 counters, got %v", pathKeys(got.vals))
	}
	// Counters are sampled: all six again although none changed, and
	// without oper-status.
	recvUntil(t, st, func(_ *received, n *gpb.Notification) bool {
		if len(n.GetUpdate()) != 6 {
			t.Fatalf("counter sample has %d leaves: %v", len(n.GetUpdate()), n)
		}
		for _, u := range n.GetUpdate() {
			if !strings.Contains(pathString(u.GetPath()), "/counters/") {
				t.Fatalf("sample carries %s", pathString(u.GetPath()))
			}
		}
		return true
	})
	// Other leaves stream on change, alone.
	e.setCounters(t, "eth0", false, 1)
	recvUntil(t, st, func(_ *received, n *gpb.Notification) bool {
		for _, u := range n.GetUpdate() {
			if pathString(u.GetPath()) == operUp {
				if len(n.GetUpdate()) != 1 || !proto.Equal(u.GetVal(), strVal("DOWN")) {
					t.Fatalf("on-change notification: %v", n)
				}
				return true
			}
		}
		return false
	})
}

// TestSubscribeSlowClient checks flow control: a client that reads nothing
// while the core writes far more than gRPC's windows hold does not block
// the writer, and once it reads it converges on the latest values.
func TestSubscribeSlowClient(t *testing.T) {
	e := newSubEnv(t)
	ps := counterPaths(100)
	e.publishCounters(t, ps, 0)
	st := e.subscribe(t, streamList(subAt("/interfaces", gpb.SubscriptionMode_ON_CHANGE)))
	untilSync(t, st)
	const rounds = 300 // 180,000 updates
	for r := 1; r <= rounds; r++ {
		e.publishCounters(t, ps, uint64(r))
	}
	want := uintVal(rounds)
	got := recvUntil(t, st, func(r *received, _ *gpb.Notification) bool {
		for _, p := range ps {
			if !proto.Equal(r.vals[pathString(p)], want) {
				return false
			}
		}
		return true
	})
	n := 0
	for _, note := range got.notes {
		n += len(note.GetUpdate())
	}
	t.Logf("%d of %d updates reached the client", n, rounds*len(ps))
}
