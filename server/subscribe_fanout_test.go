package server

import (
	"context"
	"log/slog"
	"runtime"
	"slices"
	"testing"
	"weak"

	"github.com/openconfig/gnmi/cache"
	"github.com/openconfig/gnmi/path"
	gpb "github.com/openconfig/gnmi/proto/gnmi"

	"github.com/isthmus-net/isthmus/nos"
)

func TestCachePathMatchesCache(t *testing.T) {
	prefixes := []*gpb.Path{nil, {Target: "t"}, {Target: "t", Elem: []*gpb.PathElem{{Name: "a", Key: map[string]string{"k": "v"}}}}}
	paths := []*gpb.Path{
		{},
		{Elem: []*gpb.PathElem{{Name: "interfaces"}, {Name: "interface", Key: map[string]string{"name": "veth1"}}, {Name: "state"}}},
		{Elem: []*gpb.PathElem{{Name: "l", Key: map[string]string{"b": "2", "a": "1", "c": "3"}}, {Name: "x"}}},
	}
	for _, pre := range prefixes {
		for _, p := range paths {
			want := append(path.ToStrings(pre, false), path.ToStrings(p, false)...)
			if got := cachePath(pre, p); !slices.Equal(got, want) {
				t.Errorf("cachePath(%v, %v) = %q, want %q", pre, p, got, want)
			}
		}
	}
}

func TestQueueCoalesces(t *testing.T) {
	q := newQueue()
	mk := func(key string, v uint64) *change {
		return &change{key: key, n: &gpb.Notification{Timestamp: int64(v)}}
	}
	q.push(mk("a", 1))
	q.push(mk("b", 2))
	q.push(mk("a", 3)) // replaces a in place
	q.push(mk("c", 4))
	got, overflow := q.take(nil)
	if overflow {
		t.Fatal("overflow")
	}
	var keys []string
	var ts []int64
	for _, c := range got {
		keys, ts = append(keys, c.key), append(ts, c.n.Timestamp)
	}
	if !slices.Equal(keys, []string{"a", "b", "c"}) || !slices.Equal(ts, []int64{3, 2, 4}) {
		t.Fatalf("took %v %v", keys, ts)
	}
	if again, _ := q.take(got); len(again) != 0 {
		t.Fatalf("queue not emptied: %d", len(again))
	}
	// After take, the same key queues again.
	q.push(mk("a", 5))
	if got, _ := q.take(nil); len(got) != 1 || got[0].n.Timestamp != 5 {
		t.Fatalf("after take: %v", got)
	}
}

// TestFanoutBelongsToItsServer: each server has its own fan-out, fed by
// its core while it has subscriptions, and nothing outlives the core: a
// core and its servers, once dropped, are collected with their cache.
func TestFanoutBelongsToItsServer(t *testing.T) {
	cacheRef := func() weak.Pointer[cache.Cache] {
		st, err := nos.OpenStore(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		core, err := nos.New(st, nos.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if err := core.Start(ctx); err != nil {
			t.Fatal(err)
		}
		a, b := New(core), New(core)
		if a.fan == b.fan {
			t.Fatal("two servers share one fan-out")
		}
		qa, qb := newQueue(), newQueue()
		removeA := a.fan.watch(qa, []query{{"interfaces"}}, nil)
		removeB := b.fan.watch(qb, []query{{"interfaces"}}, nil)
		leaf := &gpb.Notification{Timestamp: 1, Prefix: &gpb.Path{Target: core.Target()}, Update: []*gpb.Update{{
			Path: &gpb.Path{Elem: []*gpb.PathElem{{Name: "interfaces"}, {Name: "interface", Key: map[string]string{"name": "x"}}, {Name: "state"}, {Name: "mtu"}}},
			Val:  &gpb.TypedValue{Value: &gpb.TypedValue_UintVal{UintVal: 1500}},
		}}}
		if err := core.Cache().GnmiUpdate(leaf); err != nil {
			t.Fatal(err)
		}
		for name, q := range map[string]*queue{"a": qa, "b": qb} {
			if got, _ := q.take(nil); len(got) != 1 {
				t.Errorf("server %s got %d changes, want 1", name, len(got))
			}
		}
		removeA()
		removeB()
		return weak.Make(core.Cache())
	}()
	for range 5 {
		runtime.GC()
		if cacheRef.Value() == nil {
			return
		}
	}
	t.Fatal("the telemetry cache of a dropped core is still reachable")
}
