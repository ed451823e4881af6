package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
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

// benchClient receives SubscribeResponses and tells, for each, how many
// updates it carried, whether it was the sync_response, and whether one
// of its updates was the marker leaf (an interface named "marker").
type benchClient interface {
	recv() (updates int, sync, marker bool, err error)
}

// fullClient decodes every response into Go structs, as a gNMI client
// application does.
type fullClient struct{ st gpb.GNMI_SubscribeClient }

func (c fullClient) recv() (int, bool, bool, error) {
	resp, err := c.st.Recv()
	if err != nil {
		return 0, false, false, err
	}
	marker := false
	for _, u := range resp.GetUpdate().GetUpdate() {
		if u.GetPath().GetElem()[1].GetKey()["name"] == "marker" {
			marker = true
		}
	}
	return len(resp.GetUpdate().GetUpdate()), resp.GetSyncResponse(), marker, nil
}

// countClient only walks the wire format to count updates, so that the
// client's share of the two cores stays small and the figure is the
// server's.
type countClient struct{ st grpc.ClientStream }

// rawMsg holds a response's bytes.
type rawMsg struct{ b []byte }

// rawCodec sends requests with the proto codec and keeps responses as bytes.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) ([]byte, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("marshal %T: not a proto message", v)
	}
	return proto.Marshal(m)
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	m, ok := v.(*rawMsg)
	if !ok {
		return fmt.Errorf("unmarshal into %T: not a rawMsg", v)
	}
	m.b = append(m.b[:0], data...)
	return nil
}

func (c countClient) recv() (int, bool, bool, error) {
	var m rawMsg
	if err := c.st.RecvMsg(&m); err != nil {
		return 0, false, false, err
	}
	updates, sync, marker := 0, false, false
	err := eachField(m.b, func(num protowire.Number, v []byte) {
		switch num {
		case fieldResponseUpdate:
			_ = eachField(v, func(num protowire.Number, v []byte) {
				if num == fieldNotifUpdate {
					updates++
					marker = marker || containsMarker(v)
				}
			})
		case 3: // sync_response
			sync = true
		}
	})
	return updates, sync, marker, err
}

// containsMarker reports whether an encoded update names the marker.
func containsMarker(b []byte) bool { return bytes.Contains(b, []byte("marker")) }

// eachField calls fn with the number and payload of each length-delimited
// field of b (varint fields are passed with no payload).
func eachField(b []byte, fn func(protowire.Number, []byte)) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var v []byte
		if typ == protowire.BytesType {
			v, n = protowire.ConsumeBytes(b)
		} else {
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		fn(num, v)
		b = b[n:]
	}
	return nil
}

// open starts a subscription with a client of the given kind.
func (e *subEnv) open(b *testing.B, ctx context.Context, kind string, list *gpb.SubscriptionList) benchClient {
	req := &gpb.SubscribeRequest{Request: &gpb.SubscribeRequest_Subscribe{Subscribe: list}}
	if kind == "full" {
		st, err := e.client.Subscribe(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := st.Send(req); err != nil {
			b.Fatal(err)
		}
		return fullClient{st}
	}
	st, err := e.conn.NewStream(ctx, &grpc.StreamDesc{StreamName: "Subscribe", ServerStreams: true, ClientStreams: true},
		"/gnmi.gNMI/Subscribe", grpc.ForceCodec(rawCodec{}))
	if err != nil {
		b.Fatal(err)
	}
	if err := st.SendMsg(req); err != nil {
		b.Fatal(err)
	}
	return countClient{st}
}

// BenchmarkSubscribeStream measures ON_CHANGE streaming to one client over
// gRPC on 127.0.0.1: a producer writes rounds of 6,000 counter leaves
// (1,000 interfaces) into the telemetry cache as fast as it can, and the
// client counts the updates it receives. b.N is the number of updates
// written. Reported: updates/s received, the share the queue coalesced
// away because the client lagged, and the process's CPU time per update
// written (producer, cache, Subscribe and client together).
func BenchmarkSubscribeStream(b *testing.B) {
	for _, kind := range []string{"full", "count"} {
		for _, enc := range []gpb.Encoding{gpb.Encoding_PROTO, gpb.Encoding_JSON_IETF} {
			b.Run(fmt.Sprintf("client=%s/%s", kind, enc), func(b *testing.B) {
				benchStream(b, kind, enc)
			})
		}
	}
}

func benchStream(b *testing.B, kind string, enc gpb.Encoding) {
	e := newSubEnv(b)
	ps := counterPaths(1000)
	e.publishCounters(b, ps, 0)
	marker := subPath(b, "/interfaces/interface[name=marker]/state/counters/in-pkts")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := e.open(b, ctx, kind, &gpb.SubscriptionList{
		Mode: gpb.SubscriptionList_STREAM, Encoding: enc, UpdatesOnly: true,
		Subscription: []*gpb.Subscription{subAt("/interfaces", gpb.SubscriptionMode_ON_CHANGE)},
	})
	for {
		_, sync, _, err := c.recv()
		if err != nil {
			b.Fatal(err)
		}
		if sync {
			break
		}
	}
	rounds := max(1, b.N/len(ps))
	done := make(chan struct{})
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime(b)
	go func() {
		defer close(done)
		for r := range rounds {
			e.publishCounters(b, ps, uint64(r+1))
		}
		e.publishCounters(b, []*gpb.Path{marker}, 1)
	}()
	got := 0
	for {
		n, _, last, err := c.recv()
		if err != nil {
			b.Fatal(err)
		}
		got += n
		if last {
			got-- // the marker
			break
		}
	}
	elapsed, cpu := time.Since(start), cpuTime(b)-cpu0
	b.StopTimer()
	<-done
	sent := rounds * len(ps)
	b.ReportMetric(float64(got)/elapsed.Seconds(), "updates/s")
	b.ReportMetric(100*float64(sent-got)/float64(sent), "%coalesced")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(sent), "cpu-ns/update")
}

// BenchmarkSubscribeOnce measures the initial sync, which is also what
// every SAMPLE interval and POLL sends: ONCE subscriptions to 60,000
// counter leaves (10,000 interfaces) over gRPC on 127.0.0.1, repeated
// until about b.N updates were sent. Reported: updates/s received by the
// client and the process's CPU time per update (server and client).
func BenchmarkSubscribeOnce(b *testing.B) {
	for _, kind := range []string{"full", "count"} {
		b.Run("client="+kind, func(b *testing.B) {
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
				got += onceCount(b, e, kind, list)
			}
			b.ReportMetric(float64(got)/time.Since(start).Seconds(), "updates/s")
			b.ReportMetric(float64((cpuTime(b)-cpu0).Nanoseconds())/float64(got), "cpu-ns/update")
		})
	}
}

// onceCount runs one ONCE subscription and returns the updates received.
func onceCount(b *testing.B, e *subEnv, kind string, list *gpb.SubscriptionList) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := e.open(b, ctx, kind, list)
	got := 0
	for {
		n, sync, _, err := c.recv()
		if err != nil {
			b.Fatal(errors.Join(errors.New("recv before sync_response"), err))
		}
		got += n
		if sync {
			return got
		}
	}
}
