package dataplane

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The live benchmarks run real traffic between a pod on one host and a
// pod on another, the hosts being network namespaces joined by an
// underlay veth, over four paths side by side in one run:
//
//   - mplsoudp, mplsompls: the Isthmus overlay, each on its own pair of
//     hosts (MPLSoMPLS puts pod_xdp on the pod veths, see the README);
//     the MPLSoUDP hosts' underlays have BIG TCP (gso_ipv4_max_size
//     liveGSO) and so, as the CNI plugin does then, both ends of the pod
//     veths;
//   - mplsoudp-64k: the same, with the pod veths at the kernel's default
//     64 KiB (what pods get under an underlay at the default), TCP only;
//   - plain: the same pods as mplsoudp through a second veth each, routed
//     by the two hosts' kernels over the underlay, no overlay, every
//     size at the kernel's default;
//   - plain-big: the same with BIG TCP on both ends of those veths too
//     (liveGSO), TCP only;
//   - vxlan: the same pods through a third veth each, carried between the
//     hosts by the kernel's VXLAN (kernel defaults).
//
// Each round measures every path in turn (so a burst of other load hits
// them alike) and the median round counts: TCP throughput with one and
// with four streams, 64-byte UDP packets per second received over four
// flows, and TCP request/response latency (1 byte each way, one
// connection, p50 and p99). For the Isthmus paths the kernel's BPF
// run-time statistics give the programs' average cost per packet during
// the UDP run; a further UDP run with an empty program in front of each
// MPLSoUDP program gives what those statistics cost per packet.
const (
	liveSeconds = 3 // per iperf3 measurement
	liveRRCount = 20000
)

// liveGSO is the IPv4 GSO and GRO size of the BIG TCP paths, LIVE_GSO or
// 196608 (veth takes up to 524280).
func liveGSO() int {
	if n, err := strconv.Atoi(os.Getenv("LIVE_GSO")); err == nil && n > 0 {
		return n
	}
	return 196608
}

// liveRounds is the number of rounds, LIVE_ROUNDS or 5.
func liveRounds() int {
	if n, err := strconv.Atoi(os.Getenv("LIVE_ROUNDS")); err == nil && n > 0 {
		return n
	}
	return 5
}

// livePath is one way from the client pod to the server pod.
type livePath struct {
	name    string
	from    *testNS
	to      *testNS
	dst     netip.Addr
	encap   []*ebpf.Program // programs that encapsulate (host a)
	decap   []*ebpf.Program // programs that decapsulate (host b), summed per packet
	overlay bool
	// setup, when set, runs before each of the path's measurements (the
	// paths that share links set their sizes there).
	setup func(b *testing.B)
	// tcpOnly paths take the TCP throughput figures only.
	tcpOnly bool
	// accounting, when set, attaches an empty tc program in front of the
	// encapsulating and the decapsulating tc programs for one extra UDP
	// run: its run time per packet is what the statistics themselves cost.
	accounting func(b *testing.B) (encap, decap *ebpf.Program, detach func())
}

// liveFigures is one round's measurement of a path.
type liveFigures struct {
	tcp1, tcp4, udpPPS, rrP50, rrP99, encapNS, decapNS float64
	// udpSentPPS is what the client sent per second in the UDP run:
	// against udpPPS it tells a path that forwards fewer packets from one
	// whose receiver, sharing the CPUs with the forwarding, drops more.
	udpSentPPS float64
	// baseEncapNS and baseDecapNS: an empty program's run time per packet
	// in front of each, in a UDP run of its own (0 when not measured).
	baseEncapNS, baseDecapNS float64
}

func BenchmarkLive(b *testing.B) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		b.Skip("iperf3 not installed")
	}
	for b.Loop() {
		paths := livePaths(b)
		stats, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
		if err != nil {
			b.Fatalf("enable bpf stats: %v", err)
		}
		runs := map[string][]liveFigures{}
		for r := range liveRounds() {
			for _, p := range paths {
				f := measurePath(b, p, r)
				runs[p.name] = append(runs[p.name], f)
				if p.tcpOnly {
					b.Logf("round %d %-12s tcp1 %5.2f tcp4 %5.2f Gbit/s  load %s", r, p.name, f.tcp1, f.tcp4, loadAverage())
					continue
				}
				b.Logf("round %d %-12s tcp1 %5.2f tcp4 %5.2f Gbit/s  udp %7.0f pkt/s (sent %7.0f)  rr p50 %5.1f p99 %6.1f µs  encap %4.0f decap %4.0f ns  base %3.0f %3.0f ns  load %s",
					r, p.name, f.tcp1, f.tcp4, f.udpPPS, f.udpSentPPS, f.rrP50, f.rrP99, f.encapNS, f.decapNS, f.baseEncapNS, f.baseDecapNS, loadAverage())
			}
		}
		stats.Close()
		med := map[string]liveFigures{}
		for _, p := range paths {
			m := medianFigures(runs[p.name])
			med[p.name] = m
			b.ReportMetric(m.tcp1, p.name+"-tcp1-Gbit/s")
			b.ReportMetric(m.tcp4, p.name+"-tcp4-Gbit/s")
			if p.tcpOnly {
				continue
			}
			b.ReportMetric(m.udpPPS, p.name+"-udp-pkt/s")
			b.ReportMetric(m.udpSentPPS, p.name+"-udp-sent-pkt/s")
			b.ReportMetric(m.rrP50, p.name+"-rr-p50-µs")
			b.ReportMetric(m.rrP99, p.name+"-rr-p99-µs")
			if p.overlay {
				b.ReportMetric(m.encapNS, p.name+"-encap-ns/pkt")
				b.ReportMetric(m.decapNS, p.name+"-decap-ns/pkt")
			}
			if p.accounting != nil {
				b.ReportMetric(m.baseEncapNS, p.name+"-encap-base-ns/pkt")
				b.ReportMetric(m.baseDecapNS, p.name+"-decap-base-ns/pkt")
			}
		}
		for _, o := range []string{"mplsoudp", "mplsoudp-64k", "mplsompls"} {
			for _, base := range []string{"plain", "plain-big", "vxlan"} {
				b.ReportMetric(med[o].tcp1/med[base].tcp1, o+"/"+base+"-tcp1")
				b.ReportMetric(med[o].tcp4/med[base].tcp4, o+"/"+base+"-tcp4")
			}
			if o != "mplsoudp-64k" {
				b.ReportMetric(med[o].udpPPS/med["plain"].udpPPS, o+"/plain-udp")
				b.ReportMetric(med[o].rrP50/med["plain"].rrP50, o+"/plain-rr-p50")
			}
		}
	}
}

// medianFigures takes the median of each figure over the rounds.
func medianFigures(fs []liveFigures) liveFigures {
	med := func(get func(liveFigures) float64) float64 {
		var v []float64
		for _, f := range fs {
			v = append(v, get(f))
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	return liveFigures{
		tcp1:       med(func(f liveFigures) float64 { return f.tcp1 }),
		tcp4:       med(func(f liveFigures) float64 { return f.tcp4 }),
		udpPPS:     med(func(f liveFigures) float64 { return f.udpPPS }),
		udpSentPPS: med(func(f liveFigures) float64 { return f.udpSentPPS }),
		rrP50:      med(func(f liveFigures) float64 { return f.rrP50 }),
		rrP99:      med(func(f liveFigures) float64 { return f.rrP99 }),
		encapNS:    med(func(f liveFigures) float64 { return f.encapNS }),
		decapNS:    med(func(f liveFigures) float64 { return f.decapNS }),

		baseEncapNS: med(func(f liveFigures) float64 { return f.baseEncapNS }),
		baseDecapNS: med(func(f liveFigures) float64 { return f.baseDecapNS }),
	}
}

// livePaths builds the two overlays and the plain and VXLAN paths.
func livePaths(b *testing.B) []livePath {
	udp := newOverlay(b, EncapMPLSoUDP)
	mpls := newOverlay(b, EncapMPLSoMPLS)
	plain, vxlan := addKernelPaths(b, udp)
	from, to := udp.a.pods["red"], udp.b.pods["red"]
	mfrom, mto := mpls.a.pods["red"], mpls.b.pods["red"]
	// BIG TCP: the operator's underlays (shared by every path between
	// the MPLSoUDP hosts; packets of the paths at the default stay below
	// 64 KiB on them), then per path both ends of its pod veths.
	for _, h := range []*testHost{udp.a, udp.b} {
		setIPv4GSO(b, h.ns, liveGSO(), "ul")
	}
	sizes := func(size int, hostIf, podIf string) func(b *testing.B) {
		return func(b *testing.B) {
			for _, h := range []*testHost{udp.a, udp.b} {
				setIPv4GSO(b, h.ns, size, hostIf)
				setIPv4GSO(b, h.pods["red"].ns, size, podIf)
			}
		}
	}
	const legacy = 65536
	return []livePath{
		{name: "mplsoudp", from: from.ns, to: to.ns, dst: to.addr, overlay: true,
			setup: sizes(liveGSO(), from.hostIf, "eth0"),
			encap: []*ebpf.Program{udp.a.d.progs.PodIngress}, decap: []*ebpf.Program{udp.b.d.progs.UnderlayIngress},
			accounting: emptyInFront(udp.a.ns, from.hostIf, udp.a.d.progs.PodIngress, udp.b.ns, "ul", udp.b.d.progs.UnderlayIngress)},
		{name: "mplsoudp-64k", from: from.ns, to: to.ns, dst: to.addr, overlay: true, tcpOnly: true,
			setup: sizes(legacy, from.hostIf, "eth0")},
		{name: "mplsompls", from: mfrom.ns, to: mto.ns, dst: mto.addr, overlay: true,
			encap: []*ebpf.Program{mpls.a.d.progs.PodIngress}, decap: []*ebpf.Program{mpls.b.d.progs.UnderlayXdp, mpls.b.d.progs.UnderlayIngress}},
		{name: "plain", from: from.ns, to: to.ns, dst: plain, setup: sizes(legacy, "plain", "eth1")},
		{name: "plain-big", from: from.ns, to: to.ns, dst: plain, tcpOnly: true, setup: sizes(liveGSO(), "plain", "eth1")},
		{name: "vxlan", from: from.ns, to: to.ns, dst: vxlan},
	}
}

// addKernelPaths gives the red pods of o two more ways to each other that
// the kernel forwards: plain routing through both hosts (a second veth per
// pod, MTU 1500) and the kernel's VXLAN between the hosts (a third veth
// per pod, MTU 1450). It returns the server pod's address on each.
func addKernelPaths(b testing.TB, o *overlay) (plain, vxlan netip.Addr) {
	hosts := []*testHost{o.a, o.b}
	ul := []string{"192.0.2.1", "192.0.2.2"}
	for i, h := range hosts {
		other := 1 - i
		p := h.pods["red"]
		h.ns.ip(b, "link", "add", "vx0", "type", "vxlan", "id", "42", "local", ul[i], "remote", ul[other], "dstport", "4789", "dev", "ul")
		h.ns.ip(b, "addr", "add", fmt.Sprintf("192.168.100.%d/24", i+1), "dev", "vx0")
		h.ns.ip(b, "link", "set", "vx0", "up")
		if out, err := h.ns.cmd("sysctl", "-qw", "net.ipv4.ip_forward=1").CombinedOutput(); err != nil {
			b.Fatalf("enable forwarding: %v: %s", err, out)
		}
		// Plain routing: pod eth1 ↔ host "plain" ↔ underlay ↔ other host.
		vethBetween(b, h.ns, "plain", net.HardwareAddr{0x0a, 0, 1, 0, byte(i), 1}, p.ns, "eth1", net.HardwareAddr{0x0a, 0, 1, 0, byte(i), 2})
		h.ns.ip(b, "addr", "add", fmt.Sprintf("172.16.%d.1/24", i+1), "dev", "plain")
		p.ns.ip(b, "addr", "add", fmt.Sprintf("172.16.%d.2/24", i+1), "dev", "eth1")
		p.ns.ip(b, "route", "add", "172.16.0.0/16", "via", fmt.Sprintf("172.16.%d.1", i+1))
		h.ns.ip(b, "route", "add", fmt.Sprintf("172.16.%d.0/24", other+1), "via", ul[other])
		// VXLAN: pod eth2 ↔ host "vxl" ↔ vx0 ↔ other host.
		vethBetween(b, h.ns, "vxl", net.HardwareAddr{0x0a, 0, 2, 0, byte(i), 1}, p.ns, "eth2", net.HardwareAddr{0x0a, 0, 2, 0, byte(i), 2})
		p.ns.ip(b, "link", "set", "eth2", "mtu", "1450")
		h.ns.ip(b, "addr", "add", fmt.Sprintf("172.17.%d.1/24", i+1), "dev", "vxl")
		p.ns.ip(b, "addr", "add", fmt.Sprintf("172.17.%d.2/24", i+1), "dev", "eth2")
		p.ns.ip(b, "route", "add", "172.17.0.0/16", "via", fmt.Sprintf("172.17.%d.1", i+1))
		h.ns.ip(b, "route", "add", fmt.Sprintf("172.17.%d.0/24", other+1), "via", fmt.Sprintf("192.168.100.%d", other+1))
	}
	return netip.MustParseAddr("172.16.2.2"), netip.MustParseAddr("172.17.2.2")
}

// measurePath takes one round's figures on p.
func measurePath(b *testing.B, p livePath, round int) liveFigures {
	var f liveFigures
	if p.setup != nil {
		p.setup(b)
	}
	stop := liveProfile(b, p, round)
	f.tcp1 = iperfRun(b, p, "-P", "1").End.SumReceived.BitsPerSecond / 1e9
	stop()
	f.tcp4 = iperfRun(b, p, "-P", "4").End.SumReceived.BitsPerSecond / 1e9
	if p.tcpOnly {
		return f
	}
	enc0, dec0 := progStats(b, p.encap), progStats(b, p.decap)
	r := iperfRun(b, p, "-u", "-l", "64", "-b", "0", "-P", "4")
	enc1, dec1 := progStats(b, p.encap), progStats(b, p.decap)
	f.udpPPS = float64(r.End.Sum.Packets-r.End.Sum.LostPackets) / liveSeconds
	f.udpSentPPS = float64(r.End.Sum.Packets) / liveSeconds
	if p.overlay {
		f.encapNS = perPacket(enc0, enc1)
		f.decapNS = perPacket(dec0, dec1)
	}
	f.rrP50, f.rrP99 = requestResponse(b, p)
	if p.accounting != nil {
		encap, decap, detach := p.accounting(b)
		e0, d0 := progStats(b, []*ebpf.Program{encap}), progStats(b, []*ebpf.Program{decap})
		iperfRun(b, p, "-u", "-l", "64", "-b", "0", "-P", "4")
		e1, d1 := progStats(b, []*ebpf.Program{encap}), progStats(b, []*ebpf.Program{decap})
		detach()
		f.baseEncapNS, f.baseDecapNS = perPacket(e0, e1), perPacket(d0, d1)
	}
	return f
}

// liveProfile, when LIVE_PERF names a directory, records the whole
// machine's CPU with call chains for 2 s into <dir>/<path>.data during the
// first round's single-stream TCP run of p (perf record -a -g), and
// returns what waits for it to finish.
func liveProfile(b *testing.B, p livePath, round int) (wait func()) {
	dir := os.Getenv("LIVE_PERF")
	if dir == "" || round != 0 {
		return func() {}
	}
	c := exec.Command("perf", "record", "-a", "-g", "-o", filepath.Join(dir, p.name+".data"), "--", "sleep", "2")
	if err := c.Start(); err != nil {
		b.Fatalf("start perf: %v", err)
	}
	return func() {
		if err := c.Wait(); err != nil {
			b.Fatalf("perf record: %v", err)
		}
	}
}

// emptyInFront returns an accounting function for livePath: it attaches
// an empty tc program before prog's tcx link on the interface named
// ifname in ns, for encap and for decap.
func emptyInFront(encapNS *testNS, encapIf string, encapProg *ebpf.Program, decapNS *testNS, decapIf string, decapProg *ebpf.Program) func(b *testing.B) (*ebpf.Program, *ebpf.Program, func()) {
	return func(b *testing.B) (*ebpf.Program, *ebpf.Program, func()) {
		attach := func(ns *testNS, ifname string, before *ebpf.Program) (*ebpf.Program, link.Link) {
			empty := emptyProgram(b, ebpf.SchedCLS)
			var l link.Link
			must(b, ns.do(func() error {
				nl, err := netlink.LinkByName(ifname)
				if err != nil {
					return err
				}
				l, err = link.AttachTCX(link.TCXOptions{Program: empty, Interface: nl.Attrs().Index,
					Attach: ebpf.AttachTCXIngress, Anchor: link.BeforeProgram(before)})
				return err
			}))
			return empty, l
		}
		e, el := attach(encapNS, encapIf, encapProg)
		d, dl := attach(decapNS, decapIf, decapProg)
		return e, d, func() { el.Close(); dl.Close() }
	}
}

// iperfResult is what the live benchmarks read from iperf3 -J.
type iperfResult struct {
	End struct {
		SumReceived struct {
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
		// Sum is the UDP summary: packets sent, and lost as the server
		// counted them.
		Sum struct {
			Packets     int64 `json:"packets"`
			LostPackets int64 `json:"lost_packets"`
		} `json:"sum"`
	} `json:"end"`
}

// iperfRun runs iperf3 from p.from to a server in p.to for liveSeconds.
func iperfRun(b *testing.B, p livePath, args ...string) iperfResult {
	b.Helper()
	srv := p.to.cmd("iperf3", "-s", "-1", "-B", p.dst.String())
	if err := srv.Start(); err != nil {
		b.Fatalf("start iperf3 server: %v", err)
	}
	defer srv.Wait()
	time.Sleep(200 * time.Millisecond)
	out, err := p.from.cmd("iperf3", append([]string{"-c", p.dst.String(), "-t", strconv.Itoa(liveSeconds), "-J"}, args...)...).Output()
	if err != nil {
		srv.Process.Kill()
		b.Fatalf("iperf3 %v over %s: %v\n%s", args, p.name, err, out)
	}
	var r iperfResult
	if err := json.Unmarshal(out, &r); err != nil {
		b.Fatalf("parse iperf3 output: %v", err)
	}
	return r
}

// progStats sums the run-time statistics of programs.
func progStats(b *testing.B, progs []*ebpf.Program) []ebpf.ProgramStats {
	var out []ebpf.ProgramStats
	for _, p := range progs {
		s, err := p.Stats()
		if err != nil {
			b.Fatalf("read program stats: %v", err)
		}
		out = append(out, *s)
	}
	return out
}

// perPacket is the programs' run time per packet of the first program
// between two readings (the others run on the same packets).
func perPacket(a, z []ebpf.ProgramStats) float64 {
	if len(a) == 0 {
		return 0
	}
	var ns time.Duration
	for i := range a {
		ns += z[i].Runtime - a[i].Runtime
	}
	return float64(ns.Nanoseconds()) / float64(max(1, z[0].RunCount-a[0].RunCount))
}

// requestResponse runs liveRRCount one-byte request/response exchanges
// over one TCP connection from p.from to p.to and returns the p50 and p99
// round trip in µs. Both ends are goroutines of this process holding
// sockets of the pod namespaces.
func requestResponse(b *testing.B, p livePath) (p50, p99 float64) {
	b.Helper()
	var ln net.Listener
	must(b, p.to.do(func() (err error) {
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(p.dst, 5201).String())
		return err
	}))
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 1)
		for {
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()
	var c net.Conn
	must(b, p.from.do(func() (err error) {
		c, err = net.DialTimeout("tcp4", netip.AddrPortFrom(p.dst, 5201).String(), 5*time.Second)
		return err
	}))
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	buf := make([]byte, 1)
	rtts := make([]float64, 0, liveRRCount)
	for i := range liveRRCount + 1000 {
		start := time.Now()
		if _, err := c.Write(buf); err != nil {
			b.Fatalf("request over %s: %v", p.name, err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatalf("response over %s: %v", p.name, err)
		}
		if i >= 1000 { // the first thousand warm up
			rtts = append(rtts, float64(time.Since(start).Nanoseconds())/1e3)
		}
	}
	slices.Sort(rtts)
	return rtts[len(rtts)/2], rtts[len(rtts)*99/100]
}

// loadAverage is the machine's 1-minute load average, for the log.
func loadAverage() string {
	out, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(out))[0]
}
