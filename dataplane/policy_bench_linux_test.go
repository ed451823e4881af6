package dataplane

import (
	"fmt"
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
// most 65,000x) without policy, with one rule (what writing the two flow
// entries costs) and with the 10,000 rules (classification on top).
func BenchmarkPolicy(b *testing.B) {
	e := newPacketEnv(b)
	const rules = 10000
	one := fromPod1(udpPkt(pod1Addr, 40000, pod2Addr, 5201, 64, nil, true))
	firsts := make([][]byte, 65000)
	for i := range firsts {
		firsts[i] = fromPod1(udpPkt(pod1Addr, uint16(i+1), pod2Addr, 5201, 64, nil, true))
	}
	none := PolicyConfig{}
	with := PolicyConfig{Interfaces: map[int]InterfacePolicy{1: {Egress: benchPolicyRules(rules, 5201)}}}
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
		benchRun(b, e.d.progs.PodIngress, tcRedirect, firsts...)
	})
	b.Run("first/1-rule", func(b *testing.B) {
		must(b, e.d.SetPolicy(PolicyConfig{Interfaces: map[int]InterfacePolicy{1: {Egress: benchPolicyRules(1, 5201)}}}))
		benchRun(b, e.d.progs.PodIngress, tcRedirect, firsts...)
	})
	b.Run("first/10000-rules", func(b *testing.B) {
		must(b, e.d.SetPolicy(with))
		must(b, e.d.SetPolicy(PolicyConfig{Interfaces: map[int]InterfacePolicy{1: {Egress: benchPolicyRules(rules, 5201)}, e.pod2: {Ingress: &Attachment{Default: PolicyAccept}}}}))
		benchRun(b, e.d.progs.PodIngress, tcRedirect, firsts...)
	})
}

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
