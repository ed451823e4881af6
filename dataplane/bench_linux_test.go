package dataplane

import (
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// benchRun runs p once per iteration on a fresh copy of in (the kernel
// rebuilds the skb or xdp buffer each call, so encapsulation never stacks)
// and reports two figures per packet: ns/pkt, the program's own run time
// as the kernel accounts it with BPF run-time stats enabled, and
// harness-ns/pkt, the BPF_PROG_TEST_RUN duration of one repetition, which
// adds the test harness's own work (see the Baseline benchmarks).
func benchRun(b *testing.B, p *ebpf.Program, in []byte, wantRet uint32) {
	stats, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
	if err != nil {
		b.Fatalf("enable bpf stats: %v", err)
	}
	defer stats.Close()
	before, err := p.Stats()
	if err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	for b.Loop() {
		ret, d, err := p.Benchmark(in, 1, nil)
		if err != nil {
			b.Fatal(err)
		}
		if ret != wantRet {
			b.Fatalf("return %d, want %d", ret, wantRet)
		}
		total += d
	}
	after, err := p.Stats()
	if err != nil {
		b.Fatal(err)
	}
	runs := after.RunCount - before.RunCount
	if runs == 0 {
		b.Fatal("no runs accounted")
	}
	b.ReportMetric(float64((after.Runtime-before.Runtime).Nanoseconds())/float64(runs), "ns/pkt")
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "harness-ns/pkt")
}

// BenchmarkEncapMPLSoUDP encapsulates toward a /24 (exact-match miss, then
// the LPM trie) and toward a /32 (exact-match hit), the usual case for VPN
// routes to pods.
func BenchmarkEncapMPLSoUDP(b *testing.B) {
	e := newPacketEnv(b)
	host := netip.MustParseAddr("10.5.0.7")
	must(b, e.d.SetRoutes([]Route{{RouteKey: RouteKey{VRF: "red", Prefix: netip.PrefixFrom(host, 32)},
		NextHops: []NextHop{{Endpoint: remote2, Label: 100, Encap: EncapMPLSoUDP}}}}))
	b.Run("prefix", func(b *testing.B) {
		frame, _ := podFrame(farAddr, 40000, 64, make([]byte, 64))
		benchRun(b, e.d.progs.PodIngress, frame, tcRedirect)
	})
	b.Run("host", func(b *testing.B) {
		frame, _ := podFrame(host, 40000, 64, make([]byte, 64))
		benchRun(b, e.d.progs.PodIngress, frame, tcRedirect)
	})
}

func BenchmarkEncapMPLSoMPLS(b *testing.B) {
	e := newPacketEnv(b)
	frame, _ := podFrame(mplsAddr, 40000, 64, make([]byte, 64))
	benchRun(b, e.d.progs.PodIngress, frame, tcRedirect)
}

func BenchmarkLocalDelivery(b *testing.B) {
	e := newPacketEnv(b)
	frame, _ := podFrame(pod2Addr, 40000, 64, make([]byte, 64))
	benchRun(b, e.d.progs.PodIngress, frame, tcRedirect)
}

func BenchmarkDecapMPLSoUDP(b *testing.B) {
	e := newPacketEnv(b)
	benchRun(b, e.d.progs.UnderlayIngress, underlayFrame(remote2, 6635, lse(1001, true, 63), remoteInner(pod2Addr, 63)), tcRedirect)
}

func BenchmarkDecapMPLSoMPLS(b *testing.B) {
	e := newPacketEnv(b)
	frame := eth(underlayMAC, peer3MAC, 0x8847, cat(lse(16001, false, 63), lse(1001, true, 63), remoteInner(pod2Addr, 63)))
	benchRun(b, e.d.progs.UnderlayXdp, frame, xdpPass)
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

// The two baselines time the harness itself: the same kernel test run of
// one packet through a program that returns at once. Subtract them from the
// figures above to get the forwarder's own cost.
func BenchmarkBaselineTC(b *testing.B) {
	e := newPacketEnv(b)
	arp := eth(underlayMAC, peer2MAC, 0x0806, make([]byte, 28))
	benchRun(b, e.d.progs.UnderlayIngress, arp, tcUnspec)
}

func BenchmarkBaselineXDP(b *testing.B) {
	e := newPacketEnv(b)
	benchRun(b, e.d.progs.PodXdp, eth(underlayMAC, peer2MAC, 0x0800, make([]byte, 100)), xdpPass)
}
