package dataplane

import (
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// BenchmarkTCPThroughput measures iperf3 TCP throughput between the same
// two pod namespaces over three paths in one run: the MPLSoUDP overlay
// (pods on their eth0), plain IPv4 routing through the two hosts (a second
// veth per pod, the hosts forward) and the kernel's VXLAN between the
// hosts (a third veth per pod). Run it with -benchtime=1x; each path runs
// throughputRounds times for throughputSeconds. The hosts' underlay carries
// the dataplane's tc program in all three cases (it passes what is not
// MPLSoUDP to the stack).
func BenchmarkTCPThroughput(b *testing.B) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		b.Skip("iperf3 not installed")
	}
	for b.Loop() {
		res := measureThroughput(b)
		for _, name := range []string{"overlay", "plain", "vxlan"} {
			b.ReportMetric(res[name], name+"-Gbit/s")
		}
		b.ReportMetric(res["overlay"]/res["plain"], "overlay/plain")
	}
}

const (
	throughputSeconds = 5
	throughputRounds  = 3
)

func measureThroughput(b *testing.B) map[string]float64 {
	o := newOverlay(b, EncapMPLSoUDP)
	plain, vxlan := addKernelPaths(b, o)
	from, to := o.a.pods["red"].ns, o.b.pods["red"]
	dst := map[string]netip.Addr{
		"overlay": to.addr,
		"plain":   plain,
		"vxlan":   vxlan,
	}
	// Rounds alternate the paths so that a burst of other load on the
	// machine does not favour one of them; the median round counts.
	runs := map[string][]float64{}
	for range throughputRounds {
		for _, name := range []string{"overlay", "plain", "vxlan"} {
			g := iperf(b, from, to.ns, dst[name])
			runs[name] = append(runs[name], g)
			b.Logf("%s %.2f Gbit/s", name, g)
		}
	}
	res := map[string]float64{}
	for name, r := range runs {
		slices.Sort(r)
		res[name] = r[len(r)/2]
	}
	return res
}

// iperf runs an iperf3 client in from against server's own address dst and
// returns Gbit/s.
func iperf(b testing.TB, from, server *testNS, dst netip.Addr) float64 {
	b.Helper()
	return iperfTo(b, from, server, dst, dst)
}

// BenchmarkLiveSmallPackets sends 64-byte UDP datagrams between two pods
// over MPLSoUDP with iperf3 for throughputSeconds and reports the
// encapsulating and decapsulating programs' average run time per packet,
// from the kernel's BPF run-time statistics: real skbs, warm caches.
func BenchmarkLiveSmallPackets(b *testing.B) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		b.Skip("iperf3 not installed")
	}
	for b.Loop() {
		o := newOverlay(b, EncapMPLSoUDP)
		from, to := o.a.pods["red"], o.b.pods["red"]
		stats, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
		if err != nil {
			b.Fatalf("enable bpf stats: %v", err)
		}
		srv := to.ns.cmd("iperf3", "-s", "-1", "-B", to.addr.String())
		if err := srv.Start(); err != nil {
			b.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		enc0, _ := o.a.d.progs.PodIngress.Stats()
		dec0, _ := o.b.d.progs.UnderlayIngress.Stats()
		out, err := from.ns.cmd("iperf3", "-c", to.addr.String(), "-u", "-l", "64", "-b", "0", "-t", fmt.Sprint(throughputSeconds)).CombinedOutput()
		if err != nil {
			srv.Process.Kill()
			b.Fatalf("iperf3: %v\n%s", err, out)
		}
		srv.Wait()
		enc1, _ := o.a.d.progs.PodIngress.Stats()
		dec1, _ := o.b.d.progs.UnderlayIngress.Stats()
		stats.Close()
		perRun := func(a, z *ebpf.ProgramStats) float64 {
			return float64((z.Runtime - a.Runtime).Nanoseconds()) / float64(max(1, z.RunCount-a.RunCount))
		}
		b.ReportMetric(perRun(enc0, enc1), "encap-ns/pkt")
		b.ReportMetric(perRun(dec0, dec1), "decap-ns/pkt")
		b.ReportMetric(float64(dec1.RunCount-dec0.RunCount)/throughputSeconds, "pkt/s")
	}
}
