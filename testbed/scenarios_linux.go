package testbed

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// The mission scenarios. Each adds the pods it needs, checks, writes a
// readable account and deletes its pods. Those that need forwarding return
// ErrNotAvailable until isthmusd pins an eBPF forwarder.

const (
	probePort = 7000
	// tunnelPort is the MPLS-in-UDP port (RFC 7510).
	tunnelPort = 6635
	// throughputTime is how long a bulk TCP transfer measures a path.
	throughputTime = 3 * time.Second
)

// tunnelRun is what tunnelPair saw between two pods.
type tunnelRun struct {
	src, dst *Pod
	ping     PingStats
	// pkts are what the capture saw during the ping flow and a checked
	// 1 MiB TCP exchange.
	pkts []Packet
}

// tunnelPair adds a pod on from and one on to, both in tenant, and checks
// the path between them: 50 pings at 10 ms and a 1 MiB TCP exchange
// (identity and checksum) while capturing on capNode's capIface, then a
// bulk TCP transfer for throughputTime with no capture running, so the
// capture costs it nothing. It records the flow in r.
func (tb *Testbed) tunnelPair(ctx context.Context, r *Report, tenant, from, to, name, capNode, capIface string) (tunnelRun, error) {
	if err := tb.requireDaemons(ctx); err != nil {
		return tunnelRun{}, err
	}
	if err := tb.requireDataplane(from, to); err != nil {
		return tunnelRun{}, err
	}
	pods, cleanup, err := tb.addPods(ctx, from+"/"+tenant+"/"+name, to+"/"+tenant+"/"+name)
	if err != nil {
		return tunnelRun{}, err
	}
	defer cleanup()
	run := tunnelRun{src: pods[0], dst: pods[1]}
	if err := tb.waitPodRoutes(ctx, run.src, run.dst); err != nil {
		return run, err
	}
	srv, err := tb.ServeIdentity(run.dst, probePort)
	if err != nil {
		return run, err
	}
	defer srv.Close()
	capture, err := tb.startCapture(ctx, capNode, capIface)
	if err != nil {
		return run, err
	}
	defer capture.stop(context.WithoutCancel(ctx))
	dst, id := run.dst.Address.String(), run.dst.Host+"/"+tenant+"/"+name
	if err := tb.waitPodReach(ctx, run.src, dst); err != nil {
		return run, err
	}
	if run.ping, err = tb.PodPing(ctx, run.src, PingOptions{To: dst, Count: 50, Interval: 10 * time.Millisecond}); err != nil {
		return run, err
	}
	flow := Flow{From: PodEndpoint(run.src), To: PodEndpoint(run.dst), VRF: tenant, Encap: tenantEncap(tb.topo, tenant), Ping: &run.ping}
	if run.ping.Received != run.ping.Sent {
		r.AddFlow(flow)
		return run, fmt.Errorf("ping pod to pod: lost %v", run.ping.Lost)
	}
	res, err := tb.TCPExchange(ctx, run.src, dst, probePort, 1<<20)
	if err != nil {
		return run, fmt.Errorf("tcp pod to pod: %w", err)
	}
	if res.Identity != id {
		return run, fmt.Errorf("tcp pod to pod: answered by %q, want %q", res.Identity, id)
	}
	if run.pkts, err = capture.stop(ctx); err != nil {
		return run, err
	}
	bulk, err := tb.TCPThroughput(ctx, run.src, dst, probePort, throughputTime)
	if err != nil {
		return run, fmt.Errorf("tcp throughput pod to pod: %w", err)
	}
	if bulk.Identity != id {
		return run, fmt.Errorf("tcp throughput pod to pod: answered by %q, want %q", bulk.Identity, id)
	}
	flow.Throughput = &bulk
	flow.Note = fmt.Sprintf("%d MiB in %.1fs intact", bulk.Bytes>>20, bulk.Duration.Seconds())
	r.AddFlow(flow)
	return run, nil
}

// runPodToPod is scenario a.
func runPodToPod(ctx context.Context, tb *Testbed, r *Report) error {
	run, err := tb.tunnelPair(ctx, r, "red", "c1", "d1", "pa", "vpcgw", "core")
	if err != nil {
		return err
	}
	underlays := map[netip.Addr]bool{}
	for _, h := range tb.topo.NodesWithRole(RoleHost) {
		a, _ := tb.topo.UnderlayAddr(h) // validated topology
		underlays[a] = true
	}
	var bad []string
	for _, p := range run.pkts {
		if p.EtherType == 0x0806 {
			continue // ARP between the routers
		}
		if p.EtherType != 0x0800 || p.Proto != 17 || (p.DstPort != tunnelPort && p.SrcPort != tunnelPort) || !underlays[p.Src] || !underlays[p.Dst] {
			bad = append(bad, p.String())
		}
	}
	r.Observe("vpcgw's uplink saw %d frames (BGP aside): %d not MPLS-in-UDP between host underlays", len(run.pkts), len(bad))
	if len(bad) > 0 {
		return fmt.Errorf("the vpc gateway saw more than tunnel traffic: %v", bad[:min(len(bad), 5)])
	}
	if len(run.pkts) < 2*run.ping.Sent {
		return fmt.Errorf("the vpc gateway saw %d packets, fewer than the %d pings and replies", len(run.pkts), 2*run.ping.Sent)
	}
	return nil
}

// runMPLSoMPLS is scenario d: tenant green runs MPLS over MPLS between c1
// and c2, which share the VPC segment; the bridge in vpcgw carries MPLS
// frames, not IP.
func runMPLSoMPLS(ctx context.Context, tb *Testbed, r *Report) error {
	run, err := tb.tunnelPair(ctx, r, "green", "c1", "c2", "pd", "vpcgw", "c1")
	if err != nil {
		return err
	}
	mpls := 0
	var leaked []string
	for _, p := range run.pkts {
		switch {
		case p.EtherType == 0x8847:
			mpls++
		case p.EtherType == 0x0800 && (p.Src == run.src.Address || p.Dst == run.src.Address || p.Src == run.dst.Address || p.Dst == run.dst.Address):
			leaked = append(leaked, p.String())
		}
	}
	r.Observe("vpcgw's port to c1 saw %d MPLS frames, %d pod packets in plain IP", mpls, len(leaked))
	if len(leaked) > 0 {
		return fmt.Errorf("pod packets crossed the segment unencapsulated: %v", leaked[:min(len(leaked), 5)])
	}
	if mpls < 2*run.ping.Sent {
		return fmt.Errorf("saw %d MPLS frames, fewer than the %d pings and replies", mpls, 2*run.ping.Sent)
	}
	return nil
}

// runTenantIsolation is scenario b.
func runTenantIsolation(ctx context.Context, tb *Testbed, r *Report) error {
	if err := tb.requireDaemons(ctx); err != nil {
		return err
	}
	if err := tb.requireDataplane("c1", "d1", "d2"); err != nil {
		return err
	}
	pods, cleanup, err := tb.addPods(ctx, "c1/red/rb", "c1/blue/bb", "d1/red/rb", "d1/blue/bb", "d2/blue/only")
	if err != nil {
		return err
	}
	defer cleanup()
	redC1, blueC1, redD1, blueD1, blueD2 := pods[0], pods[1], pods[2], pods[3], pods[4]
	r.Printf("addresses: red c1 %s, blue c1 %s, red d1 %s, blue d1 %s, blue d2 %s",
		redC1.Address, blueC1.Address, redD1.Address, blueD1.Address, blueD2.Address)
	if err := tb.waitPodRoutes(ctx, pods...); err != nil {
		return err
	}
	for _, p := range pods[2:] {
		srv, err := tb.ServeIdentity(p, probePort)
		if err != nil {
			return err
		}
		defer srv.Close()
	}
	for _, c := range []struct {
		from *Pod
		to   *Pod
	}{{redC1, redD1}, {blueC1, blueD1}, {blueC1, blueD2}} {
		to := c.to.Address.String()
		if err := tb.waitPodReach(ctx, c.from, to); err != nil {
			return err
		}
		st, err := tb.PodPing(ctx, c.from, PingOptions{To: to, Count: 10, Interval: 10 * time.Millisecond})
		if err != nil {
			return err
		}
		res, err := tb.TCPExchange(ctx, c.from, to, probePort, 1<<16)
		if err != nil {
			return err
		}
		want := c.to.Host + "/" + c.to.Tenant + "/" + c.to.Name
		r.AddFlow(Flow{From: PodEndpoint(c.from), To: PodEndpoint(c.to), VRF: c.from.Tenant, Encap: tenantEncap(tb.topo, c.from.Tenant),
			Ping: &st, Note: "tcp answered by " + res.Identity})
		if res.Identity != want {
			return fmt.Errorf("c1/%s reached %s instead of %s", c.from.Tenant, res.Identity, want)
		}
		if st.Received != st.Sent {
			return fmt.Errorf("c1/%s → %s: lost %v", c.from.Tenant, to, st.Lost)
		}
	}
	// Red has no pod at blue d2's address: nothing may answer.
	st, err := tb.PodPing(ctx, redC1, PingOptions{To: blueD2.Address.String(), Count: 5, Interval: 100 * time.Millisecond, Timeout: time.Second})
	if err != nil {
		return err
	}
	note := "no reply, as it must"
	if st.Received != 0 {
		note = "answered: isolation broken"
	}
	r.AddFlow(Flow{From: PodEndpoint(redC1), To: Endpoint{Host: "blue-only", Addr: blueD2.Address}, VRF: redC1.Tenant,
		Encap: tenantEncap(tb.topo, redC1.Tenant), Ping: &st, WantNoReply: true, Note: note})
	if st.Received != 0 {
		return errors.New("red reached a blue-only pod")
	}
	r.Observe("red and blue share pod addresses; each TCP probe was answered by its own tenant's pod")
	return nil
}

// runDCGateway is scenario c.
func runDCGateway(ctx context.Context, tb *Testbed, r *Report) error {
	if err := tb.requireDaemons(ctx); err != nil {
		return err
	}
	frr, err := tb.gatewayFRR()
	if err != nil {
		return err
	}
	pods, cleanup, err := tb.addPods(ctx, "c1/red/pc", "d2/blue/pc")
	if err != nil {
		return err
	}
	defer cleanup()
	if err := tb.waitPodRoutes(ctx, pods...); err != nil {
		return err
	}
	for _, p := range pods {
		rd, _ := tb.TenantRD(p.Host, p.Tenant) // waitPodRoutes resolved it
		prefix := p.Address.String() + "/32"
		route, err := frr.WaitVPNRoute(ctx, rd, prefix)
		if err != nil {
			return err
		}
		d, err := frr.RouteDetail(ctx, rd, prefix)
		if err != nil {
			return err
		}
		rts := d.RTs
		want := tenantRT(tb.topo, p.Tenant)
		underlay, _ := tb.topo.UnderlayAddr(p.Host)
		r.Observe("%s holds %s rd %s rt %s next hop %s (%s/%s)", frr.Node, prefix, rd, strings.Join(rts, ","), route.Nexthop, p.Host, p.Tenant)
		if !slices.Contains(rts, want) || route.Nexthop != underlay.String() {
			return fmt.Errorf("%s: want rt %s and next hop %s", prefix, want, underlay)
		}
	}
	// The gateway's own prefixes land in the VRFs that import their RTs.
	gw, _ := tb.topo.Node(frr.Node)
	for _, nw := range gw.BGP.Networks {
		for _, tn := range tb.topo.Tenants {
			if !slices.Contains(nw.RTs, tn.RouteTarget) {
				continue
			}
			var reached []string
			for _, h := range tb.topo.NodesWithRole(RoleHost) {
				if _, ok := tn.Pools[h]; !ok {
					continue
				}
				n, err := tb.waitRemoteRoutes(ctx, h, tn.Name)
				if err != nil {
					return fmt.Errorf("%s (rt %v) never reached vrf %s on %s: %w", nw.Prefix, nw.RTs, tn.Name, h, err)
				}
				r.Printf("%s's %s (rt %s) reached vrf %s on %s (%s remote routes)", frr.Node, nw.Prefix, strings.Join(nw.RTs, ","), tn.Name, h, n)
				reached = append(reached, h)
			}
			r.Observe("%s's own %s (rt %s) reached vrf %s on %s", frr.Node, nw.Prefix, strings.Join(nw.RTs, ","), tn.Name, strings.Join(reached, " "))
		}
	}
	return nil
}

func tenantRT(t *Topology, tenant string) string {
	for _, tn := range t.Tenants {
		if tn.Name == tenant {
			return tn.RouteTarget
		}
	}
	return ""
}

// waitRemoteRoutes waits until vrf on host counts at least one remote route.
func (tb *Testbed) waitRemoteRoutes(ctx context.Context, host, vrf string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	path := "/network-instances/network-instance[name=" + vrf + "]/state/forwarding/remote-routes"
	var n string
	err := poll(ctx, func() (bool, error) {
		leaves, err := tb.GnmiFlat(ctx, host, path)
		if err != nil {
			return false, err
		}
		n = leaves["network-instances/network-instance[name="+vrf+"]/state/forwarding/remote-routes"]
		return n != "" && n != "0", nil
	})
	return n, err
}
