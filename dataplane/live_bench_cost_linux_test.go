package dataplane

import (
	"os/exec"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// BenchmarkLiveProgramCost measures only what the MPLSoUDP programs cost
// per packet under live traffic, the figure BenchmarkLive gives once per
// round, without the other paths: one MPLSoUDP overlay, LIVE_ROUNDS (5)
// runs of 64-byte UDP over four flows for liveSeconds each, the kernel's
// BPF run-time statistics of pod_ingress on the sending host and
// underlay_ingress on the receiving one, and, alternating with them, the
// same run with an empty program in front of each (what the statistics
// themselves cost). It reports the medians; a change to either program
// is measured here in a few minutes instead of BenchmarkLive's twenty.
func BenchmarkLiveProgramCost(b *testing.B) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		b.Skip("iperf3 not installed")
	}
	for b.Loop() {
		o := newOverlay(b, EncapMPLSoUDP)
		from, to := o.a.pods["red"], o.b.pods["red"]
		p := livePath{name: "mplsoudp", from: from.ns, to: to.ns, dst: to.addr, overlay: true,
			encap: []*ebpf.Program{o.a.d.progs.PodIngress}, decap: []*ebpf.Program{o.b.d.progs.UnderlayIngress},
			accounting: emptyInFront(o.a.ns, from.hostIf, o.a.d.progs.PodIngress, o.b.ns, "ul", o.b.d.progs.UnderlayIngress)}
		stats, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
		if err != nil {
			b.Fatalf("enable bpf stats: %v", err)
		}
		var enc, dec, baseEnc, baseDec, pps []float64
		for r := range liveRounds() {
			e0, d0 := progStats(b, p.encap), progStats(b, p.decap)
			res := iperfRun(b, p, "-u", "-l", "64", "-b", "0", "-P", "4")
			e1, d1 := progStats(b, p.encap), progStats(b, p.decap)
			enc = append(enc, perPacket(e0, e1))
			dec = append(dec, perPacket(d0, d1))
			pps = append(pps, float64(res.End.Sum.Packets-res.End.Sum.LostPackets)/liveSeconds)
			encap, decap, detach := p.accounting(b)
			be0, bd0 := progStats(b, []*ebpf.Program{encap}), progStats(b, []*ebpf.Program{decap})
			iperfRun(b, p, "-u", "-l", "64", "-b", "0", "-P", "4")
			be1, bd1 := progStats(b, []*ebpf.Program{encap}), progStats(b, []*ebpf.Program{decap})
			detach()
			baseEnc = append(baseEnc, perPacket(be0, be1))
			baseDec = append(baseDec, perPacket(bd0, bd1))
			b.Logf("run %d: encap %4.0f decap %4.0f ns/pkt  base %3.0f %3.0f ns  udp %7.0f pkt/s  load %s",
				r, enc[r], dec[r], baseEnc[r], baseDec[r], pps[r], loadAverage())
		}
		stats.Close()
		med := func(v []float64) float64 {
			v = slices.Clone(v)
			slices.Sort(v)
			return v[len(v)/2]
		}
		b.ReportMetric(med(enc), "encap-ns/pkt")
		b.ReportMetric(med(dec), "decap-ns/pkt")
		b.ReportMetric(med(baseEnc), "encap-base-ns/pkt")
		b.ReportMetric(med(baseDec), "decap-base-ns/pkt")
		b.ReportMetric(med(pps), "udp-pkt/s")
	}
}
