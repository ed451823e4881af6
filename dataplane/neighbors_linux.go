package dataplane

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
)

// ResolveNeighbors keeps the next-hop MAC of every endpoint configured
// without one in step with the kernel's neighbor table, until ctx is done.
// It uses netlink on the calling goroutine's thread, so it must run in the
// underlay's network namespace (isthmusd's own).
func (d *Dataplane) ResolveNeighbors(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := d.ResolveOnce(); err != nil {
			d.log.Warn("resolve endpoint neighbors", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// ResolveOnce looks up the next-hop MAC of every endpoint that has no
// configured one (including endpoints that routes name but SetEndpoint
// never configured), programs the ones that changed and asks the kernel to
// resolve the missing ones. It returns the number still unresolved in the
// error, if any.
func (d *Dataplane) ResolveOnce() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.resolved == nil {
		d.resolved = map[netip.Addr]net.HardwareAddr{}
	}
	missing := 0
	// Every endpoint with a slot: configured ones, and those that routes
	// name without SetEndpoint (no transport label, MAC from the kernel).
	for addr := range d.epSlots {
		ep, ok := d.endpoints[addr]
		if !ok {
			if d.withdrawn[addr] {
				continue
			}
			ep = Endpoint{Addr: addr}
		}
		if ep.MAC != nil {
			continue
		}
		mac, err := d.neighborMAC(addr)
		if err != nil || mac == nil {
			missing++
			d.solicit(addr)
			continue
		}
		if bytes.Equal(d.resolved[addr], mac) {
			continue
		}
		if err := d.writeEndpoint(ep, mac); err != nil {
			return err
		}
		d.resolved[addr] = mac
		d.log.Info("resolved endpoint", "endpoint", addr, "mac", mac)
	}
	if missing > 0 {
		return fmt.Errorf("%d endpoints without a neighbor yet", missing)
	}
	return nil
}

// neighborMAC returns the MAC of the next hop toward addr, or nil.
func (d *Dataplane) neighborMAC(addr netip.Addr) (net.HardwareAddr, error) {
	routes, err := d.nl.RouteGet(addr.AsSlice())
	if err != nil || len(routes) == 0 {
		return nil, fmt.Errorf("route to %v: %w", addr, err)
	}
	via := net.IP(addr.AsSlice())
	if routes[0].Gw != nil {
		via = routes[0].Gw
	}
	neighs, err := d.nl.NeighList(routes[0].LinkIndex, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("neighbors of %v: %w", addr, err)
	}
	const usable = netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY |
		netlink.NUD_PROBE | netlink.NUD_PERMANENT | netlink.NUD_NOARP
	for _, n := range neighs {
		if n.IP.Equal(via) && n.State&usable != 0 && len(n.HardwareAddr) == 6 {
			return n.HardwareAddr, nil
		}
	}
	return nil, nil
}

// solicit makes the kernel resolve the next hop toward addr by sending one
// datagram to its discard port, from a socket in the dataplane's namespace.
func (d *Dataplane) solicit(addr netip.Addr) {
	if d.udp == nil {
		return
	}
	d.udp.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	d.udp.WriteToUDPAddrPort([]byte{0}, netip.AddrPortFrom(addr, 9))
}

// forget drops the resolved MAC of an endpoint.
func (d *Dataplane) forget(addr netip.Addr) { delete(d.resolved, addr) }
