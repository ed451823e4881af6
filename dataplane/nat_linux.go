package dataplane

import (
	"errors"
	"fmt"
	"slices"

	"github.com/cilium/ebpf"
)

// Flags of a VRF's entry in nat_vrfs and of NAT flow entries (bpf/nat.h).
const (
	natFlagSNAT      = 1
	natFlagHost      = 2
	flowFlagExternal = 0x8000
)

// natVRF mirrors struct nat_vrf.
type natVRF struct {
	Flags   uint32
	Addr    uint32 // network byte order
	PortMin uint16
	PortMax uint16
}

// natStats mirrors struct nat_stats.
type natStats struct {
	Translations, Flows, Exhausted, Dropped, Host uint64
}

// natPorts mirrors struct nat_ports.
type natPorts struct{ Min, Max uint16 }

// SetExternal makes exts the whole external configuration: every VRF not
// in it has neither SNAT nor host access. The translated flows of a VRF
// whose settings changed or went are deleted (their ports or address may
// be another's now). A VRF with SNAT needs an IPv4 address and a port
// range; ranges must not overlap (nos validates both).
func (d *Dataplane) SetExternal(exts []External) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	want := make(map[uint32]natVRF, len(exts))
	var ranges natPorts
	for _, e := range exts {
		v := natVRF{}
		if e.HostAccess {
			v.Flags |= natFlagHost
		}
		if e.SNAT {
			if !e.Addr.Is4() || e.PortMin == 0 || e.PortMax < e.PortMin {
				return fmt.Errorf("set external connectivity of vrf %q: SNAT needs an IPv4 address and a port range, have %v %d..%d", e.VRF, e.Addr, e.PortMin, e.PortMax)
			}
			v.Flags |= natFlagSNAT
			v.Addr, v.PortMin, v.PortMax = be32(e.Addr.As4()), e.PortMin, e.PortMax
			if ranges.Min == 0 || e.PortMin < ranges.Min {
				ranges.Min = e.PortMin
			}
			ranges.Max = max(ranges.Max, e.PortMax)
		}
		id, err := d.vrfID(e.VRF, true)
		if err != nil {
			return fmt.Errorf("set external connectivity: %w", err)
		}
		want[id] = v
	}
	have := make([]natVRF, maxVRFs)
	keys := make([]uint32, maxVRFs)
	var cursor ebpf.MapBatchCursor
	if _, err := d.maps.NatVrfs.BatchLookup(&cursor, keys, have, nil); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("read external connectivity: %w", err)
	}
	var changed []uint32
	for id := uint32(1); id < maxVRFs; id++ {
		if have[id] == want[id] {
			continue
		}
		if err := d.maps.NatVrfs.Put(id, want[id]); err != nil {
			return fmt.Errorf("set external connectivity of vrf id %d: %w", id, err)
		}
		if have[id].Flags&natFlagSNAT != 0 {
			changed = append(changed, id)
		}
	}
	// The union of the ranges goes last, so replies find their VRF's
	// entry in place.
	if err := d.maps.NatRange.Put(uint32(0), ranges); err != nil {
		return fmt.Errorf("set external port ranges: %w", err)
	}
	if len(changed) == 0 {
		return nil
	}
	_, err := d.deleteFlows(func(k forwarderFlowKey, f *forwarderFlow) bool {
		return f.Flags&flowFlagExternal != 0 && slices.Contains(changed, k.Vrf)
	})
	return err
}

// ExternalCounters returns a VRF's external traffic counters.
func (d *Dataplane) ExternalCounters(vrf string) (ExternalCounters, error) {
	d.mu.Lock()
	id, err := d.vrfID(vrf, false)
	d.mu.Unlock()
	if err != nil {
		return ExternalCounters{}, fmt.Errorf("read external counters: %w", err)
	}
	var per []natStats
	if err := d.maps.NatCounters.Lookup(id, &per); err != nil {
		return ExternalCounters{}, fmt.Errorf("read external counters of vrf %q: %w", vrf, err)
	}
	var c ExternalCounters
	for _, p := range per {
		c.Translations += p.Translations
		c.Flows += p.Flows
		c.PortExhausted += p.Exhausted
		c.Dropped += p.Dropped
		c.Host += p.Host
	}
	return c, nil
}

// ExternalFlows counts the translated flows in the flow table per VRF id
// of their pod.
func (d *Dataplane) ExternalFlows() (map[uint32]int, error) {
	entries, err := d.readFlows()
	if err != nil {
		return nil, err
	}
	out := map[uint32]int{}
	for k, f := range entries {
		if f.Flags&flowFlagExternal != 0 && f.Flags&flowReply == 0 {
			out[k.Vrf]++
		}
	}
	return out, nil
}
