package dataplane

import (
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

// benchRun runs p once per iteration on a fresh copy of a frame, taking
// the frames in turn (the kernel
// rebuilds the skb or xdp buffer each call, so encapsulation never stacks),
// and right after it an empty program of the same type (it returns at once)
// on the same frame. It reports, per packet:
//
//   - ns/pkt: p's run time as the kernel accounts it with BPF run-time
//     statistics enabled (a sched_clock read on either side of the call);
//   - base-ns/pkt: the same figure for the empty program, which is what the
//     accounting itself costs here (clock reads, the indirect call, caches
//     made cold by the test-run syscall);
//   - net-ns/pkt: the difference, the forwarder's own cost. Both programs
//     alternate in one loop, so they see the same load;
//   - harness-ns/pkt: the BPF_PROG_TEST_RUN duration of one repetition of
//     p, which adds the harness's own work around the program.
func benchRun(b *testing.B, p *ebpf.Program, wantRet uint32, frames ...[]byte) {
	base := emptyProgram(b, p.Type())
	stats, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
	if err != nil {
		b.Fatalf("enable bpf stats: %v", err)
	}
	defer stats.Close()
	before, err := p.Stats()
	if err != nil {
		b.Fatal(err)
	}
	baseBefore, err := base.Stats()
	if err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	for i := 0; b.Loop(); i++ {
		in := frames[i%len(frames)]
		ret, d, err := p.Benchmark(in, 1, nil)
		if err != nil {
			b.Fatal(err)
		}
		if ret != wantRet {
			b.Fatalf("return %d, want %d", ret, wantRet)
		}
		total += d
		if _, _, err := base.Benchmark(in, 1, nil); err != nil {
			b.Fatal(err)
		}
	}
	after, err := p.Stats()
	if err != nil {
		b.Fatal(err)
	}
	baseAfter, err := base.Stats()
	if err != nil {
		b.Fatal(err)
	}
	perRun := func(a, z *ebpf.ProgramStats) float64 {
		runs := z.RunCount - a.RunCount
		if runs == 0 {
			b.Fatal("no runs accounted")
		}
		return float64((z.Runtime - a.Runtime).Nanoseconds()) / float64(runs)
	}
	ns, baseNS := perRun(before, after), perRun(baseBefore, baseAfter)
	b.ReportMetric(ns, "ns/pkt")
	b.ReportMetric(baseNS, "base-ns/pkt")
	b.ReportMetric(ns-baseNS, "net-ns/pkt")
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "harness-ns/pkt")
}

// emptyProgram loads a program of type typ that returns at once: TC_ACT_UNSPEC
// for tc, XDP_PASS for XDP.
func emptyProgram(b *testing.B, typ ebpf.ProgramType) *ebpf.Program {
	b.Helper()
	ret := int32(-1)
	if typ == ebpf.XDP {
		ret = xdpPass
	}
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "empty",
		Type:         typ,
		License:      "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, ret), asm.Return()},
	})
	if err != nil {
		b.Fatalf("load empty program: %v", err)
	}
	b.Cleanup(func() { p.Close() })
	return p
}

// BenchmarkEncapMPLSoUDP encapsulates toward a /24 (found in the trie)
// and toward a /32 (found in the exact-match table), the usual case for VPN
// routes to pods; after the first packet both are answered by the route
// cache, which the miss case defeats.
func BenchmarkEncapMPLSoUDP(b *testing.B) {
	e := newPacketEnv(b)
	host := netip.MustParseAddr("10.5.0.7")
	must(b, e.d.SetRoutes([]Route{{RouteKey: RouteKey{VRF: "red", Prefix: netip.PrefixFrom(host, 32)},
		NextHops: []NextHop{{Endpoint: remote2, Label: 100, Encap: EncapMPLSoUDP}}}}))
	b.Run("prefix", func(b *testing.B) {
		frame, _ := podFrame(farAddr, 40000, 64, make([]byte, 64))
		benchRun(b, e.d.progs.PodIngress, tcRedirect, frame)
	})
	b.Run("host", func(b *testing.B) {
		frame, _ := podFrame(host, 40000, 64, make([]byte, 64))
		benchRun(b, e.d.progs.PodIngress, tcRedirect, frame)
	})
	// miss: 65,536 destinations in turn through a /16, so that the per-CPU
	// route cache (4,096 entries) never hits: the cost of the first packet
	// of a flow, or of traffic spread over more destinations than the cache.
	must(b, e.d.SetRoutes([]Route{{RouteKey: RouteKey{VRF: "red", Prefix: netip.MustParsePrefix("10.6.0.0/16")},
		NextHops: []NextHop{{Endpoint: remote2, Label: 100, Encap: EncapMPLSoUDP}}}}))
	b.Run("miss", func(b *testing.B) {
		frames := make([][]byte, 1<<16)
		for i := range frames {
			frames[i], _ = podFrame(netip.AddrFrom4([4]byte{10, 6, byte(i >> 8), byte(i)}), 40000, 64, make([]byte, 64))
		}
		benchRun(b, e.d.progs.PodIngress, tcRedirect, frames...)
	})
}

func BenchmarkEncapMPLSoMPLS(b *testing.B) {
	e := newPacketEnv(b)
	frame, _ := podFrame(mplsAddr, 40000, 64, make([]byte, 64))
	benchRun(b, e.d.progs.PodIngress, tcRedirect, frame)
}

func BenchmarkLocalDelivery(b *testing.B) {
	e := newPacketEnv(b)
	frame, _ := podFrame(pod2Addr, 40000, 64, make([]byte, 64))
	benchRun(b, e.d.progs.PodIngress, tcRedirect, frame)
}

func BenchmarkDecapMPLSoUDP(b *testing.B) {
	e := newPacketEnv(b)
	benchRun(b, e.d.progs.UnderlayIngress, tcRedirect, underlayFrame(remote2, 6635, lse(1001, true, 63), remoteInner(pod2Addr, 63)))
}

func BenchmarkDecapMPLSoMPLS(b *testing.B) {
	e := newPacketEnv(b)
	frame := eth(underlayMAC, peer3MAC, 0x8847, cat(lse(16001, false, 63), lse(1001, true, 63), remoteInner(pod2Addr, 63)))
	benchRun(b, e.d.progs.UnderlayXdp, xdpPass, frame)
}

// BenchmarkProgram1MRoutes measures SetRoutes for one million /32 routes
// spread over 64 ECMP sets of 4 next hops, into an empty table.
func BenchmarkProgram1MRoutes(b *testing.B) {
	isolate(b)
	const n = 1 << 20
	d := openTestWith(b, Config{HostRoutes: n + n/8})
	var sets [][]NextHop
	for s := range 64 {
		var nhs []NextHop
		for i := range 4 {
			nhs = append(nhs, NextHop{Endpoint: netip.AddrFrom4([4]byte{192, 0, 2, byte(s + i)}), Label: uint32(100 + s), Encap: EncapMPLSoUDP})
		}
		sets = append(sets, nhs)
	}
	routes := make([]Route, n)
	keys := make([]RouteKey, n)
	for i := range routes {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
		keys[i] = RouteKey{VRF: "bench", Prefix: p}
		routes[i] = Route{RouteKey: keys[i], NextHops: sets[i%len(sets)]}
	}
	var total, cpu time.Duration
	for b.Loop() {
		start, c := time.Now(), cpuTime()
		if err := d.SetRoutes(routes); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		cpu += cpuTime() - c
		b.StopTimer()
		if d.Routes() != n {
			b.Fatalf("%d routes installed, want %d", d.Routes(), n)
		}
		if err := d.DeleteRoutes(keys); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/1M-routes")
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/1M-routes")
}

// cpuTime is the user and system CPU time this process has used, which,
// unlike wall time, does not grow when other work shares the machine.
func cpuTime() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
