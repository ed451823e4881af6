package bgp

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/isthmus-net/isthmus/dataplane"
	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/internal/testenv"
	"github.com/isthmus-net/isthmus/nos"
	"github.com/isthmus-net/isthmus/server"
)

// aftNode is a host with the dataplane and BGP reconcilers and a gNMI
// server (no TLS, no users: a lab setup on loopback).
type aftNode struct {
	core *nos.Core
	dp   *dataplane.Reconciler
	conn *grpc.ClientConn // to its gNMI server
	stop func()
}

// startAFTNode starts the node's core in a network namespace of its own
// (the dataplane's netlink handle stays there; the goroutine that entered
// it ends with its thread locked, so the thread is discarded).
func startAFTNode(b *testing.B, port int) *aftNode {
	testenv.Privileged(b)
	pins, dir := b.TempDir(), b.TempDir()
	// BGP's warnings only (a session that goes down says why).
	quiet, warn := slog.New(slog.DiscardHandler), slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dp := dataplane.New(dataplane.ReconcilerConfig{Config: dataplane.Config{BPFFS: pins, Logger: quiet},
		StateInterval: time.Hour, NeighborInterval: time.Hour})
	st, err := nos.OpenStore(dir)
	if err != nil {
		b.Fatal(err)
	}
	core, err := nos.New(st, nos.WithReconcilers(dp, New(Config{Logger: warn, ListenPort: -1, PeerPort: uint16(port)})), nos.WithLogger(quiet))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			started <- err
			return
		}
		started <- core.Start(ctx)
	}()
	if err := <-started; err != nil {
		b.Fatal(err)
	}
	srv := server.New(core, server.WithLogger(quiet), server.WithSecurity(server.SecurityConfig{Insecure: true}), server.WithDataDir(dir))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	n := &aftNode{core: core, dp: dp, conn: conn}
	n.stop = func() {
		conn.Close()
		sctx, done := context.WithTimeout(context.Background(), 2*time.Minute)
		core.Stop(sctx)
		done()
		cancel()
		<-served
		st.Close()
		if d, err := dataplane.Open(dataplane.Config{BPFFS: pins, Logger: quiet}); err == nil {
			d.Destroy()
		}
		for unix.Unmount(pins, unix.MNT_DETACH) == nil { // Open may have mounted it again
		}
	}
	return n
}

// aftSubscriber is a STREAM ON_CHANGE subscription to a VRF's AFT that
// counts the entries it receives. It reads the responses as bytes and
// counts from the wire (rawSubscribeCodec), as cheaply as it can: a
// collector runs elsewhere and pays for its own decoding, so the
// benchmark's client should not make the node's process look busier than
// isthmusd would be.
type aftSubscriber struct {
	synced  chan time.Time // when sync_response came
	entries chan time.Time // when want entries (next-hop-group leaves) came
	updates atomic.Int64   // updates received
	got     atomic.Int64   // entries received
	deletes atomic.Int64   // deletes received
	err     error          // why the stream ended; read after done
	cancel  context.CancelFunc
	done    chan struct{}
}

func subscribeAFT(b *testing.B, conn *grpc.ClientConn, vrf string, want int) *aftSubscriber {
	ctx, cancel := context.WithCancel(context.Background())
	st, err := conn.NewStream(ctx, &gpb.GNMI_ServiceDesc.Streams[0], gpb.GNMI_Subscribe_FullMethodName, grpc.ForceCodecV2(rawSubscribeCodec{}))
	if err != nil {
		b.Fatal(err)
	}
	req := &gpb.SubscribeRequest{Request: &gpb.SubscribeRequest_Subscribe{Subscribe: &gpb.SubscriptionList{
		Mode:     gpb.SubscriptionList_STREAM,
		Encoding: gpb.Encoding_PROTO,
		Subscription: []*gpb.Subscription{{Mode: gpb.SubscriptionMode_ON_CHANGE, Path: &gpb.Path{Elem: []*gpb.PathElem{
			{Name: "network-instances"}, {Name: "network-instance", Key: map[string]string{"name": vrf}}, {Name: "afts"}}}}},
	}}}
	if err := st.SendMsg(req); err != nil {
		b.Fatal(err)
	}
	s := &aftSubscriber{synced: make(chan time.Time, 1), entries: make(chan time.Time, 1), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		var resp rawResponse
		for {
			if s.err = st.RecvMsg(&resp); s.err != nil {
				return
			}
			c, err := countResponse(resp.b)
			if err != nil {
				s.err = err
				return
			}
			if c.sync {
				s.synced <- time.Now()
				continue
			}
			s.updates.Add(int64(c.updates))
			s.deletes.Add(int64(c.deletes))
			if got := s.got.Add(int64(c.entries)); got >= int64(want) && got-int64(c.entries) < int64(want) {
				s.entries <- time.Now()
			}
		}
	}()
	return s
}

func (s *aftSubscriber) close() { s.cancel(); <-s.done }

// rawResponse is a SubscribeResponse as bytes.
type rawResponse struct{ b []byte }

// rawSubscribeCodec sends requests as protobuf and receives responses
// as bytes (into a *rawResponse, reusing its buffer).
type rawSubscribeCodec struct{}

func (rawSubscribeCodec) Name() string { return "proto" }

func (rawSubscribeCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("marshal %T: not a protobuf message", v)
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, err
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

func (rawSubscribeCodec) Unmarshal(data mem.BufferSlice, v any) error {
	r, ok := v.(*rawResponse)
	if !ok {
		return fmt.Errorf("unmarshal into %T: want *rawResponse", v)
	}
	n := data.Len()
	if cap(r.b) < n {
		r.b = make([]byte, n)
	}
	r.b = r.b[:n]
	data.CopyTo(r.b)
	return nil
}

// responseCount is what one SubscribeResponse carried.
type responseCount struct {
	sync             bool
	updates, deletes int
	entries          int // updates of an ipv4-entry's state/next-hop-group
}

// countResponse counts a SubscribeResponse's updates from its wire form
// (gnmi.proto field numbers), without building messages.
func countResponse(b []byte) (responseCount, error) {
	var c responseCount
	err := walkFields(b, func(num protowire.Number, v []byte) error {
		switch num {
		case 3: // sync_response
			c.sync = true
		case 1: // update: a Notification
			return walkFields(v, func(num protowire.Number, v []byte) error {
				switch num {
				case 5: // delete
					c.deletes++
				case 4: // update
					c.updates++
					return walkFields(v, func(num protowire.Number, v []byte) error {
						if num == 1 && lastElemIs(v, "next-hop-group") { // path
							c.entries++
						}
						return nil
					})
				}
				return nil
			})
		}
		return nil
	})
	return c, err
}

// lastElemIs reports whether the name of a Path's last PathElem is name.
func lastElemIs(path []byte, name string) bool {
	var last []byte
	walkFields(path, func(num protowire.Number, v []byte) error {
		if num == 3 { // elem
			last = v
		}
		return nil
	})
	is := false
	walkFields(last, func(num protowire.Number, v []byte) error {
		if num == 1 { // name
			is = string(v) == name
		}
		return nil
	})
	return is
}

// walkFields calls fn with every length-delimited field of a message (the
// value of others is nil) and skips nothing silently: a malformed message
// is an error.
func walkFields(b []byte, fn func(protowire.Number, []byte) error) error {
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
		b = b[n:]
		if err := fn(num, v); err != nil {
			return err
		}
	}
	return nil
}

// rss returns a line of /proc/self/status (VmRSS: resident now, VmHWM:
// its peak) in MB.
func rss(field string) float64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == field+":" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// cpuTime returns the CPU time (user and system) the process used so far.
func cpuTime(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// resetPeakRSS resets VmHWM (Linux 4.0+).
func resetPeakRSS() { os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// aftReceive receives the routes on a fresh node until the dataplane has
// programmed all of them (the AFT holds them), with or without a gNMI
// subscriber to the VRF's AFT attached from the start. Without one, it
// then measures a subscriber's initial sync of the full table. It fails
// when the table loses routes before the subscriber has them all (the
// session went down: a stream that converges to a withdrawn table is not
// a measurement).
// aftResult is what one aftReceive measured.
type aftResult struct {
	recv    time.Duration // first UPDATE written → every route programmed
	cpu     time.Duration // CPU time the process used meanwhile
	lag     time.Duration // attached: every route programmed → the subscriber has every entry
	sync    time.Duration // not attached: subscription → sync_response
	updates int           // updates of the initial sync
	rss     float64       // MB: resident before the initial sync (after a GC)
	peak    float64       // MB: peak resident during it
	get50   time.Duration // not attached: a Get of one entry, median
	get99   time.Duration // and 99th percentile
}

func aftReceive(b *testing.B, msgs [][]byte, count, port int, attached bool) aftResult {
	const peer = "127.100.9.6"
	fp := newFakePeer(b, peer, port, 65099)
	defer fp.close()
	n := startAFTNode(b, port)
	defer n.stop()
	h := hostConf{as: 65000, routerID: "10.0.9.5", endpoint: "192.0.2.95",
		neighbors: []nbrConf{{addr: peer, as: 65099}},
		vrfs:      []vrfConf{{name: "red", rd: "10.0.9.5:1", imp: []string{"65000:1"}, exp: []string{"65000:1"}, pool: "10.99.0.0/24"}}}
	commit := func(d *gen.Device) error {
		*d = gen.Device{}
		h.build(d)
		// The default hold time (the tests' 9 s detects failures fast):
		// GoBGP processes each UPDATE on the goroutine that reads the
		// session, and a loaded machine programming 1M routes can keep it
		// from reading for longer than 9 s.
		t := d.GetNetworkInstances().GetNetworkInstance("default").GetProtocols().
			GetProtocol(gen.IsthmusTypes_ProtocolType_BGP, "bgp").GetBgp().GetNeighbors().GetNeighbor(peer).GetTimers().GetConfig()
		t.HoldTime, t.KeepaliveInterval = ygot.Uint16(90), ygot.Uint16(30)
		return nil
	}
	if _, err := n.core.Commit(context.Background(), "bench", commit); err != nil {
		b.Fatal(err)
	}
	var sub *aftSubscriber
	if attached {
		sub = subscribeAFT(b, n.conn, "red", count)
		<-sub.synced
		defer sub.close()
	}
	fp.accept()
	runtime.GC() // the previous node's garbage is not this one's cost
	start, cpu0 := time.Now(), cpuTime(b)
	fp.sendAll(msgs)
	deadline := time.Now().Add(10 * time.Minute)
	for n.dp.AFTEntries() < count {
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d routes programmed", n.dp.AFTEntries(), count)
		}
		time.Sleep(5 * time.Millisecond)
	}
	var res aftResult
	programmed := time.Now()
	res.recv, res.cpu = programmed.Sub(start), cpuTime(b)-cpu0
	if attached {
		select {
		case at := <-sub.entries:
			res.lag = max(0, at.Sub(programmed))
		case <-sub.done:
			b.Fatalf("the stream ended after %d of %d entries: %v", sub.got.Load(), count, sub.err)
		case <-time.After(10 * time.Minute):
			b.Fatalf("the subscriber received %d of %d entries in 10 minutes (and %d deletes); the table holds %d",
				sub.got.Load(), count, sub.deletes.Load(), n.dp.AFTEntries())
		}
		if held := n.dp.AFTEntries(); held != count {
			b.Fatalf("the table holds %d of %d entries once the subscriber has them: routes were lost (session down?)", held, count)
		}
		return res
	}
	runtime.GC()
	res.rss = rss("VmRSS")
	resetPeakRSS()
	start = time.Now()
	s := subscribeAFT(b, n.conn, "red", count)
	defer s.close()
	select {
	case end := <-s.synced:
		res.sync = end.Sub(start)
	case <-s.done:
		b.Fatalf("the stream ended before sync_response: %v", s.err)
	case <-time.After(10 * time.Minute):
		b.Fatal("no sync_response")
	}
	res.peak = rss("VmHWM")
	s.close()
	if got, dels := s.got.Load(), s.deletes.Load(); got != int64(count) || dels != 0 {
		b.Fatalf("the initial sync carried %d entries and %d deletes, want %d entries", got, dels, count)
	}
	if held := n.dp.AFTEntries(); held != count {
		b.Fatalf("the table holds %d of %d entries after the initial sync: routes were lost (session down?)", held, count)
	}
	res.updates = int(s.updates.Load())
	res.get50, res.get99 = aftGets(b, n.conn, count, 200)
	return res
}

// BenchmarkAFT receives N VPNv4 routes (one VRF) from a peer until the
// dataplane has programmed them, without and with a gNMI STREAM subscriber
// to the VRF's AFT attached (ratio: with / without, per round; cpu-ratio:
// the same for the CPU time the process used meanwhile, which a busy
// machine disturbs less; and how long after programming the subscriber
// had every entry), and measures a
// subscriber's initial sync of the full table (time until sync_response,
// updates per second, resident memory of the process before it and its
// peak during it; the process holds the node, the peer's encoded UPDATEs
// and the client). Each round runs both, one after the other, in
// alternating order (AFT_BENCH_ROUNDS, default 3); medians over rounds.
//
//	go test ./bgp -run '^$' -bench '^BenchmarkAFT$' -benchtime 1x -timeout 60m -v
//	AFT_BENCH_ROUTES=100000 go test ./bgp -run '^$' -bench '^BenchmarkAFT$' -benchtime 1x -v
func BenchmarkAFT(b *testing.B) {
	rounds := 3
	if v, err := strconv.Atoi(os.Getenv("AFT_BENCH_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	sizes := []int{100_000, 1_000_000}
	if v, err := strconv.Atoi(os.Getenv("AFT_BENCH_ROUTES")); err == nil && v > 0 {
		sizes = []int{v}
	}
	for i, count := range sizes {
		b.Run(fmt.Sprintf("routes=%d", count), func(b *testing.B) {
			msgs := receiveRoutes(b, count)
			for range b.N {
				var without, with, ratios, cpus, lags, syncs, rates, rsss, peaks, gets50, gets99 []float64
				for r := range rounds {
					port := 2400 + 100*i + 2*r
					// Alternate which goes first: the one that follows a
					// node's teardown (a few GB to collect) pays for it.
					var a, w aftResult
					if r%2 == 0 {
						a, w = aftReceive(b, msgs, count, port, false), aftReceive(b, msgs, count, port+1, true)
					} else {
						w, a = aftReceive(b, msgs, count, port+1, true), aftReceive(b, msgs, count, port, false)
					}
					rate := float64(a.updates) / a.sync.Seconds()
					without, with, ratios = append(without, a.recv.Seconds()), append(with, w.recv.Seconds()), append(ratios, w.recv.Seconds()/a.recv.Seconds())
					cpus = append(cpus, w.cpu.Seconds()/a.cpu.Seconds())
					lags, syncs, rates = append(lags, w.lag.Seconds()), append(syncs, a.sync.Seconds()), append(rates, rate)
					rsss, peaks = append(rsss, a.rss), append(peaks, a.peak)
					gets50, gets99 = append(gets50, float64(a.get50.Microseconds())), append(gets99, float64(a.get99.Microseconds()))
					b.Logf("round %d: receive+program %.2fs (CPU %.2fs), with a subscriber %.2fs (CPU %.2fs): %.2f×, the subscriber complete %.2fs later; initial sync %.2fs, %d updates (%.0f/s), RSS %.0f MB before, peak %.0f MB; a Get of one entry p50 %v, p99 %v",
						r, a.recv.Seconds(), a.cpu.Seconds(), w.recv.Seconds(), w.cpu.Seconds(), ratios[r], w.lag.Seconds(), a.sync.Seconds(), a.updates, rate, a.rss, a.peak, a.get50, a.get99)
				}
				b.ReportMetric(median(without), "receive-s")
				b.ReportMetric(median(with), "receive-subscribed-s")
				b.ReportMetric(median(ratios), "ratio")
				b.ReportMetric(median(cpus), "cpu-ratio")
				b.ReportMetric(median(lags), "subscriber-lag-s")
				b.ReportMetric(median(syncs), "sync-s")
				b.ReportMetric(median(rates), "updates/s")
				b.ReportMetric(median(rsss), "rss-before-sync-MB")
				b.ReportMetric(median(peaks), "peak-rss-MB")
				b.ReportMetric(median(gets50), "get-one-p50-µs")
				b.ReportMetric(median(gets99), "get-one-p99-µs")
			}
		})
	}
}
