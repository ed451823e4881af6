package dataplane

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/cilium/ebpf"
)

const (
	// directIfindex must match DIRECT_IFINDEX in bpf/types.h.
	directIfindex = 65536

	tunnelMPLSoMPLS = 1

	labelVRF   = 1
	labelIface = 2
)

// tunnelState is the tunnel as configured plus what was resolved from it.
type tunnelState struct {
	Tunnel
	ifindex int
}

// AttachInterface binds a pod interface to a VRF and attaches the pod-side
// program to it. Calling it again updates the binding; counters are kept.
func (d *Dataplane) AttachInterface(ifc Interface) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	lnk, err := d.nl.LinkByIndex(ifc.Index)
	if err != nil {
		return fmt.Errorf("attach interface %d: %w", ifc.Index, err)
	}
	name := lnk.Attrs().Name
	if len(ifc.PeerMAC) != 6 {
		return fmt.Errorf("attach interface %s: peer mac %q is not ethernet", name, ifc.PeerMAC)
	}
	vrf, err := d.vrfID(ifc.VRF, true)
	if err != nil {
		return fmt.Errorf("attach interface %s: %w", name, err)
	}
	slot, ok := d.ifSlots[ifc.Index]
	if !ok {
		if slot, err = d.ifTable.alloc(); err != nil {
			return fmt.Errorf("attach interface %s: %w", name, err)
		}
		n, err := possibleCPUs()
		if err != nil {
			return err
		}
		if err := d.maps.IfaceCounters.Put(slot, make([]forwarderIfaceStats, n)); err != nil {
			d.ifTable.free(slot)
			return fmt.Errorf("attach interface %s: reset counters: %w", name, err)
		}
		// Policy's refusals are the interface's drops too: a reused slot
		// starts without the previous pod's.
		if err := d.maps.PolIfaceDenied.Put(slot, make([][2]uint64, n)); err != nil {
			d.ifTable.free(slot)
			return fmt.Errorf("attach interface %s: reset policy counters: %w", name, err)
		}
		if err := d.resetNodePassed(slot, n); err != nil {
			d.ifTable.free(slot)
			return fmt.Errorf("attach interface %s: %w", name, err)
		}
		d.ifSlots[ifc.Index] = slot
	}
	v := forwarderIface{Vrf: vrf, Slot: slot, Ifindex: uint32(ifc.Index), Flags: deliveryFlags(lnk)}
	copy(v.Mac[:], lnk.Attrs().HardwareAddr)
	copy(v.PeerMac[:], ifc.PeerMAC)
	if err := d.maps.IfaceSlots.Put(slot, &v); err != nil {
		return fmt.Errorf("attach interface %s: %w", name, err)
	}
	if err := d.maps.Ifaces.Put(uint32(ifc.Index), &v); err != nil {
		return fmt.Errorf("attach interface %s: %w", name, err)
	}
	if ifc.Index < directIfindex {
		if err := d.maps.IfaceIndex.Put(uint32(ifc.Index), &v); err != nil {
			return fmt.Errorf("attach interface %s: %w", name, err)
		}
	}
	if err := d.attach(linkPod, ifc.Index, d.progs.PodIngress); err != nil {
		return fmt.Errorf("attach interface %s: %w", name, err)
	}
	if err := d.setPodXDP(ifc.Index, d.tunnel.MPLSoMPLS); err != nil {
		return fmt.Errorf("attach interface %s: %w", name, err)
	}
	if err := d.lendHeadroom(lnk); err != nil {
		return fmt.Errorf("attach interface %s: %w", name, err)
	}
	return nil
}

// DetachInterface unbinds a pod interface and detaches the program. Routes
// and labels that point at it stop delivering; the caller deletes them.
func (d *Dataplane) DetachInterface(ifindex int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	if err := d.detach(linkPod, ifindex); err != nil {
		errs = append(errs, err)
	}
	if err := d.returnHeadroom(ifindex); err != nil {
		errs = append(errs, err)
	}
	if err := d.detach(linkPodXDP, ifindex); err != nil {
		errs = append(errs, err)
	}
	if err := d.maps.Ifaces.Delete(uint32(ifindex)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		errs = append(errs, fmt.Errorf("detach interface %d: %w", ifindex, err))
	}
	if ifindex < directIfindex {
		if err := d.maps.IfaceIndex.Put(uint32(ifindex), &forwarderIface{}); err != nil {
			errs = append(errs, fmt.Errorf("detach interface %d: %w", ifindex, err))
		}
	}
	if slot, ok := d.ifSlots[ifindex]; ok {
		if err := d.maps.IfaceSlots.Put(slot, &forwarderIface{}); err != nil {
			errs = append(errs, fmt.Errorf("detach interface %d: %w", ifindex, err))
		} else {
			delete(d.ifSlots, ifindex)
			d.ifTable.free(slot)
		}
	}
	return errors.Join(errs...)
}

// ifaceSlot returns the slot of an attached interface.
func (d *Dataplane) ifaceSlot(ifindex int) (uint32, error) {
	s, ok := d.ifSlots[ifindex]
	if !ok {
		return 0, fmt.Errorf("interface %d: %w", ifindex, ErrNotAttached)
	}
	return s, nil
}

// Interfaces returns the attached pod interfaces (ifindex → VRF id).
func (d *Dataplane) Interfaces() (map[int]uint32, error) {
	out := map[int]uint32{}
	var k uint32
	var v forwarderIface
	it := d.maps.Ifaces.Iterate()
	for it.Next(&k, &v) {
		out[int(k)] = v.Vrf
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	return out, nil
}

// SetTunnel configures the local tunnel end and attaches the underlay
// programs (the XDP one only when t.MPLSoMPLS is set).
func (d *Dataplane) SetTunnel(t Tunnel) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	src, err := ipv4(t.Source)
	if err != nil {
		return fmt.Errorf("set tunnel source: %w", err)
	}
	lnk, err := d.nl.LinkByName(t.Underlay)
	if err != nil {
		return fmt.Errorf("set tunnel underlay %q: %w", t.Underlay, err)
	}
	if t.UDPPort == 0 {
		t.UDPPort = DefaultUDPPort
	}
	if t.MTU == 0 {
		t.MTU = lnk.Attrs().MTU
	}
	ifindex := lnk.Attrs().Index
	if t.TransportLabel >= 1<<20 {
		return fmt.Errorf("set tunnel transport label %d: more than 20 bits", t.TransportLabel)
	}
	v := forwarderTunnel{Source: be32(src), Ifindex: uint32(ifindex), Mtu: uint32(t.MTU), TransportLabel: t.TransportLabel}
	if t.MPLSoMPLS {
		v.Flags |= tunnelMPLSoMPLS
	}
	v.UdpPort = binary.NativeEndian.Uint16(binary.BigEndian.AppendUint16(nil, t.UDPPort))
	copy(v.Mac[:], lnk.Attrs().HardwareAddr)
	if old := d.tunnel.ifindex; old != 0 && old != ifindex {
		if err := errors.Join(d.detach(linkUnderlayTC, old), d.detach(linkUnderlayXDP, old)); err != nil {
			return fmt.Errorf("set tunnel: %w", err)
		}
	}
	if err := d.maps.TunnelConfig.Put(uint32(0), &v); err != nil {
		return fmt.Errorf("set tunnel: %w", err)
	}
	if err := d.attach(linkUnderlayTC, ifindex, d.progs.UnderlayIngress); err != nil {
		return fmt.Errorf("set tunnel: %w", err)
	}
	if t.MPLSoMPLS {
		err = d.attach(linkUnderlayXDP, ifindex, d.progs.UnderlayXdp)
	} else {
		err = d.detach(linkUnderlayXDP, ifindex)
	}
	if err != nil {
		return fmt.Errorf("set tunnel: %w", err)
	}
	d.tunnel = tunnelState{Tunnel: t, ifindex: ifindex}
	ifaces, err := d.Interfaces()
	if err != nil {
		return fmt.Errorf("set tunnel: %w", err)
	}
	for i := range ifaces {
		if err := d.setPodXDP(i, t.MPLSoMPLS); err != nil {
			return fmt.Errorf("set tunnel: %w", err)
		}
	}
	return nil
}

// ClearTunnel detaches the underlay programs and forgets the tunnel; pods
// keep local forwarding, remote destinations are dropped as no-neighbor.
func (d *Dataplane) ClearTunnel() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	if i := d.tunnel.ifindex; i != 0 {
		errs = append(errs, d.detach(linkUnderlayTC, i), d.detach(linkUnderlayXDP, i))
	}
	if err := d.maps.TunnelConfig.Put(uint32(0), &forwarderTunnel{}); err != nil {
		errs = append(errs, fmt.Errorf("clear tunnel: %w", err))
	}
	ifaces, err := d.Interfaces()
	errs = append(errs, err)
	for i := range ifaces {
		errs = append(errs, d.setPodXDP(i, false))
	}
	d.tunnel = tunnelState{}
	return errors.Join(errs...)
}

// setPodXDP attaches or detaches the pass-through XDP program on a pod
// interface (see pod_xdp in bpf/forwarder.c for why).
// Only veths need it: other pod interface types are left alone.
func (d *Dataplane) setPodXDP(ifindex int, on bool) error {
	if l, err := d.nl.LinkByIndex(ifindex); err != nil || l.Type() != "veth" {
		on = false
	}
	if on {
		return d.attach(linkPodXDP, ifindex, d.progs.PodXdp)
	}
	return d.detach(linkPodXDP, ifindex)
}

func (d *Dataplane) loadTunnel() error {
	var v forwarderTunnel
	if err := d.maps.TunnelConfig.Lookup(uint32(0), &v); err != nil {
		return fmt.Errorf("read tunnel: %w", err)
	}
	d.tunnel.ifindex = int(v.Ifindex)
	d.tunnel.MPLSoMPLS = v.Flags&tunnelMPLSoMPLS != 0
	return nil
}

// SetEndpoint adds or updates a remote tunnel endpoint. Packets from
// unknown endpoints are dropped.
func (d *Dataplane) SetEndpoint(ep Endpoint) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.endpoints[ep.Addr] = ep
	delete(d.withdrawn, ep.Addr)
	mac := ep.MAC
	if mac == nil {
		mac = d.resolved[ep.Addr]
	}
	return d.writeEndpoint(ep, mac)
}

// writeEndpoint programs an endpoint with the given next-hop MAC (nil:
// unresolved, traffic to it is dropped as no-neighbor).
func (d *Dataplane) writeEndpoint(ep Endpoint, mac net.HardwareAddr) error {
	if ep.TransportLabel >= 1<<20 {
		return fmt.Errorf("set endpoint %v: transport label %d has more than 20 bits", ep.Addr, ep.TransportLabel)
	}
	slot, err := d.endpointSlot(ep.Addr)
	if err != nil {
		return fmt.Errorf("set endpoint: %w", err)
	}
	a := ep.Addr.As4()
	v := forwarderEndpoint{Addr: be32(a), TransportLabel: ep.TransportLabel}
	copy(v.Mac[:], mac)
	var old forwarderEndpoint
	if err := d.maps.Endpoints.Lookup(slot, &old); err == nil && old.Mac != v.Mac && old.Mac != ([6]byte{}) {
		if err := d.unindexMAC(old.Mac); err != nil {
			return fmt.Errorf("set endpoint %v: %w", ep.Addr, err)
		}
	}
	if err := d.maps.Endpoints.Put(slot, &v); err != nil {
		return fmt.Errorf("set endpoint %v: %w", ep.Addr, err)
	}
	if len(mac) == 6 {
		if err := d.indexMAC(v.Mac, slot); err != nil {
			return fmt.Errorf("set endpoint %v mac: %w", ep.Addr, err)
		}
	}
	return nil
}

// DeleteEndpoint removes a remote tunnel endpoint. While routes still use
// it, it keeps its slot but is no longer reachable (no MAC) nor accepted.
func (d *Dataplane) DeleteEndpoint(addr netip.Addr) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := ipv4(addr); err != nil {
		return fmt.Errorf("delete endpoint: %w", err)
	}
	delete(d.endpoints, addr)
	d.forget(addr)
	slot, ok := d.epSlots[addr]
	if !ok {
		return nil
	}
	if d.epRefs[slot] == 0 {
		return d.releaseEndpoint(addr)
	}
	d.withdrawn[addr] = true
	var old forwarderEndpoint
	if err := d.maps.Endpoints.Lookup(slot, &old); err == nil && old.Mac != ([6]byte{}) {
		if err := d.unindexMAC(old.Mac); err != nil {
			return fmt.Errorf("delete endpoint %v: %w", addr, err)
		}
	}
	a := addr.As4()
	if err := d.maps.Endpoints.Put(slot, &forwarderEndpoint{Addr: be32(a)}); err != nil {
		return fmt.Errorf("delete endpoint %v: %w", addr, err)
	}
	if err := d.unindexEndpoint(a); err != nil {
		return fmt.Errorf("delete endpoint %v: %w", addr, err)
	}
	return nil
}

// SetLabel makes a local VPN label decapsulate to target.
func (d *Dataplane) SetLabel(label uint32, target LabelTarget) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if label < 16 || label >= 1<<20 {
		return fmt.Errorf("set label %d: not a 20-bit unreserved label", label)
	}
	vrf, err := d.vrfID(target.VRF, true)
	if err != nil {
		return fmt.Errorf("set label %d: %w", label, err)
	}
	flags, err := d.labelFlags(vrf)
	if err != nil {
		return fmt.Errorf("set label %d: %w", label, err)
	}
	v := forwarderLabelTarget{Kind: labelVRF, Flags: flags, Vrf: vrf}
	if target.Interface != 0 {
		slot, err := d.ifaceSlot(target.Interface)
		if err != nil {
			return fmt.Errorf("set label %d: %w", label, err)
		}
		v.Kind, v.Slot = labelIface, slot
	}
	if err := d.maps.Labels.Put(label, &v); err != nil {
		return fmt.Errorf("set label %d: %w", label, err)
	}
	return nil
}

// DeleteLabel removes a local VPN label; missing labels are ignored.
func (d *Dataplane) DeleteLabel(label uint32) error {
	if label >= 1<<20 {
		return nil
	}
	if err := d.maps.Labels.Put(label, &forwarderLabelTarget{}); err != nil {
		return fmt.Errorf("delete label %d: %w", label, err)
	}
	return nil
}

// possibleCPUs is the number of per-CPU values in a per-CPU map.
func possibleCPUs() (int, error) {
	n, err := ebpf.PossibleCPU()
	if err != nil {
		return 0, fmt.Errorf("count possible cpus: %w", err)
	}
	return n, nil
}

// LinkIndex returns the ifindex of an interface of the dataplane's network
// namespace.
func (d *Dataplane) LinkIndex(name string) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	l, err := d.nl.LinkByName(name)
	if err != nil {
		return 0, fmt.Errorf("find interface %q: %w", name, err)
	}
	return l.Attrs().Index, nil
}
