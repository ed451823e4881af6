package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// subEnv is a real core served over gRPC on 127.0.0.1 with a gNMI client.
type subEnv struct {
	core   *nos.Core
	conn   *grpc.ClientConn
	client gpb.GNMIClient
}

func newSubEnv(tb testing.TB) *subEnv {
	tb.Helper()
	st, err := nos.OpenStore(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	log := slog.New(slog.DiscardHandler)
	core, err := nos.New(st, nos.WithLogger(log))
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	if err := core.Start(ctx); err != nil {
		tb.Fatal(err)
	}
	srv := New(core, WithLogger(log), WithSecurity(SecurityConfig{Insecure: true}))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	g := grpc.NewServer()
	gpb.RegisterGNMIServer(g, srv)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := g.Serve(lis); err != nil {
			tb.Errorf("serve: %v", err)
		}
	}()
	tb.Cleanup(func() { g.Stop(); <-done })
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return &subEnv{core: core, conn: conn, client: gpb.NewGNMIClient(conn)}
}

func subPath(tb testing.TB, s string) *gpb.Path {
	tb.Helper()
	p, err := ygot.StringToStructuredPath(s)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// setVRF commits a VRF with a route distinguisher and a description.
func (e *subEnv) setVRF(tb testing.TB, name, rd, descr string) {
	tb.Helper()
	js := `{"config":{"name":"` + name + `","type":"L3VRF","description":"` + descr + `","route-distinguisher":"` + rd + `"}}`
	_, err := e.core.Set(context.Background(), "test", &gpb.SetRequest{Update: []*gpb.Update{{
		Path: subPath(tb, "/network-instances/network-instance[name="+name+"]"),
		Val:  &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: []byte(js)}},
	}}})
	if err != nil {
		tb.Fatal(err)
	}
}

// setCounters writes the state of interface name: oper-status and
// counters. State needs configuration: the interface is committed as an
// UNDERLAY interface first when it is not there.
func (e *subEnv) setCounters(tb testing.TB, name string, up bool, pkts uint64) {
	tb.Helper()
	if e.core.Config().GetInterfaces().GetInterface(name) == nil {
		js := `{"config":{"name":"` + name + `","type":"UNDERLAY"}}`
		if _, err := e.core.Set(context.Background(), "test", &gpb.SetRequest{Update: []*gpb.Update{{
			Path: subPath(tb, "/interfaces/interface[name="+name+"]"),
			Val:  &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: []byte(js)}},
		}}}); err != nil {
			tb.Fatal(err)
		}
	}
	st := &gen.IsthmusInterfaces_Interfaces_Interface_State{
		OperStatus: gen.IsthmusTypes_OperStatus_DOWN,
		Counters: &gen.IsthmusInterfaces_Interfaces_Interface_State_Counters{
			InPkts: ygot.Uint64(pkts), OutPkts: ygot.Uint64(pkts), InOctets: ygot.Uint64(100 * pkts),
			OutOctets: ygot.Uint64(100 * pkts), InDrops: ygot.Uint64(0), OutDrops: ygot.Uint64(0),
		},
	}
	if up {
		st.OperStatus = gen.IsthmusTypes_OperStatus_UP
	}
	if err := e.core.UpdateState("/interfaces/interface[name="+name+"]/state", st); err != nil {
		tb.Fatal(err)
	}
}

// subscribe opens a Subscribe stream and sends list.
func (e *subEnv) subscribe(tb testing.TB, list *gpb.SubscriptionList) gpb.GNMI_SubscribeClient {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	tb.Cleanup(cancel)
	st, err := e.client.Subscribe(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	if err := st.Send(&gpb.SubscribeRequest{Request: &gpb.SubscribeRequest_Subscribe{Subscribe: list}}); err != nil {
		tb.Fatal(err)
	}
	return st
}

// received is what a client saw up to a point: leaf values by path, and
// deleted paths.
type received struct {
	vals    map[string]*gpb.TypedValue
	deletes map[string]bool
	notes   []*gpb.Notification
}

func (r *received) add(tb testing.TB, n *gpb.Notification) {
	tb.Helper()
	if r.vals == nil {
		r.vals, r.deletes = map[string]*gpb.TypedValue{}, map[string]bool{}
	}
	r.notes = append(r.notes, n)
	pre := n.GetPrefix().GetElem()
	for _, u := range n.GetUpdate() {
		p := pathString(&gpb.Path{Elem: append(append([]*gpb.PathElem{}, pre...), u.GetPath().GetElem()...)})
		r.vals[p] = u.GetVal()
		delete(r.deletes, p)
	}
	for _, d := range n.GetDelete() {
		p := pathString(&gpb.Path{Elem: append(append([]*gpb.PathElem{}, pre...), d.GetElem()...)})
		r.deletes[p] = true
		delete(r.vals, p)
	}
}

// untilSync reads notifications up to sync_response.
func untilSync(tb testing.TB, st gpb.GNMI_SubscribeClient) *received {
	tb.Helper()
	r := &received{}
	for {
		resp, err := st.Recv()
		if err != nil {
			tb.Fatalf("recv before sync_response: %v", err)
		}
		if resp.GetSyncResponse() {
			if r.vals == nil {
				r.vals, r.deletes = map[string]*gpb.TypedValue{}, map[string]bool{}
			}
			return r
		}
		r.add(tb, resp.GetUpdate())
	}
}

// recvUntil reads notifications until done reports true for what was seen.
func recvUntil(tb testing.TB, st gpb.GNMI_SubscribeClient, done func(r *received, last *gpb.Notification) bool) *received {
	tb.Helper()
	r := &received{}
	for {
		resp, err := st.Recv()
		if err != nil {
			tb.Fatalf("recv: %v", err)
		}
		if resp.GetSyncResponse() {
			tb.Fatalf("unexpected second sync_response")
		}
		r.add(tb, resp.GetUpdate())
		if done(r, resp.GetUpdate()) {
			return r
		}
	}
}

// expectEOF checks that the server ended the stream cleanly.
func expectEOF(tb testing.TB, st gpb.GNMI_SubscribeClient) {
	tb.Helper()
	resp, err := st.Recv()
	if !errors.Is(err, io.EOF) {
		tb.Fatalf("recv = %v, %v; want EOF", resp, err)
	}
}

func subAt(path string, mode gpb.SubscriptionMode) *gpb.Subscription {
	p, err := ygot.StringToStructuredPath(path)
	if err != nil {
		panic(err)
	}
	return &gpb.Subscription{Path: p, Mode: mode}
}
