package dataplane

import (
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// BenchmarkPolicyFlowFloor measures what a first packet's flow entry costs
// by itself: minimal tc programs, each run once per BPF_PROG_TEST_RUN as
// BenchmarkPolicy's first packets are (benchRun), that make a random flow
// key (two bpf_get_prandom_u32, the key and a value of the flow table's
// sizes zeroed on the stack) and then do nothing more ("key"), look it up
// in an empty table of the flow table's kind and size ("lookup-miss": a
// cold bucket), insert it ("insert": one new entry, as a first packet of
// policy writes), or both ("lookup-insert": what a first packet of policy
// does, the lookup that misses bringing the bucket in). The tables: the
// flow table's LRU hash (FLOW_ENTRIES), the same with a free list per CPU
// (BPF_F_NO_COMMON_LRU), a preallocated plain hash of that size, and LRU
// hashes of 65,536 and of 16,384 entries (a smaller table of policy's
// own; the smallest is full after its first 16,384 runs, so later
// inserts evict). A program's figure less the "key" program's is the cost
// of the operation alone.
func BenchmarkPolicyFlowFloor(b *testing.B) {
	frame := fromPod1(udpPkt(pod1Addr, 40000, pod2Addr, 5201, 64, nil, true))
	spec, err := loadForwarder()
	if err != nil {
		b.Fatal(err)
	}
	flows := spec.Maps["flows"] // its key, value and default size
	keySize, valueSize, flowEntries := flows.KeySize, flows.ValueSize, flows.MaxEntries
	if keySize > 24 || valueSize > 56 {
		b.Fatalf("flow key %d bytes, value %d: the programs have room for 24 and 56", keySize, valueSize)
	}
	table := func(b *testing.B, typ ebpf.MapType, entries uint32, flags uint32) *ebpf.Map {
		m, err := ebpf.NewMap(&ebpf.MapSpec{Type: typ, KeySize: keySize, ValueSize: valueSize, MaxEntries: entries, Flags: flags})
		if err != nil {
			b.Fatalf("create table: %v", err)
		}
		b.Cleanup(func() { m.Close() })
		return m
	}
	prog := func(b *testing.B, m *ebpf.Map, op asm.BuiltinFunc, lookupFirst bool) *ebpf.Program {
		// Key at fp-24, value at fp-80.
		ins := asm.Instructions{asm.Mov.Imm(asm.R1, 0)}
		for off := int16(-80); off < 0; off += 8 {
			ins = append(ins, asm.StoreMem(asm.RFP, off, asm.R1, asm.DWord))
		}
		ins = append(ins,
			asm.Mov.Imm(asm.R1, 1),
			asm.StoreMem(asm.RFP, -24, asm.R1, asm.Word), // vrf
			asm.FnGetPrandomU32.Call(),
			asm.StoreMem(asm.RFP, -20, asm.R0, asm.Word), // saddr
			asm.FnGetPrandomU32.Call(),
			asm.StoreMem(asm.RFP, -16, asm.R0, asm.Word), // daddr
		)
		if m != nil {
			ins = append(ins,
				asm.LoadMapPtr(asm.R1, m.FD()),
				asm.Mov.Reg(asm.R2, asm.RFP),
				asm.Add.Imm(asm.R2, -24),
			)
			if op == asm.FnMapUpdateElem && lookupFirst {
				ins = append(ins,
					asm.FnMapLookupElem.Call(),
					asm.LoadMapPtr(asm.R1, m.FD()),
					asm.Mov.Reg(asm.R2, asm.RFP),
					asm.Add.Imm(asm.R2, -24),
				)
			}
			if op == asm.FnMapUpdateElem {
				ins = append(ins,
					asm.Mov.Reg(asm.R3, asm.RFP),
					asm.Add.Imm(asm.R3, -80),
					asm.Mov.Imm(asm.R4, 0), // BPF_ANY
				)
			}
			ins = append(ins, op.Call())
		}
		ins = append(ins, asm.Mov.Imm(asm.R0, -1), asm.Return())
		p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "floor", Type: ebpf.SchedCLS, License: "GPL", Instructions: ins})
		if err != nil {
			b.Fatalf("load program: %v", err)
		}
		b.Cleanup(func() { p.Close() })
		return p
	}
	const noCommonLRU = 1 << 1 // BPF_F_NO_COMMON_LRU
	b.Run("key", func(b *testing.B) {
		benchRun(b, prog(b, nil, 0, false), tcUnspec, frame)
	})
	b.Run("lookup-miss/lru", func(b *testing.B) {
		benchRun(b, prog(b, table(b, ebpf.LRUHash, flowEntries, 0), asm.FnMapLookupElem, false), tcUnspec, frame)
	})
	for _, tc := range []struct {
		name    string
		typ     ebpf.MapType
		entries uint32
		flags   uint32
	}{
		{"lru", ebpf.LRUHash, flowEntries, 0},
		{"lru-per-cpu-list", ebpf.LRUHash, flowEntries, noCommonLRU},
		{"hash", ebpf.Hash, flowEntries, 0},
		{"lru-65536", ebpf.LRUHash, 65536, 0},
		{"lru-16384", ebpf.LRUHash, 16384, 0},
	} {
		for _, lookup := range []bool{false, true} {
			name := "insert/" + tc.name
			if lookup {
				name = "lookup-insert/" + tc.name
			}
			b.Run(name, func(b *testing.B) {
				benchRun(b, prog(b, table(b, tc.typ, tc.entries, tc.flags), asm.FnMapUpdateElem, lookup), tcUnspec, frame)
			})
		}
	}
}
