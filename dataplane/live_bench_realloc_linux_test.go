package dataplane

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// reallocCounter counts the skb head reallocations (pskb_expand_head)
// that the given forwarder programs cause, for example
// bpf_skb_change_head on a packet without the headroom. This kernel is
// locked down (no kprobes, no fentry), so it watches the allocations
// instead: raw tracepoints on kmalloc and kmem_cache_alloc take the
// allocations made by kmalloc_reserve (every skb head comes from it; the
// compiler inlined a copy of it into pskb_expand_head) and count those
// whose kernel stack holds both pskb_expand_head and one of the programs. Allocations of other programs and namespaces on the
// machine are not counted. Each skb head allocation takes a stack walk,
// so measure with it and time without it.
type reallocCounter struct {
	counts *ebpf.Map // one u64: reallocations counted
}

// stackDepth is how many kernel frames are searched: enough to reach the
// tc program from the allocator.
const stackDepth = 24

// newReallocCounter attaches the counter until the test ends.
func newReallocCounter(tb testing.TB, progs ...*ebpf.Program) *reallocCounter {
	tb.Helper()
	syms, err := kernelSymbols("kmalloc_reserve", "pskb_expand_head")
	if err != nil {
		tb.Fatal(err)
	}
	var ranges [][2]uint64
	for _, p := range progs {
		info, err := p.Info()
		if err != nil {
			tb.Fatalf("read program info: %v", err)
		}
		addrs, ok := info.JitedKsymAddrs()
		lens, ok2 := info.JitedFuncLens()
		if !ok || !ok2 || len(addrs) != len(lens) {
			tb.Fatalf("program %s: no jited symbols", p)
		}
		for i, a := range addrs {
			ranges = append(ranges, [2]uint64{uint64(a), uint64(a) + uint64(lens[i])})
		}
	}
	c := &reallocCounter{}
	c.counts, err = ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		tb.Fatalf("create realloc count: %v", err)
	}
	tb.Cleanup(func() { c.counts.Close() })

	// inRange jumps to in when r is within [lo, hi), else to out.
	inRange := func(r asm.Register, lo, hi uint64, in, out string) asm.Instructions {
		return asm.Instructions{
			asm.LoadImm(asm.R4, int64(lo), asm.DWord),
			asm.JLT.Reg(r, asm.R4, out),
			asm.LoadImm(asm.R4, int64(hi), asm.DWord),
			asm.JLT.Reg(r, asm.R4, in),
			asm.Ja.Label(out),
		}
	}
	const buf = -8 * stackDepth
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R2, asm.R1, 0, asm.DWord), // call_site
	}
	// kmalloc_reserve, or its copy inlined into pskb_expand_head.
	insns = append(insns, inRange(asm.R2, syms["kmalloc_reserve"][0], syms["kmalloc_reserve"][1], "skb", "inlined")...)
	insns = append(insns, asm.Mov.Reg(asm.R2, asm.R2).WithSymbol("inlined"))
	insns = append(insns, inRange(asm.R2, syms["pskb_expand_head"][0], syms["pskb_expand_head"][1], "skb", "done")...)
	insns = append(insns,
		asm.Mov.Reg(asm.R1, asm.R6).WithSymbol("skb"),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, buf),
		asm.Mov.Imm(asm.R3, 8*stackDepth),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnGetStack.Call(),
		asm.JSLE.Imm(asm.R0, 0, "done"),
		asm.Mov.Reg(asm.R7, asm.R0), // bytes written
		asm.Mov.Imm(asm.R8, 0),      // pskb_expand_head seen
		asm.Mov.Imm(asm.R9, 0),      // one of the programs seen
	)
	for i := 0; i < stackDepth; i++ {
		next := fmt.Sprintf("f%d", i+1)
		insns = append(insns,
			asm.JLE.Imm(asm.R7, int32(8*i), "check").WithSymbol(fmt.Sprintf("f%d", i)),
			asm.LoadMem(asm.R5, asm.RFP, int16(buf+8*i), asm.DWord),
		)
		insns = append(insns, inRange(asm.R5, syms["pskb_expand_head"][0], syms["pskb_expand_head"][1], fmt.Sprintf("e%d", i), fmt.Sprintf("p%d_0", i))...)
		insns = append(insns, asm.Mov.Imm(asm.R8, 1).WithSymbol(fmt.Sprintf("e%d", i)), asm.Ja.Label(next))
		for j, r := range ranges {
			insns = append(insns, asm.Mov.Reg(asm.R5, asm.R5).WithSymbol(fmt.Sprintf("p%d_%d", i, j)))
			insns = append(insns, inRange(asm.R5, r[0], r[1], fmt.Sprintf("g%d", i), fmt.Sprintf("p%d_%d", i, j+1))...)
		}
		insns = append(insns,
			asm.Ja.Label(next).WithSymbol(fmt.Sprintf("p%d_%d", i, len(ranges))),
			asm.Mov.Imm(asm.R9, 1).WithSymbol(fmt.Sprintf("g%d", i)),
		)
	}
	insns = append(insns,
		asm.Ja.Label("check").WithSymbol(fmt.Sprintf("f%d", stackDepth)),
		asm.JEq.Imm(asm.R8, 0, "done").WithSymbol("check"),
		asm.JEq.Imm(asm.R9, 0, "done"),
		asm.StoreImm(asm.RFP, buf-8, 0, asm.Word),
		asm.LoadMapPtr(asm.R1, c.counts.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, buf-8),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "done"),
		asm.Mov.Imm(asm.R1, 1),
		asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("done"),
		asm.Return(),
	)
	for _, tp := range []string{"kmalloc", "kmem_cache_alloc"} {
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Name:         "count_realloc",
			Type:         ebpf.Tracing,
			AttachType:   ebpf.AttachTraceRawTp,
			AttachTo:     tp,
			License:      "GPL",
			Instructions: insns,
		})
		if err != nil {
			tb.Fatalf("load realloc counter on %s: %v", tp, err)
		}
		tb.Cleanup(func() { prog.Close() })
		l, err := link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceRawTp})
		if err != nil {
			tb.Fatalf("attach realloc counter to %s: %v", tp, err)
		}
		tb.Cleanup(func() { l.Close() })
	}
	return c
}

// count returns the reallocations counted so far.
func (c *reallocCounter) count() (uint64, error) {
	var n uint64
	if err := c.counts.Lookup(uint32(0), &n); err != nil {
		return 0, fmt.Errorf("read reallocation count: %w", err)
	}
	return n, nil
}

// kernelSymbols returns [start, end) of each named kernel function, end
// being the next symbol's address, from /proc/kallsyms.
func kernelSymbols(names ...string) (map[string][2]uint64, error) {
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		return nil, fmt.Errorf("open kallsyms: %w", err)
	}
	defer f.Close()
	var addrs []uint64
	starts := map[string]uint64{}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 3 {
			continue
		}
		a, err := strconv.ParseUint(fields[0], 16, 64)
		if err != nil || a == 0 {
			continue
		}
		addrs = append(addrs, a)
		if want[fields[2]] && len(fields) == 3 {
			starts[fields[2]] = a
		}
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("read kallsyms: %w", err)
	}
	sort.Slice(addrs, func(i, j int) bool { return addrs[i] < addrs[j] })
	out := map[string][2]uint64{}
	for _, n := range names {
		a, ok := starts[n]
		if !ok {
			return nil, fmt.Errorf("kernel symbol %s not found (addresses hidden?)", n)
		}
		i := sort.Search(len(addrs), func(i int) bool { return addrs[i] > a })
		if i == len(addrs) {
			return nil, fmt.Errorf("kernel symbol %s: no end", n)
		}
		out[n] = [2]uint64{a, addrs[i]}
	}
	return out, nil
}

// BenchmarkLiveReallocations counts the skb head reallocations the
// encapsulating program causes while iperf3 sends 64-byte UDP datagrams
// over four flows, and while one TCP connection exchanges one-byte
// requests and responses, over MPLSoUDP and MPLSoMPLS. The counter walks
// a stack on every skb head allocation, so this is a count, not a timing.
func BenchmarkLiveReallocations(b *testing.B) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		b.Skip("iperf3 not installed")
	}
	stats, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
	if err != nil {
		b.Fatalf("enable bpf stats: %v", err)
	}
	defer stats.Close()
	for b.Loop() {
		for _, encap := range []Encap{EncapMPLSoUDP, EncapMPLSoMPLS} {
			o := newOverlay(b, encap)
			from, to := o.a.pods["red"], o.b.pods["red"]
			p := livePath{name: encap.String(), from: from.ns, to: to.ns, dst: to.addr}
			rc := newReallocCounter(b, o.a.d.progs.PodIngress)
			name := map[Encap]string{EncapMPLSoUDP: "mplsoudp", EncapMPLSoMPLS: "mplsompls"}[encap]
			for _, load := range []string{"udp", "rr"} {
				n0, err := rc.count()
				must(b, err)
				s0, err := o.a.d.progs.PodIngress.Stats()
				must(b, err)
				if load == "udp" {
					iperfRun(b, p, "-u", "-l", "64", "-b", "0", "-P", "4")
				} else {
					requestResponse(b, p)
				}
				n1, err := rc.count()
				must(b, err)
				s1, err := o.a.d.progs.PodIngress.Stats()
				must(b, err)
				b.ReportMetric(float64(n1-n0), name+"-"+load+"-reallocs")
				b.ReportMetric(float64(s1.RunCount-s0.RunCount), name+"-"+load+"-pkts")
			}
		}
	}
}
