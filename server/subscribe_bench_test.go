package server

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
)

// counterNames are the counter leaves of an interface.
var counterNames = []string{"in-pkts", "in-octets", "in-drops", "out-pkts", "out-octets", "out-drops"}

// counterPaths returns the counter leaf paths of n interfaces.
func counterPaths(n int) []*gpb.Path {
	var ps []*gpb.Path
	for i := range n {
		for _, c := range counterNames {
			ps = append(ps, &gpb.Path{Elem: []*gpb.PathElem{
				{Name: "interfaces"}, {Name: "interface", Key: map[string]string{"name": fmt.Sprintf("veth%d", i)}},
				{Name: "state"}, {Name: "counters"}, {Name: c},
			}})
		}
	}
	return ps
}

// publishCounters writes one round of counter values into the cache the
// way the core publishes a state update: one notification per leaf, one
// timestamp for the round.
func (e *subEnv) publishCounters(tb testing.TB, ps []*gpb.Path, v uint64) {
	c := e.core.Cache()
	ts := time.Now().UnixNano()
	for _, p := range ps {
		n := &gpb.Notification{
			Timestamp: ts,
			Prefix:    &gpb.Path{Target: e.core.Target()},
			Update:    []*gpb.Update{{Path: p, Val: &gpb.TypedValue{Value: &gpb.TypedValue_UintVal{UintVal: v}}}},
		}
		if err := c.GnmiUpdate(n); err != nil {
			tb.Fatal(err)
		}
	}
}

// cpuTime returns the CPU time (user and system) this process used so far.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSubscribeStream measures ON_CHANGE streaming to one client over
// gRPC on 127.0.0.1: a producer writes rounds of 6,000 counter leaves
// (1,000 interfaces) into the telemetry cache as fast as it can, and the
// client counts the updates it receives. Reported: updates/s received,
// and the share the queue coalesced away because the client lagged.
func BenchmarkSubscribeStream(b *testing.B) {
	for _, enc := range []gpb.Encoding{gpb.Encoding_PROTO, gpb.Encoding_JSON_IETF} {
		b.Run(enc.String(), func(b *testing.B) {
			e := newSubEnv(b)
			ps := counterPaths(1000)
			e.publishCounters(b, ps, 0)
			marker := subPath(b, "/interfaces/interface[name=marker]/state/counters/in-pkts")
			st := e.subscribe(b, &gpb.SubscriptionList{
				Mode: gpb.SubscriptionList_STREAM, Encoding: enc, UpdatesOnly: true,
				Subscription: []*gpb.Subscription{subAt("/interfaces", gpb.SubscriptionMode_ON_CHANGE)},
			})
			untilSync(b, st)
			rounds := max(1, b.N/len(ps))
			done := make(chan struct{})
			var prodTime time.Duration
			go func() {
				defer close(done)
				t0 := time.Now()
				defer func() { prodTime = time.Since(t0) }()
				for r := range rounds {
					e.publishCounters(b, ps, uint64(r+1))
				}
				e.publishCounters(b, []*gpb.Path{marker}, 1)
			}()
			b.ResetTimer()
			start, cpu0 := time.Now(), cpuTime(b)
			got, msgs := 0, 0
		recv:
			for {
				resp, err := st.Recv()
				if err != nil {
					b.Fatal(err)
				}
				msgs++
				for _, u := range resp.GetUpdate().GetUpdate() {
					if u.GetPath().GetElem()[1].GetKey()["name"] == "marker" {
						break recv
					}
					got++
				}
			}
			elapsed, cpu := time.Since(start), cpuTime(b)-cpu0
			b.StopTimer()
			<-done
			b.Logf("producer %v, total %v, %d msgs", prodTime, elapsed, msgs)
			sent := rounds * len(ps)
			b.ReportMetric(float64(got)/elapsed.Seconds(), "updates/s")
			b.ReportMetric(100*float64(sent-got)/float64(sent), "%coalesced")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(sent), "cpu-ns/update")
		})
	}
}

// BenchmarkSubscribeOnce measures the initial sync: ONCE subscriptions
// to 60,000 counter leaves (10,000 interfaces) over gRPC on 127.0.0.1,
// repeated until b.N updates were sent. Reported: updates/s received by
// the client.
func BenchmarkSubscribeOnce(b *testing.B) {
	e := newSubEnv(b)
	ps := counterPaths(10000)
	e.publishCounters(b, ps, 7)
	list := &gpb.SubscriptionList{
		Mode: gpb.SubscriptionList_ONCE, Encoding: gpb.Encoding_PROTO,
		Subscription: []*gpb.Subscription{subAt("/interfaces", 0)},
	}
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime(b)
	got := 0
	for range max(1, b.N/len(ps)) {
		ctx, cancel := context.WithCancel(context.Background())
		st, err := e.client.Subscribe(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := st.Send(&gpb.SubscribeRequest{Request: &gpb.SubscribeRequest_Subscribe{Subscribe: list}}); err != nil {
			b.Fatal(err)
		}
		for {
			resp, err := st.Recv()
			if err != nil {
				b.Fatal(err)
			}
			if resp.GetSyncResponse() {
				break
			}
			got += len(resp.GetUpdate().GetUpdate())
		}
		cancel()
	}
	b.ReportMetric(float64(got)/time.Since(start).Seconds(), "updates/s")
	b.ReportMetric(float64((cpuTime(b)-cpu0).Nanoseconds())/float64(got), "cpu-ns/update")
}
