package dataplane

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Bits of a flow entry's flags (FLOW_F_* in bpf/flow.h).
const (
	flowSeen  = 1
	flowSyn   = 2
	flowFin   = 4
	flowRst   = 8
	flowReply = 0x100
	// flowBoth (FLOW_F_BOTH, bpf/policy.h): policy's one entry for both
	// ways of a flow, its key the canonical direction; flowSwapped: the
	// flow's first packet went against the key; the reply way's bits are
	// shifted by polReplyShift.
	flowBoth      = 0x200
	flowSwapped   = 0x400
	polReplyShift = 4
	natDst        = 1
	natRelay      = 3 // NAT_RELAY: carried on to the backend's host
)

// FlowTimeouts are how long a flow may stay idle (no packet either way)
// before the garbage collector removes it, by protocol and, for TCP, by
// state.
type FlowTimeouts struct {
	// TCPOpening: a SYN was seen, no reply yet.
	TCPOpening time.Duration
	// TCPEstablished: packets went both ways.
	TCPEstablished time.Duration
	// TCPClosing: a FIN was seen.
	TCPClosing time.Duration
	// TCPReset: a RST was seen.
	TCPReset time.Duration
	UDP      time.Duration
	ICMP     time.Duration
}

// DefaultFlowTimeouts are the timeouts a zero FlowTimeouts field means.
var DefaultFlowTimeouts = FlowTimeouts{
	TCPOpening:     60 * time.Second,
	TCPEstablished: 6 * time.Hour,
	TCPClosing:     30 * time.Second,
	TCPReset:       10 * time.Second,
	UDP:            60 * time.Second,
	ICMP:           30 * time.Second,
}

func (t FlowTimeouts) withDefaults() FlowTimeouts {
	d := DefaultFlowTimeouts
	for _, f := range []struct{ v, def *time.Duration }{
		{&t.TCPOpening, &d.TCPOpening}, {&t.TCPEstablished, &d.TCPEstablished},
		{&t.TCPClosing, &d.TCPClosing}, {&t.TCPReset, &d.TCPReset},
		{&t.UDP, &d.UDP}, {&t.ICMP, &d.ICMP},
	} {
		if *f.v == 0 {
			*f.v = *f.def
		}
	}
	return t
}

// FlowState is the protocol state of a flow.
type FlowState string

// Flow states, as in the YANG model.
const (
	FlowSyn         FlowState = "SYN"
	FlowEstablished FlowState = "ESTABLISHED"
	FlowClosing     FlowState = "CLOSING"
	FlowReset       FlowState = "RESET"
	FlowActive      FlowState = "ACTIVE"
)

// flowState combines the flags of both directions of a flow.
func flowState(proto uint8, fwd, rev uint32) FlowState {
	if proto != uint8(TCP) {
		return FlowActive
	}
	both := fwd | rev
	switch {
	case both&flowRst != 0:
		return FlowReset
	case both&flowFin != 0:
		return FlowClosing
	case fwd&flowSeen != 0 && rev&flowSeen != 0:
		return FlowEstablished
	}
	return FlowSyn
}

func (t FlowTimeouts) of(proto uint8, s FlowState) time.Duration {
	switch {
	case proto == uint8(UDP):
		return t.UDP
	case proto != uint8(TCP):
		return t.ICMP
	case s == FlowReset:
		return t.TCPReset
	case s == FlowClosing:
		return t.TCPClosing
	case s == FlowEstablished:
		return t.TCPEstablished
	}
	return t.TCPOpening
}

// monotonicNow is the clock of bpf_ktime_get_ns.
func monotonicNow() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(fmt.Sprintf("read monotonic clock: %v", err)) // cannot fail on Linux
	}
	return uint64(ts.Nano())
}

// orphanGrace is how old an entry without its other direction must be to
// count as evicted: a first packet writes the two entries one after the
// other, and the collector must not mistake a flow being created for one
// the table evicted.
const orphanGrace = uint64(time.Second)

// FlowGC is what one garbage collection did.
type FlowGC struct {
	// Entries in the table when the collection started.
	Entries int
	// Expired flows (both entries) removed after their idle timeout.
	Expired int
	// Evicted flows: entries whose other direction the LRU evicted, removed.
	Evicted int
}

// CollectFlows removes flows idle for longer than their timeout, and
// entries whose other direction the table evicted; both are counted in the
// flow counters.
func (d *Dataplane) CollectFlows(t FlowTimeouts) (FlowGC, error) {
	return d.collectFlowsAt(t, monotonicNow())
}

// collectFlowsAt is CollectFlows with the clock's reading given.
func (d *Dataplane) collectFlowsAt(t FlowTimeouts, now uint64) (FlowGC, error) {
	t = t.withDefaults()
	entries, err := d.readFlows()
	if err != nil {
		return FlowGC{}, err
	}
	gc := FlowGC{Entries: len(entries)}
	var del []forwarderFlowKey
	for k, f := range entries {
		if f.Flags&flowBoth != 0 {
			// One entry for both ways (policy): no other half.
			fwd, rev := f.Flags&0xf, f.Flags>>polReplyShift&0xf
			if now > f.Seen && time.Duration(now-f.Seen) > t.of(k.Proto, flowState(k.Proto, fwd, rev)) {
				del = append(del, k)
				gc.Expired++
			}
			continue
		}
		rev, ok := entries[f.Reverse]
		if ok && rev.Flags&flowBoth != 0 {
			ok = false // the flow has its one entry now (an upgrade): this half is left over
		}
		if !ok {
			if now > f.Created+orphanGrace {
				del = append(del, k)
				gc.Evicted++
			}
			continue
		}
		if f.Flags&flowReply != 0 {
			continue // judged with its forward entry
		}
		seen := max(f.Seen, rev.Seen)
		if now > seen && time.Duration(now-seen) > t.of(k.Proto, flowState(k.Proto, f.Flags, rev.Flags)) {
			del = append(del, k, f.Reverse)
			gc.Expired++
		}
	}
	for _, k := range del {
		if err := d.maps.Flows.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return gc, fmt.Errorf("delete flow: %w", err)
		}
	}
	if gc.Expired+gc.Evicted > 0 {
		if err := d.addFlowCounters(uint64(gc.Expired), uint64(gc.Evicted)); err != nil {
			return gc, err
		}
	}
	return gc, nil
}

func (d *Dataplane) readFlows() (map[forwarderFlowKey]forwarderFlow, error) {
	// Batches of 4,096: a full table is read in a few dozen system calls
	// instead of two per entry.
	const batch = 4096
	out := map[forwarderFlowKey]forwarderFlow{}
	keys := make([]forwarderFlowKey, batch)
	vals := make([]forwarderFlow, batch)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := d.maps.Flows.BatchLookup(&cursor, keys, vals, nil)
		for i := range n {
			out[keys[i]] = vals[i]
		}
		switch {
		case errors.Is(err, ebpf.ErrKeyNotExist):
			return out, nil // the end of the table
		case errors.Is(err, ebpf.ErrNotSupported):
			return d.iterateFlows()
		case err != nil:
			return nil, fmt.Errorf("read flows: %w", err)
		}
	}
}

// iterateFlows reads the flow table entry by entry, for kernels without
// batch lookups.
func (d *Dataplane) iterateFlows() (map[forwarderFlowKey]forwarderFlow, error) {
	out := map[forwarderFlowKey]forwarderFlow{}
	var k forwarderFlowKey
	var f forwarderFlow
	it := d.maps.Flows.Iterate()
	for it.Next(&k, &f) {
		out[k] = f
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read flows: %w", err)
	}
	return out, nil
}

// deleteFlows deletes both entries of every flow whose entry match accepts
// and returns how many entries went.
func (d *Dataplane) deleteFlows(match func(forwarderFlowKey, *forwarderFlow) bool) (int, error) {
	entries, err := d.readFlows()
	if err != nil {
		return 0, err
	}
	gone := map[forwarderFlowKey]bool{}
	for k, f := range entries {
		if match(k, &f) {
			gone[k], gone[f.Reverse] = true, true
		}
	}
	for k := range gone {
		if err := d.maps.Flows.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return 0, fmt.Errorf("delete flow: %w", err)
		}
	}
	return len(gone), nil
}

// addFlowCounters adds the collector's figures to CPU 0's copy of the flow
// counters, which live in the pinned map so that they survive a restart.
func (d *Dataplane) addFlowCounters(expired, evicted uint64) error {
	var per []forwarderFlowStats
	if err := d.maps.FlowCounters.Lookup(uint32(0), &per); err != nil {
		return fmt.Errorf("read flow counters: %w", err)
	}
	if len(per) == 0 {
		return nil
	}
	per[0].Expired += expired
	per[0].Evicted += evicted
	if err := d.maps.FlowCounters.Put(uint32(0), per); err != nil {
		return fmt.Errorf("write flow counters: %w", err)
	}
	return nil
}

// FlowCounters are the flow table's counters, summed over CPUs.
type FlowCounters struct {
	// Capacity is the number of entries (two per flow) the table holds.
	Capacity                             int
	Created, Expired, Evicted, TableFull uint64
}

// FlowCounters returns the flow table's counters.
func (d *Dataplane) FlowCounters() (FlowCounters, error) {
	var per []forwarderFlowStats
	if err := d.maps.FlowCounters.Lookup(uint32(0), &per); err != nil {
		return FlowCounters{}, fmt.Errorf("read flow counters: %w", err)
	}
	c := FlowCounters{Capacity: int(d.maps.Flows.MaxEntries())}
	for _, s := range per {
		c.Created += s.Created
		c.Expired += s.Expired
		c.Evicted += s.Evicted
		c.TableFull += s.TableFull
	}
	return c, nil
}

// ServiceFlow is one flow of a service, as seen from the client.
type ServiceFlow struct {
	Client  netip.AddrPort
	Backend netip.AddrPort
	State   FlowState
	Idle    time.Duration
	// Age is the time since the flow's first packet.
	Age time.Duration
}

// ServiceFlows returns up to limit flows of a service (0: all), oldest
// first.
func (d *Dataplane) ServiceFlows(k ServiceKey, limit int) ([]ServiceFlow, error) {
	all, err := d.AllServiceFlows(limit)
	if err != nil {
		return nil, err
	}
	flows, ok := all[k]
	if !ok {
		d.mu.Lock()
		_, known := d.svc.services[k]
		d.mu.Unlock()
		if !known {
			return nil, fmt.Errorf("%v: %w", k, ErrUnknownService)
		}
	}
	return flows, nil
}

// AllServiceFlows returns up to limit flows (0: all) of every service that
// has flows, oldest first, from one read of the flow table.
func (d *Dataplane) AllServiceFlows(limit int) (map[ServiceKey][]ServiceFlow, error) {
	d.mu.Lock()
	st, err := d.services()
	keys := map[uint32]ServiceKey{}
	if err == nil {
		for k, e := range st.services {
			keys[e.id] = k
		}
	}
	d.mu.Unlock()
	if err != nil {
		return nil, err
	}
	entries, err := d.readFlows()
	if err != nil {
		return nil, err
	}
	type listed struct {
		ServiceFlow
		created uint64
	}
	now := monotonicNow()
	per := map[ServiceKey][]listed{}
	for key, f := range entries {
		sk, ok := keys[f.Service]
		if !ok || f.Flags&flowReply != 0 || (f.Nat != natDst && f.Nat != natRelay) {
			continue
		}
		rev := entries[f.Reverse]
		seen := max(f.Seen, rev.Seen)
		sf := ServiceFlow{
			Client:  netip.AddrPortFrom(addrOf(key.Saddr), port16(key.Sport)),
			Backend: netip.AddrPortFrom(addrOf(f.NatAddr), port16(f.NatPort)),
			State:   flowState(key.Proto, f.Flags, rev.Flags),
		}
		if now > seen {
			sf.Idle = time.Duration(now - seen)
		}
		if now > f.Created {
			sf.Age = time.Duration(now - f.Created)
		}
		per[sk] = append(per[sk], listed{sf, f.Created})
	}
	out := make(map[ServiceKey][]ServiceFlow, len(per))
	for sk, l := range per {
		slices.SortFunc(l, func(a, b listed) int {
			if a.created != b.created {
				if a.created < b.created {
					return -1
				}
				return 1
			}
			return a.Client.Compare(b.Client)
		})
		if limit > 0 && len(l) > limit {
			l = l[:limit]
		}
		flows := make([]ServiceFlow, len(l))
		for i := range l {
			flows[i] = l[i].ServiceFlow
		}
		out[sk] = flows
	}
	return out, nil
}
