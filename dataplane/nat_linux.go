package dataplane

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
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

// natGlobal mirrors struct nat_global.
type natGlobal struct {
	Min, Max    uint16
	HostIfindex uint32
	HostMAC     [6]byte
	Floating    uint16
}

// floatingPod mirrors struct floating_pod.
type floatingPod struct {
	VRF uint32
	Pod uint32 // network byte order
	Ext uint32 // the external VRF of a VPNv4 floating IP, 0 for IPv4 unicast
}

// floatingExt mirrors struct floating_ext.
type floatingExt struct {
	Ext  uint32
	Addr uint32 // network byte order
}

// hostDevice is the device (one end of an idle veth pair) through which
// packets of host access enter the node's stack (bpf/nat.h).
const hostDevice = "isthmus-host"

// SetExternal makes exts the whole external configuration: every VRF not
// in it has neither SNAT nor host access. The translated flows of a VRF
// whose settings changed or went are deleted (their ports or address may
// be another's now). A VRF with SNAT needs an IPv4 address and a port
// range; ranges must not overlap (nos validates both).
func (d *Dataplane) SetExternal(exts []External) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	want := make(map[uint32]natVRF, len(exts))
	var g natGlobal
	hostAccess := false
	for _, e := range exts {
		v := natVRF{}
		if e.HostAccess {
			v.Flags |= natFlagHost
			hostAccess = true
		}
		if e.SNAT {
			if !e.Addr.Is4() || e.PortMin == 0 || e.PortMax < e.PortMin {
				return fmt.Errorf("set external connectivity of vrf %q: SNAT needs an IPv4 address and a port range, have %v %d..%d", e.VRF, e.Addr, e.PortMin, e.PortMax)
			}
			v.Flags |= natFlagSNAT
			v.Addr, v.PortMin, v.PortMax = be32(e.Addr.As4()), e.PortMin, e.PortMax
			if g.Min == 0 || e.PortMin < g.Min {
				g.Min = e.PortMin
			}
			g.Max = max(g.Max, e.PortMax)
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
	if hostAccess {
		lnk, err := d.hostDevice()
		if err != nil {
			return err
		}
		g.HostIfindex = uint32(lnk.Attrs().Index)
		copy(g.HostMAC[:], lnk.Attrs().HardwareAddr)
	}
	var cur natGlobal
	if err := d.maps.NatHost.Lookup(uint32(0), &cur); err != nil {
		return fmt.Errorf("read external port ranges: %w", err)
	}
	g.Floating = cur.Floating
	// The union of the ranges goes last, so replies find their VRF's
	// entry in place.
	if err := d.maps.NatHost.Put(uint32(0), g); err != nil {
		return fmt.Errorf("set external port ranges: %w", err)
	}
	if !hostAccess {
		if err := d.removeHostDevice(); err != nil {
			return err
		}
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

// hostRouteProtocol marks the host routes of host access in the main
// table ('I'), so that they are told apart from everybody else's.
const hostRouteProtocol = 0x49

// HostRoute is the host's route to a pod of a VRF with host access.
type HostRoute struct {
	Ifindex int              // host end of the pod's veth
	MAC     net.HardwareAddr // the pod's MAC
}

// SetHostRoutes makes routes the whole set of host-access routes in the
// host's main table: a /32 to each pod through its veth (scope link) and a
// permanent neighbor entry with the pod's MAC (the pod's ARP replies never
// reach the stack: the veth is a port of the down headroom bridge), so
// the node's own stack reaches the pod. Routes of ours not in the set are
// removed with their neighbor entries. A pod whose host link is not up
// yet gets its route from the first call after it is (the reconciler
// refreshes the set every state interval); the kernel refuses a route
// through a down link and removes those of a link that goes down.
func (d *Dataplane) SetHostRoutes(want map[netip.Addr]HostRoute) error {
	routes := make(map[netip.Addr]HostRoute, len(want))
	for a, r := range want {
		routes[a] = r
	}
	have, err := d.nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: hostRouteProtocol, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("list host routes: %w", err)
	}
	var errs []error
	for _, rt := range have {
		if rt.Dst == nil {
			continue
		}
		a, _ := netip.AddrFromSlice(rt.Dst.IP)
		a = a.Unmap()
		if w, ok := routes[a]; ok && w.Ifindex == rt.LinkIndex {
			if err := d.setPodNeighbor(a, w); err != nil {
				errs = append(errs, err)
			}
			delete(routes, a)
			continue
		}
		if err := d.nl.RouteDel(&rt); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("delete host route %v: %w", rt.Dst, err))
		}
		n := &netlink.Neigh{LinkIndex: rt.LinkIndex, Family: netlink.FAMILY_V4, IP: rt.Dst.IP}
		if err := d.nl.NeighDel(n); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Errorf("delete neighbor %v: %w", rt.Dst.IP, err))
		}
	}
	for a, w := range routes {
		if err := d.setPodNeighbor(a, w); err != nil {
			errs = append(errs, err)
			continue
		}
		rt := &netlink.Route{
			Dst:       &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)},
			LinkIndex: w.Ifindex,
			Scope:     netlink.SCOPE_LINK,
			Protocol:  hostRouteProtocol,
			Table:     unix.RT_TABLE_MAIN,
		}
		switch err := d.nl.RouteReplace(rt); {
		case errors.Is(err, unix.ENETDOWN):
			// The pod's host link is not up yet (a CNI ADD commits the
			// attachment before it brings the link up): the route comes
			// with the next refresh once the link is up.
		case err != nil:
			errs = append(errs, fmt.Errorf("add host route %v dev %d: %w", a, w.Ifindex, err))
		}
	}
	return errors.Join(errs...)
}

func (d *Dataplane) setPodNeighbor(a netip.Addr, w HostRoute) error {
	if len(w.MAC) != 6 {
		return nil // unknown MAC: the kernel resolves it as it can
	}
	n := &netlink.Neigh{LinkIndex: w.Ifindex, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
		IP: a.AsSlice(), HardwareAddr: w.MAC}
	if err := d.nl.NeighSet(n); err != nil {
		return fmt.Errorf("set neighbor %v dev %d: %w", a, w.Ifindex, err)
	}
	return nil
}

// hostDevice returns the host device, creating it (up, reverse-path
// filter off: the packets it passes come from pods, whose routes go
// through their veths) if needed. The sysctl is written in the calling
// thread's namespace, the dataplane's.
func (d *Dataplane) hostDevice() (netlink.Link, error) {
	lnk, err := d.nl.LinkByName(hostDevice)
	if err != nil {
		if !errors.As(err, new(netlink.LinkNotFoundError)) {
			return nil, fmt.Errorf("find %s: %w", hostDevice, err)
		}
		// A veth pair (this kernel need not have dummy devices); its peer
		// stays idle.
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: hostDevice}, PeerName: hostDevice + "-p"}
		if err := d.nl.LinkAdd(v); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("create %s: %w", hostDevice, err)
		}
		if lnk, err = d.nl.LinkByName(hostDevice); err != nil {
			return nil, fmt.Errorf("find %s: %w", hostDevice, err)
		}
	}
	for _, name := range []string{hostDevice + "-p", hostDevice} {
		if err := d.nl.LinkSetUp(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: name}}); err != nil {
			return nil, fmt.Errorf("set %s up: %w", name, err)
		}
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+hostDevice+"/rp_filter", []byte("0"), 0o644); err != nil {
		return nil, fmt.Errorf("turn off the reverse-path filter of %s: %w", hostDevice, err)
	}
	return lnk, nil
}

// removeHostDevice deletes the host device (and its peer) if it exists.
func (d *Dataplane) removeHostDevice() error {
	lnk, err := d.nl.LinkByName(hostDevice)
	if err != nil {
		return nil
	}
	if err := d.nl.LinkDel(lnk); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete %s: %w", hostDevice, err)
	}
	return nil
}

// reservedPortsFile is the kernel's list of ports its own sockets never
// pick as ephemeral ports.
const reservedPortsFile = "/proc/sys/net/ipv4/ip_local_reserved_ports"

// ReservePorts adds want to the kernel's reserved ports and removes had
// (the ranges this process reserved before) unless still wanted, keeping
// every other reservation: the host's own connections then never take a
// port that a VRF's SNAT uses. It runs in the calling thread's namespace.
func ReservePorts(had, want [][2]uint16) error {
	b, err := os.ReadFile(reservedPortsFile)
	if err != nil {
		return fmt.Errorf("read reserved ports: %w", err)
	}
	set := map[uint16]bool{}
	for _, f := range strings.FieldsFunc(strings.TrimSpace(string(b)), func(r rune) bool { return r == ',' }) {
		lo, hi, _ := strings.Cut(f, "-")
		if hi == "" {
			hi = lo
		}
		l, err1 := strconv.ParseUint(lo, 10, 16)
		h, err2 := strconv.ParseUint(hi, 10, 16)
		if err1 != nil || err2 != nil {
			return fmt.Errorf("parse reserved ports %q", f)
		}
		for p := l; p <= h; p++ {
			set[uint16(p)] = true
		}
	}
	for _, r := range had {
		for p := uint32(r[0]); p <= uint32(r[1]); p++ {
			delete(set, uint16(p))
		}
	}
	for _, r := range want {
		for p := uint32(r[0]); p <= uint32(r[1]); p++ {
			set[uint16(p)] = true
		}
	}
	var parts []string
	for p := uint32(1); p <= 65535; p++ {
		if !set[uint16(p)] {
			continue
		}
		q := p
		for q < 65535 && set[uint16(q+1)] {
			q++
		}
		if q == p {
			parts = append(parts, strconv.Itoa(int(p)))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", p, q))
		}
		p = q
	}
	out := strings.Join(parts, ",")
	if out == "" {
		out = "\n" // an empty write clears the list
	}
	if err := os.WriteFile(reservedPortsFile, []byte(out), 0o644); err != nil {
		return fmt.Errorf("write reserved ports %q: %w", out, err)
	}
	return nil
}

// SetFloating makes fs the whole set of floating IP bindings: 1:1
// translation between each floating address and its pod (bpf/nat.h).
func (d *Dataplane) SetFloating(fs []Floating) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	wantIn := map[uint32]floatingPod{}
	wantOut := map[forwarderHostKey]uint32{}
	wantVPN := map[forwarderHostKey]floatingExt{}
	for _, f := range fs {
		if !f.Addr.Is4() || !f.Pod.Is4() {
			return fmt.Errorf("set floating ip %v → %v: not IPv4 addresses", f.Addr, f.Pod)
		}
		id, err := d.vrfID(f.VRF, true)
		if err != nil {
			return fmt.Errorf("set floating ip %v: %w", f.Addr, err)
		}
		fp := floatingPod{VRF: id, Pod: be32(f.Pod.As4())}
		if f.Ext != "" {
			if fp.Ext, err = d.vrfID(f.Ext, true); err != nil {
				return fmt.Errorf("set floating ip %v: %w", f.Addr, err)
			}
			wantVPN[forwarderHostKey{Vrf: id, Addr: be32(f.Pod.As4())}] = floatingExt{Ext: fp.Ext, Addr: be32(f.Addr.As4())}
		}
		wantIn[be32(f.Addr.As4())] = fp
		if f.Ext == "" {
			// A VPNv4 floating IP is reached through the external VRF
			// only: the pod's other traffic is its VRF's (SNAT or drop),
			// not the underlay's from an address nothing routes back.
			wantOut[forwarderHostKey{Vrf: id, Addr: be32(f.Pod.As4())}] = be32(f.Addr.As4())
		}
	}
	var errs []error
	var k uint32
	var v floatingPod
	var stale []uint32
	it := d.maps.FloatingIn.Iterate()
	for it.Next(&k, &v) {
		if _, ok := wantIn[k]; !ok {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read floating ips: %w", err)
	}
	var hk forwarderHostKey
	var a uint32
	var staleOut []forwarderHostKey
	ot := d.maps.FloatingOut.Iterate()
	for ot.Next(&hk, &a) {
		if _, ok := wantOut[hk]; !ok {
			staleOut = append(staleOut, hk)
		}
	}
	if err := ot.Err(); err != nil {
		return fmt.Errorf("read floating ips: %w", err)
	}
	var fe floatingExt
	var staleVPN []forwarderHostKey
	vt := d.maps.FloatingVpn.Iterate()
	for vt.Next(&hk, &fe) {
		if _, ok := wantVPN[hk]; !ok {
			staleVPN = append(staleVPN, hk)
		}
	}
	if err := vt.Err(); err != nil {
		return fmt.Errorf("read floating ips: %w", err)
	}
	// New bindings first, in both directions, then the flag; stale ones
	// go last, so a moved binding is never absent.
	for k, v := range wantIn {
		if err := d.maps.FloatingIn.Put(k, v); err != nil {
			errs = append(errs, fmt.Errorf("set floating ip: %w", err))
		}
	}
	for k, v := range wantOut {
		if err := d.maps.FloatingOut.Put(k, v); err != nil {
			errs = append(errs, fmt.Errorf("set floating ip: %w", err))
		}
	}
	for k, v := range wantVPN {
		if err := d.maps.FloatingVpn.Put(k, v); err != nil {
			errs = append(errs, fmt.Errorf("set floating ip: %w", err))
		}
	}
	var g natGlobal
	if err := d.maps.NatHost.Lookup(uint32(0), &g); err != nil {
		return fmt.Errorf("read external settings: %w", err)
	}
	g.Floating = 0
	if len(fs) > 0 {
		g.Floating = 1
	}
	if err := d.maps.NatHost.Put(uint32(0), g); err != nil {
		errs = append(errs, fmt.Errorf("set floating flag: %w", err))
	}
	for _, k := range stale {
		if err := d.maps.FloatingIn.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("delete floating ip: %w", err))
		}
	}
	for _, k := range staleOut {
		if err := d.maps.FloatingOut.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("delete floating ip: %w", err))
		}
	}
	for _, k := range staleVPN {
		if err := d.maps.FloatingVpn.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("delete floating ip: %w", err))
		}
	}
	return errors.Join(errs...)
}
