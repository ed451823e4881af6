package dataplane

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
	"github.com/isthmus-net/isthmus/server"
)

// e2eRules is how many ACL entries the end-to-end policy change
// benchmark attaches to the sending pod's egress.
const e2eRules = 10000

// e2eLastSeq is the sequence id of the entry that accepts the measured
// flow: the last of the set, after the e2eRules-1 others.
const e2eLastSeq = 100000

// e2eProbeEvery is the pause between two probe packets of the measured
// flow, the resolution of the measurement (the machine's timers and load
// stretch it; the benchmark reports the gaps it saw).
const e2eProbeEvery = 200 * time.Microsecond

// BenchmarkPolicyChangeEndToEnd measures a policy change from the gNMI
// Set to the moment an established flow's next packet is dropped, through
// what isthmusd runs: the gNMI server's Set (in process, no socket), the
// core's commit (validation, the store on disk) and the dataplane
// reconciler with its eBPF forwarder in the kernel, in a host namespace
// with two pods in real namespaces on one VRF. Pod a's egress has an ACL
// set of 10,000 entries; the last accepts UDP from a to b's port 5201.
// A stream of UDP packets (one every e2eProbeEvery, numbered) runs from a
// to b, with 256 other established flows of a beside it. Each timed
// change denies the stream's flow and is measured from just before the
// Set to the first packet of the stream that never arrives (every packet
// after the last received one is lost): "flip" sets the entry's action
// to DROP, "remove" deletes the entry (the attachment's default DROP then
// applies). An untimed Set puts the entry back and the stream is seen
// flowing again before the next sample. It reports the median and the
// 99th percentile of the time to enforcement (an upper bound: the send
// time of the first lost packet), of the Set's own duration, of the
// dataplane reconciler's share (Validate and Apply), and the median gap
// between probes. Run with -benchtime of at least 100x.
func BenchmarkPolicyChangeEndToEnd(b *testing.B) {
	requireRoot(b)
	e := newE2EHost(b)
	b.Run("flip", func(b *testing.B) {
		deny := &gpb.SetRequest{Update: []*gpb.Update{e2eJSON(b, e2eEntryPath+"/config/action", `"DROP"`)}}
		allow := &gpb.SetRequest{Update: []*gpb.Update{e2eJSON(b, e2eEntryPath+"/config/action", `"ACCEPT"`)}}
		e.measure(b, deny, allow)
	})
	b.Run("remove", func(b *testing.B) {
		deny := &gpb.SetRequest{Delete: []*gpb.Path{e2ePath(b, e2eEntryPath)}}
		allow := &gpb.SetRequest{Update: []*gpb.Update{e2eJSON(b, e2eEntryPath, e2eLastEntryJSON)}}
		e.measure(b, deny, allow)
	})
}

// e2eEntryPath is the entry that accepts the measured flow.
var e2eEntryPath = fmt.Sprintf("/acl/acl-sets/acl-set[name=bench]/acl-entries/acl-entry[sequence-id=%d]", e2eLastSeq)

// e2eLastEntryJSON is that entry as the Set that puts it back writes it.
var e2eLastEntryJSON = fmt.Sprintf(`{"sequence-id":%d,"config":{"sequence-id":%d,"source-address":"10.1.0.0/24",
"destination-address":"10.1.0.3/32","protocol":17,"destination-port":5201,"action":"ACCEPT"}}`, e2eLastSeq, e2eLastSeq)

// e2eHost is the host namespace of BenchmarkPolicyChangeEndToEnd: the
// core with the dataplane reconciler, a gNMI server on it, and the probe
// stream between its two pods.
type e2eHost struct {
	run   func(func() error) error // runs a function on a thread in the host namespace
	srv   *server.Server
	rec   *timedDataplane
	probe *e2eProbe
}

// timedDataplane is the dataplane reconciler with the time it spends in
// validation and apply (full or delta) added to took, in nanoseconds.
// Embedding keeps every interface of the reconciler visible to the core.
type timedDataplane struct {
	*Reconciler
	took atomic.Int64
}

func (t *timedDataplane) since(start time.Time) { t.took.Add(int64(time.Since(start))) }

// Validate times the reconciler's Validate.
func (t *timedDataplane) Validate(d *gen.Device) error {
	defer t.since(time.Now())
	return t.Reconciler.Validate(d)
}

// Apply times the reconciler's Apply.
func (t *timedDataplane) Apply(ctx context.Context, old, intended *gen.Device) error {
	defer t.since(time.Now())
	return t.Reconciler.Apply(ctx, old, intended)
}

// ValidateDelta times the reconciler's ValidateDelta.
func (t *timedDataplane) ValidateDelta(d *gen.Device, ch nos.Delta) error {
	defer t.since(time.Now())
	return t.Reconciler.ValidateDelta(d, ch)
}

// ApplyDelta times the reconciler's ApplyDelta.
func (t *timedDataplane) ApplyDelta(ctx context.Context, old, intended *gen.Device, ch nos.Delta) error {
	defer t.since(time.Now())
	return t.Reconciler.ApplyDelta(ctx, old, intended, ch)
}

// hostThread starts a goroutine locked to a thread in ns and returns a
// function that runs fn on it (one at a time), so that timed Sets pay no
// namespace switch. The thread is discarded when the benchmark ends.
func hostThread(b *testing.B, ns *testNS) func(func() error) error {
	jobs := make(chan func(), 1)
	ready := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		h, err := netns.GetFromName(ns.name)
		if err == nil {
			err = netns.Set(h)
			h.Close()
		}
		ready <- err
		if err != nil {
			return
		}
		for job := range jobs {
			job()
		}
	}()
	if err := <-ready; err != nil {
		b.Fatalf("enter netns %s: %v", ns.name, err)
	}
	b.Cleanup(func() { close(jobs) })
	return func(fn func() error) error {
		errc := make(chan error, 1)
		jobs <- func() { errc <- fn() }
		return <-errc
	}
}

func newE2EHost(b *testing.B) *e2eHost {
	host := newNS(b, "host")
	vethBetween(b, host, "ul", mustMAC("02:00:00:00:00:01"), newNS(b, "peer"), "ul", mustMAC("02:00:00:00:00:02"))
	host.ip(b, "addr", "add", "192.0.2.1/24", "dev", "ul")
	podA := addPod(b, host, "pa", 1, netip.MustParseAddr("10.1.0.2"), podMTU)
	podB := addPod(b, host, "pb", 2, netip.MustParseAddr("10.1.0.3"), podMTU)
	bpffs, data := b.TempDir(), b.TempDir()
	e := &e2eHost{run: hostThread(b, host)}
	var core *nos.Core
	ctx, cancel := context.WithCancel(context.Background())
	err := e.run(func() error {
		st, err := nos.OpenStore(data)
		if err != nil {
			return err
		}
		b.Cleanup(func() { st.Close() })
		e.rec = &timedDataplane{Reconciler: New(ReconcilerConfig{Config: Config{BPFFS: bpffs, Logger: quiet}, StateInterval: time.Hour})}
		if core, err = nos.New(st, nos.WithReconcilers(e.rec), nos.WithLogger(quiet)); err != nil {
			return err
		}
		return core.Start(ctx)
	})
	b.Cleanup(func() {
		// Cleanups run last in first out: this one after the probe's.
		cancel()
		if core != nil {
			core.Stop(context.Background())
		}
		if d, err := Open(Config{BPFFS: bpffs, Logger: quiet}); err == nil {
			d.Destroy()
		}
		unix.Unmount(bpffs, unix.MNT_DETACH)
	})
	if err != nil {
		b.Fatalf("start core: %v", err)
	}
	e.srv = server.New(core, server.WithLogger(quiet))
	must(b, e.run(func() error {
		_, err := core.Commit(context.Background(), "bench", func(d *gen.Device) error {
			e2eConfig(d, podA, podB)
			return nil
		})
		return err
	}))
	e.probe = newE2EProbe(b, podA, podB)
	if !e.probe.flowing(5 * time.Second) {
		b.Fatal("no probe reached pod b through the 10,000 rules")
	}
	runtime.GC() // the setup's garbage, before the timed Sets
	return e
}

// e2eConfig is VRF red with pods a and b, and the 10,000-entry set on a's
// egress: TCP from distinct /24s to distinct ports, then the entry that
// accepts the probe stream.
func e2eConfig(d *gen.Device, a, b *testPod) {
	ni := d.GetOrCreateNetworkInstances().GetOrCreateNetworkInstance("red")
	c := ni.GetOrCreateConfig()
	c.Name, c.Type = ygot.String("red"), gen.IsthmusTypes_NetworkInstanceType_L3VRF
	c.RouteDistinguisher = ygot.String("65000:1")
	c.ImportRouteTarget, c.ExportRouteTarget = []string{"65000:1"}, []string{"65000:1"}
	ni.GetOrCreateAddressPools().GetOrCreateAddressPool("10.1.0.0/24").GetOrCreateConfig().Prefix = ygot.String("10.1.0.0/24")
	ifs := d.GetOrCreateInterfaces()
	ul := ifs.GetOrCreateInterface("ul").GetOrCreateConfig()
	ul.Name, ul.Type = ygot.String("ul"), gen.IsthmusTypes_InterfaceType_UNDERLAY
	for _, p := range []*testPod{a, b} {
		pc := ifs.GetOrCreateInterface(p.hostIf).GetOrCreateConfig()
		pc.Name, pc.Type, pc.NetworkInstance = ygot.String(p.hostIf), gen.IsthmusTypes_InterfaceType_POD, ygot.String("red")
		pc.Ipv4Address = ygot.String(p.addr.String() + "/32")
		pc.Mtu = ygot.Uint16(podMTU)
		pc.GetOrCreatePod().PeerMacAddress = ygot.String(p.mac.String())
	}
	tc := d.GetOrCreateTunnel().GetOrCreateConfig()
	tc.SourceAddress, tc.UnderlayInterface = ygot.String("192.0.2.1"), ygot.String("ul")
	set := d.GetOrCreateAcl().GetOrCreateAclSets().GetOrCreateAclSet("bench")
	set.GetOrCreateConfig().Name = ygot.String("bench")
	for i := range e2eRules - 1 {
		seq := uint32(10 + 10*i)
		ec := set.GetOrCreateAclEntries().GetOrCreateAclEntry(seq).GetOrCreateConfig()
		ec.SequenceId = ygot.Uint32(seq)
		ec.SourceAddress = ygot.String(fmt.Sprintf("10.%d.%d.0/24", 100+i/256, i%256))
		ec.DestinationAddress = ygot.String("10.1.0.0/16")
		ec.Protocol, ec.DestinationPort = ygot.Uint8(6), ygot.Uint16(uint16(1000+i%50000))
		ec.Action = gen.IsthmusAcl_AclAction_ACCEPT
	}
	ec := set.GetOrCreateAclEntries().GetOrCreateAclEntry(e2eLastSeq).GetOrCreateConfig()
	ec.SequenceId = ygot.Uint32(e2eLastSeq)
	ec.SourceAddress, ec.DestinationAddress = ygot.String("10.1.0.0/24"), ygot.String(b.addr.String()+"/32")
	ec.Protocol, ec.DestinationPort = ygot.Uint8(17), ygot.Uint16(5201)
	ec.Action = gen.IsthmusAcl_AclAction_ACCEPT
	ac := ifs.GetOrCreateInterface(a.hostIf).GetOrCreateAcl().GetOrCreateConfig()
	ac.EgressAclSet, ac.EgressDefaultAction = []string{"bench"}, gen.IsthmusAcl_AclAction_DROP
}

// measure runs b.N samples: deny timed to enforcement, allow untimed
// until the stream flows again.
func (e *e2eHost) measure(b *testing.B, deny, allow *gpb.SetRequest) {
	set := func(req *gpb.SetRequest) (time.Time, time.Duration, error) {
		var t0 time.Time
		var took time.Duration
		err := e.run(func() error {
			t0 = time.Now()
			_, err := e.srv.Set(context.Background(), req)
			took = time.Since(t0)
			return err
		})
		return t0, took, err
	}
	restore := func() {
		if _, _, err := set(allow); err != nil {
			b.Fatalf("set back: %v", err)
		}
		if !e.probe.flowing(10 * time.Second) {
			b.Fatal("the stream did not flow again after the entry was put back")
		}
	}
	// Two untimed rounds: the steady state of a running agent (a retired
	// attachment is there to be rewritten).
	for range 2 {
		if _, _, err := set(deny); err != nil {
			b.Fatalf("deny: %v", err)
		}
		if _, ok := e.probe.enforced(10 * time.Second); !ok {
			b.Fatal("the stream was never denied")
		}
		restore()
	}
	var enforced, setTook, recTook, gaps []time.Duration
	for b.Loop() {
		if !e.probe.flowing(10 * time.Second) {
			b.Fatal("the stream is not flowing before the change")
		}
		e.rec.took.Store(0)
		t0, took, err := set(deny)
		if err != nil {
			b.Fatalf("deny: %v", err)
		}
		rec := time.Duration(e.rec.took.Load())
		lost, ok := e.probe.enforced(10 * time.Second)
		if !ok {
			b.Fatal("the stream was never denied")
		}
		if lost.at.Before(t0) {
			b.Fatalf("probe %d sent %v before the Set was lost", lost.seq, t0.Sub(lost.at))
		}
		enforced = append(enforced, lost.at.Sub(t0))
		setTook, recTook, gaps = append(setTook, took), append(recTook, rec), append(gaps, lost.gap)
		restore()
	}
	pct := func(d []time.Duration, p int) float64 {
		s := slices.Clone(d)
		slices.Sort(s)
		return float64(s[len(s)*p/100]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(enforced, 50), "p50-ms")
	b.ReportMetric(pct(enforced, 99), "p99-ms")
	b.ReportMetric(pct(setTook, 50), "set-p50-ms")
	b.ReportMetric(pct(setTook, 99), "set-p99-ms")
	b.ReportMetric(pct(recTook, 50), "dataplane-p50-ms")
	b.ReportMetric(pct(recTook, 99), "dataplane-p99-ms")
	b.ReportMetric(pct(gaps, 50), "probe-gap-p50-ms")
	b.ReportMetric(float64(len(enforced)), "samples")
}

// e2eProbe is the numbered UDP stream from pod a to pod b.
type e2eProbe struct {
	mu   sync.Mutex
	sent []time.Time // send time by sequence number (from 0)
	got  atomic.Int64
	// got is the highest sequence number received plus one; 0: none yet
}

// e2eLost is the first packet of a stream that never arrived.
type e2eLost struct {
	seq int
	at  time.Time     // when it was sent
	gap time.Duration // since the last one that arrived was sent
}

func newE2EProbe(b *testing.B, a, pb *testPod) *e2eProbe {
	p := &e2eProbe{}
	var tx *net.UDPConn
	var others []*net.UDPConn
	dst := &net.UDPAddr{IP: pb.addr.AsSlice(), Port: 5201}
	must(b, a.ns.do(func() error {
		var err error
		if tx, err = net.DialUDP("udp4", &net.UDPAddr{Port: 40000}, dst); err != nil {
			return err
		}
		for range 256 {
			c, err := net.DialUDP("udp4", nil, dst)
			if err != nil {
				return err
			}
			others = append(others, c)
		}
		return nil
	}))
	var rx *net.UDPConn
	must(b, pb.ns.do(func() error {
		var err error
		rx, err = net.ListenUDP("udp4", &net.UDPAddr{Port: 5201})
		if err == nil {
			err = rx.SetReadBuffer(4 << 20)
		}
		return err
	}))
	// The other established flows: one packet each (their flow entries
	// stay, to be evaluated again at their next packet).
	for _, c := range others {
		if _, err := c.Write([]byte{0, 0, 0, 0, 0, 0, 0, 0, 1}); err != nil {
			b.Fatalf("send on another flow: %v", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // receiver
		defer wg.Done()
		buf := make([]byte, 64)
		for {
			n, err := rx.Read(buf)
			if err != nil {
				return // closed
			}
			if n == 8 {
				if s := int64(binary.BigEndian.Uint64(buf)) + 1; s > p.got.Load() {
					p.got.Store(s)
				}
			}
		}
	}()
	go func() { // sender
		defer wg.Done()
		var buf [8]byte
		for seq := uint64(0); ; seq++ {
			select {
			case <-ctx.Done():
				return
			default:
			}
			p.mu.Lock()
			p.sent = append(p.sent, time.Now())
			p.mu.Unlock()
			binary.BigEndian.PutUint64(buf[:], seq)
			tx.Write(buf[:]) // a dropped packet is no error to the sender
			time.Sleep(e2eProbeEvery)
		}
	}()
	b.Cleanup(func() {
		cancel()
		rx.Close()
		wg.Wait()
		tx.Close()
		for _, c := range others {
			c.Close()
		}
	})
	return p
}

// flowing waits until a packet sent from now on arrives.
func (p *e2eProbe) flowing(limit time.Duration) bool {
	p.mu.Lock()
	from := int64(len(p.sent))
	p.mu.Unlock()
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if p.got.Load() > from {
			return true
		}
	}
	return false
}

// enforced waits until no packet has arrived for e2eQuiet while the
// stream went on (at least 20 packets), and returns the first packet
// after the last that arrived.
func (p *e2eProbe) enforced(limit time.Duration) (e2eLost, bool) {
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		got := int(p.got.Load())
		p.mu.Lock()
		n := len(p.sent)
		var lost e2eLost
		if got > 0 && got < n {
			lost = e2eLost{seq: got, at: p.sent[got], gap: p.sent[got].Sub(p.sent[got-1])}
		}
		p.mu.Unlock()
		if lost.at.IsZero() || time.Since(lost.at) < e2eQuiet || n-got < 20 {
			continue
		}
		return lost, true
	}
	return e2eLost{}, false
}

// e2eQuiet is how long the stream must have gone unanswered for its
// flow to count as denied.
const e2eQuiet = 100 * time.Millisecond

func e2ePath(b *testing.B, s string) *gpb.Path {
	p, err := ygot.StringToStructuredPath(s)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

func e2eJSON(b *testing.B, path, js string) *gpb.Update {
	return &gpb.Update{Path: e2ePath(b, path), Val: &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: []byte(js)}}}
}
