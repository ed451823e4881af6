package dataplane

import (
	"fmt"
	"net"
	"os/exec"
	"slices"
	"sort"
	"testing"
	"time"
)

// benchPolicyRules is n rules on pod1's egress (the last one accepts UDP
// to pod2's port 5201), so a first packet of pod1 → pod2 is classified
// among all of them.
func benchPolicyRules(n int, lastPort uint16) *Attachment {
	rules := make([]PolicyRule, n)
	for i := range rules {
		rules[i] = PolicyRule{Sources: pfx(fmt.Sprintf("10.%d.%d.0/24", 100+i/256, i%256)), Destinations: pfx("10.1.0.0/16"),
			Protocol: 6, DestinationPorts: PortRange{uint16(1000 + i%50000), uint16(1000 + i%50000)}, Action: PolicyAccept, Entry: fmt.Sprintf("bench/%d", i)}
	}
	rules[n-1] = PolicyRule{Sources: pfx("10.1.0.0/24"), Destinations: pfx("10.1.0.3/32"), Protocol: 17,
		DestinationPorts: PortRange{lastPort, lastPort}, Action: PolicyAccept, Entry: "bench/last"}
	return &Attachment{Rules: rules}
}

// BenchmarkPolicy measures pod_ingress on pod1 → pod2 (local delivery,
// UDP) with BPF run-time statistics (benchRun): established flows without
// policy and with 10,000 rules on pod1's egress (one flow-table lookup),
// and first packets (a new source port each: run with -benchtime of at
// most 60,000x) without policy, with one rule (what writing the flow's
// entry costs) and with the 10,000 rules (classification on top). Those
// first packets share addresses and destination port, so after the first
// one the classification cache (pol_class_cache) answers them;
// "first/10000-rules-new-port" sends each to a new destination port (the
// last rule accepts 5201-65535), so that every one is classified.
func BenchmarkPolicy(b *testing.B) {
	e := newPacketEnv(b)
	const rules = 10000
	one := fromPod1(udpPkt(pod1Addr, 40000, pod2Addr, 5201, 64, nil, true))
	firsts := make([][]byte, 65000)
	for i := range firsts {
		firsts[i] = fromPod1(udpPkt(pod1Addr, uint16(i+1), pod2Addr, 5201, 64, nil, true))
	}
	newPorts := make([][]byte, 60000)
	for i := range newPorts {
		newPorts[i] = fromPod1(udpPkt(pod1Addr, 40000, pod2Addr, uint16(5201+i), 64, nil, true))
	}
	none := PolicyConfig{}
	with := PolicyConfig{Interfaces: map[int]InterfacePolicy{1: {Egress: benchPolicyRules(rules, 5201)}}}
	// Every run of a first/ benchmark starts from an empty flow table, so
	// that with -count the frames of an earlier run are first packets
	// again (not stale entries evaluated again in place).
	flush := func(b *testing.B) {
		if _, err := e.d.deleteFlows(func(forwarderFlowKey, *forwarderFlow) bool { return true }); err != nil {
			b.Fatal(err)
		}
	}
	// fresh brings every first/ run to the same state of the flow table:
	// cfg's flows of frames created once (untimed), then the table
	// flushed, so that the run's entries take nodes the table has just
	// freed, whatever ran before it (a run after first/none, which
	// creates none, found colder nodes than one after another first/
	// run: about 100 ns more per packet on this machine), and the policy
	// set again, so that no verdict or classification cached meanwhile
	// is valid (a new generation). PrunePolicy follows every change, as
	// the agent does, so the classifier holds cfg's attachments only.
	fresh := func(b *testing.B, cfg PolicyConfig, frames [][]byte) {
		set := func(c PolicyConfig) {
			must(b, e.d.SetPolicy(c))
			must(b, e.d.PrunePolicy())
		}
		set(cfg)
		for _, f := range frames {
			if _, _, err := e.d.progs.PodIngress.Benchmark(f, 1, nil); err != nil {
				b.Fatal(err)
			}
		}
		flush(b)
		set(none)
		set(cfg)
	}
	b.Run("established/none", func(b *testing.B) {
		must(b, e.d.SetPolicy(none))
		benchRun(b, e.d.progs.PodIngress, tcRedirect, one)
	})
	b.Run("established/10000-rules", func(b *testing.B) {
		must(b, e.d.SetPolicy(with))
		if ret, _ := run(b, e.d.progs.PodIngress, one); ret != tcRedirect {
			b.Fatalf("first packet: return %d", ret)
		}
		benchRun(b, e.d.progs.PodIngress, tcRedirect, one)
	})
	b.Run("first/none", func(b *testing.B) {
		must(b, e.d.SetPolicy(none))
		must(b, e.d.PrunePolicy())
		flush(b)
		benchRun(b, e.d.progs.PodIngress, tcRedirect, firsts...)
	})
	b.Run("first/1-rule", func(b *testing.B) {
		fresh(b, PolicyConfig{Interfaces: map[int]InterfacePolicy{1: {Egress: benchPolicyRules(1, 5201)}}}, firsts)
		benchRun(b, e.d.progs.PodIngress, tcRedirect, firsts...)
	})
	b.Run("first/10000-rules", func(b *testing.B) {
		fresh(b, PolicyConfig{Interfaces: map[int]InterfacePolicy{1: {Egress: benchPolicyRules(rules, 5201)}, e.pod2: {Ingress: &Attachment{Default: PolicyAccept}}}}, firsts)
		benchRun(b, e.d.progs.PodIngress, tcRedirect, firsts...)
	})
	b.Run("first/10000-rules-new-port", func(b *testing.B) {
		att := benchPolicyRules(rules, 5201)
		att.Rules[rules-1].DestinationPorts = PortRange{5201, 65535}
		fresh(b, PolicyConfig{Interfaces: map[int]InterfacePolicy{1: {Egress: att}, e.pod2: {Ingress: &Attachment{Default: PolicyAccept}}}}, newPorts)
		benchRun(b, e.d.progs.PodIngress, tcRedirect, newPorts...)
	})
}

// BenchmarkPolicyWarm measures the established flow of BenchmarkPolicy
// with warm caches, as a stream of packets on one flow meets the
// program: each BPF_PROG_TEST_RUN runs pod_ingress policyWarmRepeat
// times on the same frame (TTL 255, so the decrements never drop it) and
// the kernel reports the mean per run. Rounds alternate no policy and
// the 10,000 rules, each minus an empty program measured the same way;
// the metrics are the medians of the rounds, in whole nanoseconds (the
// kernel's resolution).
func BenchmarkPolicyWarm(b *testing.B) {
	e := newPacketEnv(b)
	one := fromPod1(udpPkt(pod1Addr, 40000, pod2Addr, 5201, 255, nil, true))
	none := PolicyConfig{}
	with := PolicyConfig{Interfaces: map[int]InterfacePolicy{1: {Egress: benchPolicyRules(10000, 5201)}}}
	base := emptyProgram(b, e.d.progs.PodIngress.Type())
	perRun := func() float64 {
		var ds []float64
		for range 300 {
			_, d, err := e.d.progs.PodIngress.Benchmark(one, policyWarmRepeat, nil)
			if err != nil {
				b.Fatal(err)
			}
			_, bd, err := base.Benchmark(one, policyWarmRepeat, nil)
			if err != nil {
				b.Fatal(err)
			}
			ds = append(ds, float64(d.Nanoseconds()-bd.Nanoseconds()))
		}
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	var without, within []float64
	for b.Loop() {
		must(b, e.d.SetPolicy(none))
		without = append(without, perRun())
		must(b, e.d.SetPolicy(with))
		if ret, _ := run(b, e.d.progs.PodIngress, one); ret != tcRedirect {
			b.Fatalf("first packet: return %d", ret)
		}
		within = append(within, perRun())
	}
	slices.Sort(without)
	slices.Sort(within)
	n, w := without[len(without)/2], within[len(within)/2]
	b.ReportMetric(n, "none-ns/pkt")
	b.ReportMetric(w, "10000-rules-ns/pkt")
	b.ReportMetric(w-n, "added-ns/pkt")
}

// policyWarmRepeat is how many times one BPF_PROG_TEST_RUN of
// BenchmarkPolicyWarm runs the program (under the frame's TTL of 255).
const policyWarmRepeat = 200

// BenchmarkPolicyChange measures SetPolicy, from the call to every flow
// being evaluated again at its next packet (the generation is bumped
// last; PrunePolicy, which removes or keeps as a spare the replaced
// attachment, comes after and is not timed): each change gives the last
// rule of a set attached to a pod a new port, in a set of 10 and of
// 10,000 rules. Two untimed changes first make it the steady state of a
// running agent (a retired attachment is there to be rewritten: the first
// change after a start writes the whole classifier). It reports the
// median and the 99th percentile.
func BenchmarkPolicyChange(b *testing.B) {
	e := newPacketEnv(b)
	for _, n := range []int{10, 10000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			set := func(port uint16) {
				must(b, e.d.SetPolicy(PolicyConfig{Interfaces: map[int]InterfacePolicy{1: {Egress: benchPolicyRules(n, port)}}}))
			}
			for p := uint16(6000); p < 6002; p++ {
				set(p)
				must(b, e.d.PrunePolicy())
			}
			var took []time.Duration
			for i := 0; b.Loop(); i++ {
				att := benchPolicyRules(n, uint16(7000+i%50000))
				t0 := time.Now()
				must(b, e.d.SetPolicy(PolicyConfig{Interfaces: map[int]InterfacePolicy{1: {Egress: att}}}))
				took = append(took, time.Since(t0))
				must(b, e.d.PrunePolicy()) // cleanup after the change is in force
			}
			sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
			b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(took[len(took)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}

// BenchmarkPolicyThroughput measures iperf3 TCP throughput from host a's
// red pod to host b's over the MPLSoUDP overlay without policy and with
// 10,000 rules on a's pod egress and on b's pod ingress (the rule that
// accepts port 5201 is the last; replies pass as the flow's), in one run:
// rounds alternate the two, throughputRounds of throughputSeconds each,
// and the median round counts. Run it with -benchtime=1x.
func BenchmarkPolicyThroughput(b *testing.B) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		b.Skip("iperf3 not installed")
	}
	for b.Loop() {
		o := newOverlay(b, EncapMPLSoUDP)
		from, to := o.a.pods["red"], o.b.pods["red"]
		ifindex := func(h *testHost) int {
			var i int
			must(b, h.ns.do(func() error {
				ifc, err := net.InterfaceByName(from.hostIf)
				if err != nil {
					return err
				}
				i = ifc.Index
				return nil
			}))
			return i
		}
		ia, ib := ifindex(o.a), ifindex(o.b)
		rules := func() *Attachment {
			a := benchPolicyRules(10000, 5201)
			a.Rules[len(a.Rules)-1] = PolicyRule{Sources: pfx("10.1.0.0/24"), Destinations: pfx(to.addr.String() + "/32"), Protocol: 6,
				DestinationPorts: PortRange{5201, 5201}, Action: PolicyAccept, Entry: "bench/last"}
			return a
		}
		runs := map[string][]float64{}
		for range throughputRounds {
			for _, name := range []string{"none", "10000-rules"} {
				pa, pb := PolicyConfig{}, PolicyConfig{}
				if name != "none" {
					pa = PolicyConfig{Interfaces: map[int]InterfacePolicy{ia: {Egress: rules()}}}
					pb = PolicyConfig{Interfaces: map[int]InterfacePolicy{ib: {Ingress: rules()}}}
				}
				for _, h := range []struct {
					d   *Dataplane
					cfg PolicyConfig
				}{{o.a.d, pa}, {o.b.d, pb}} {
					must(b, h.d.SetPolicy(h.cfg))
					must(b, h.d.PrunePolicy())
				}
				g := iperf(b, from.ns, to.ns, to.addr)
				if name != "none" {
					// The rules were in force: the accepting one counted the flows.
					for _, d := range []*Dataplane{o.a.d, o.b.d} {
						c, err := d.PolicyEntryCounters()
						must(b, err)
						if c["bench/last"].Packets == 0 {
							b.Fatalf("no packet counted on the accepting rule: %+v", c["bench/last"])
						}
					}
				}
				runs[name] = append(runs[name], g)
				b.Logf("%s %.2f Gbit/s", name, g)
			}
		}
		med := func(r []float64) float64 { slices.Sort(r); return r[len(r)/2] }
		none, with := med(runs["none"]), med(runs["10000-rules"])
		b.ReportMetric(none, "none-Gbit/s")
		b.ReportMetric(with, "10000-rules-Gbit/s")
		b.ReportMetric(with/none, "ratio")
	}
}
