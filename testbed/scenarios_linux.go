package testbed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
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
)

// runPodToPod is scenario a.
func runPodToPod(ctx context.Context, tb *Testbed, w io.Writer) error {
	if err := tb.requireDaemons(ctx); err != nil {
		return err
	}
	if err := tb.requireDataplane("c1", "d1"); err != nil {
		return err
	}
	pods, cleanup, err := tb.addPods(ctx, "c1/red/pa", "d1/red/pa")
	if err != nil {
		return err
	}
	defer cleanup()
	src, dst := pods[0], pods[1]
	if err := tb.waitPodRoutes(ctx, src, dst); err != nil {
		return err
	}
	srv, err := tb.ServeIdentity(dst, probePort)
	if err != nil {
		return err
	}
	defer srv.Close()
	capture, err := tb.startCapture(ctx, "vpcgw", "core")
	if err != nil {
		return err
	}
	defer capture.stop(context.WithoutCancel(ctx))
	if err := tb.waitPodReach(ctx, src, dst.Address.String()); err != nil {
		return err
	}
	st, err := tb.PodPing(ctx, src, PingOptions{To: dst.Address.String(), Count: 50, Interval: 10 * time.Millisecond})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "  ping c1/red %s → d1/red %s: %d/%d replies\n", src.Address, dst.Address, st.Received, st.Sent)
	if st.Received != st.Sent {
		return fmt.Errorf("ping pod to pod: lost %v", st.Lost)
	}
	res, err := tb.TCPExchange(ctx, src, dst.Address.String(), probePort, 8<<20)
	if err != nil {
		return fmt.Errorf("tcp pod to pod: %w", err)
	}
	if res.Identity != "d1/red/pa" {
		return fmt.Errorf("tcp pod to pod: answered by %q", res.Identity)
	}
	fmt.Fprintf(w, "  tcp  c1/red → %s: 8 MiB intact at %.0f Mbit/s\n", res.Identity, res.Mbps())
	pkts, err := capture.stop(ctx)
	if err != nil {
		return err
	}
	underlays := map[netip.Addr]bool{}
	for _, h := range tb.topo.NodesWithRole(RoleHost) {
		a, _ := tb.topo.UnderlayAddr(h) // validated topology
		underlays[a] = true
	}
	var bad []string
	for _, p := range pkts {
		if p.EtherType == 0x0806 {
			continue // ARP between the routers
		}
		if p.EtherType != 0x0800 || p.Proto != 17 || (p.DstPort != tunnelPort && p.SrcPort != tunnelPort) || !underlays[p.Src] || !underlays[p.Dst] {
			bad = append(bad, p.String())
		}
	}
	fmt.Fprintf(w, "  vpcgw uplink saw %d frames (BGP aside): %d not MPLS-in-UDP between host underlays\n", len(pkts), len(bad))
	if len(bad) > 0 {
		return fmt.Errorf("the vpc gateway saw more than tunnel traffic: %v", bad[:min(len(bad), 5)])
	}
	if len(pkts) < 2*st.Sent {
		return fmt.Errorf("the vpc gateway saw %d packets, fewer than the %d pings and replies", len(pkts), 2*st.Sent)
	}
	return nil
}

// runTenantIsolation is scenario b.
func runTenantIsolation(ctx context.Context, tb *Testbed, w io.Writer) error {
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
	fmt.Fprintf(w, "  addresses: red c1 %s, blue c1 %s, red d1 %s, blue d1 %s, blue d2 %s\n",
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
		if err := tb.waitPodReach(ctx, c.from, c.to.Address.String()); err != nil {
			return err
		}
		res, err := tb.TCPExchange(ctx, c.from, c.to.Address.String(), probePort, 1<<16)
		if err != nil {
			return err
		}
		want := c.to.Host + "/" + c.to.Tenant + "/" + c.to.Name
		fmt.Fprintf(w, "  c1/%s → %s: answered by %s\n", c.from.Tenant, c.to.Address, res.Identity)
		if res.Identity != want {
			return fmt.Errorf("c1/%s reached %s instead of %s", c.from.Tenant, res.Identity, want)
		}
	}
	// Red has no pod at blue d2's address: nothing may answer.
	st, err := tb.PodPing(ctx, redC1, PingOptions{To: blueD2.Address.String(), Count: 5, Interval: 100 * time.Millisecond, Timeout: time.Second})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "  c1/red → %s (only blue has it): %d/%d replies\n", blueD2.Address, st.Received, st.Sent)
	if st.Received != 0 {
		return errors.New("red reached a blue-only pod")
	}
	return nil
}

// runDCGateway is scenario c.
func runDCGateway(ctx context.Context, tb *Testbed, w io.Writer) error {
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
		r, err := frr.WaitVPNRoute(ctx, rd, prefix)
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
		fmt.Fprintf(w, "  %s holds %s rd %s rt %v next hop %s (%s/%s)\n", frr.Node, prefix, rd, rts, r.Nexthop, p.Host, p.Tenant)
		if !slices.Contains(rts, want) || r.Nexthop != underlay.String() {
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
			for _, h := range tb.topo.NodesWithRole(RoleHost) {
				if _, ok := tn.Pools[h]; !ok {
					continue
				}
				n, err := tb.waitRemoteRoutes(ctx, h, tn.Name)
				if err != nil {
					return fmt.Errorf("%s (rt %v) never reached vrf %s on %s: %w", nw.Prefix, nw.RTs, tn.Name, h, err)
				}
				fmt.Fprintf(w, "  %s's %s (rt %v) reached vrf %s on %s (%s remote routes)\n", frr.Node, nw.Prefix, nw.RTs, tn.Name, h, n)
			}
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
	path := "/network-instances/network-instance[name=" + vrf + "]/state/routes/remote"
	var n string
	err := poll(ctx, func() (bool, error) {
		leaves, err := tb.GnmiFlat(ctx, host, path)
		if err != nil {
			return false, err
		}
		n = leaves["network-instances/network-instance[name="+vrf+"]/state/routes/remote"]
		return n != "" && n != "0", nil
	})
	return n, err
}

// capture is a tcpdump running in a node, writing a pcap in the run dir.
type capture struct {
	tb   *Testbed
	p    *Process
	file string
	done bool
}

// startCapture captures on iface in node, BGP excepted, until stop.
func (tb *Testbed) startCapture(ctx context.Context, node, iface string) (*capture, error) {
	file := filepath.Join(tb.dir, "logs", fmt.Sprintf("%s-%s-%d.pcap", node, iface, time.Now().UnixNano()))
	p, err := tb.Start(ctx, node, "tcpdump", "tcpdump", "-Z", "root", "--immediate-mode", "-i", iface, "-n", "-U", "-s", "128", "-w", file, "not", "tcp", "port", "179")
	if err != nil {
		return nil, err
	}
	c := &capture{tb: tb, p: p, file: file}
	err = poll(ctx, func() (bool, error) {
		fi, err := os.Stat(file)
		select {
		case <-p.Done():
			return false, fmt.Errorf("tcpdump exited: %s", p.Tail(5))
		default:
		}
		return err == nil && fi.Size() >= 24, nil
	})
	if err != nil {
		_ = p.Stop(ctx) // the wait error says more
		return nil, fmt.Errorf("start capture on %s %s: %w", node, iface, err)
	}
	time.Sleep(200 * time.Millisecond) // tcpdump writes its header before the socket sees packets
	return c, nil
}

// stop ends the capture and returns its IPv4 packets; stopping twice
// returns nothing the second time.
func (c *capture) stop(ctx context.Context) ([]Packet, error) {
	if c.done {
		return nil, nil
	}
	c.done = true
	// Let tcpdump drain what the kernel already handed it: wait until the
	// file stops growing.
	last := int64(-1)
	for range 50 {
		fi, err := os.Stat(c.file)
		if err != nil || fi.Size() == last {
			break
		}
		last = fi.Size()
		time.Sleep(200 * time.Millisecond)
	}
	if err := c.p.Stop(ctx); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(c.file)
	if err != nil {
		return nil, fmt.Errorf("read capture: %w", err)
	}
	pkts, _, err := ParsePcap(data)
	return pkts, err
}

// runRestart is scenario e.
func runRestart(ctx context.Context, tb *Testbed, w io.Writer) error {
	if err := tb.requireDaemons(ctx); err != nil {
		return err
	}
	if err := tb.requireDataplane("c1", "d1"); err != nil {
		return err
	}
	pods, cleanup, err := tb.addPods(ctx, "c1/red/pe", "d1/red/pe")
	if err != nil {
		return err
	}
	defer cleanup()
	src, dst := pods[0], pods[1]
	if err := tb.waitPodRoutes(ctx, src, dst); err != nil {
		return err
	}
	if err := tb.waitPodReach(ctx, src, dst.Address.String()); err != nil {
		return err
	}
	before, err := tb.restartWitness(ctx, src)
	if err != nil {
		return err
	}
	type flow struct {
		st  PingStats
		err error
	}
	flowDone := make(chan flow, 1)
	go func() {
		st, err := tb.PodPing(ctx, src, PingOptions{To: dst.Address.String(), Count: 800, Interval: 10 * time.Millisecond})
		flowDone <- flow{st, err}
	}()
	time.Sleep(2 * time.Second)
	start := time.Now()
	if _, err := tb.RestartIsthmusd(ctx, "c1"); err != nil {
		<-flowDone
		return err
	}
	fmt.Fprintf(w, "  isthmusd on c1 restarted in %s under a 10ms ping flow\n", time.Since(start).Round(time.Millisecond))
	f := <-flowDone
	if f.err != nil {
		return f.err
	}
	fmt.Fprintf(w, "  c1/red → d1/red: %d/%d replies\n", f.st.Received, f.st.Sent)
	after, err := tb.restartWitness(ctx, src)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "  vrf red config, labels and the label dcgw holds for the pod: %d values, ", len(before))
	var changed []string
	for k, v := range before {
		if after[k] != v {
			changed = append(changed, fmt.Sprintf("%s: %q → %q", k, v, after[k]))
		}
	}
	for k, v := range after {
		if _, ok := before[k]; !ok {
			changed = append(changed, fmt.Sprintf("%s: none → %q", k, v))
		}
	}
	if len(changed) > 0 {
		fmt.Fprintf(w, "%d changed\n", len(changed))
		return fmt.Errorf("the restart changed %v", changed)
	}
	fmt.Fprintf(w, "unchanged\n")
	if f.st.Received != f.st.Sent {
		return fmt.Errorf("the restart lost %d packets (sequence numbers %v)", f.st.Sent-f.st.Received, f.st.Lost[:min(len(f.st.Lost), 10)])
	}
	return nil
}

// runServerRemoved is scenario f.
func runServerRemoved(ctx context.Context, tb *Testbed, w io.Writer) error {
	if err := tb.requireDaemons(ctx); err != nil {
		return err
	}
	if err := tb.requireDataplane("c1", "d1", "d2"); err != nil {
		return err
	}
	frr, err := tb.gatewayFRR()
	if err != nil {
		return err
	}
	pods, cleanup, err := tb.addPods(ctx, "c1/red/pf", "d1/red/pf", "d2/red/pf")
	if err != nil {
		return err
	}
	defer cleanup()
	src, gone, survivor := pods[0], pods[1], pods[2]
	if err := tb.waitPodRoutes(ctx, pods...); err != nil {
		return err
	}
	for _, p := range pods[1:] {
		if err := tb.waitPodReach(ctx, src, p.Address.String()); err != nil {
			return err
		}
	}
	type flow struct {
		st  PingStats
		err error
	}
	flowDone := make(chan flow, 1)
	go func() {
		st, err := tb.PodPing(ctx, src, PingOptions{To: survivor.Address.String(), Count: 3000, Interval: 10 * time.Millisecond})
		flowDone <- flow{st, err}
	}()
	time.Sleep(time.Second)
	iface, err := tb.topo.UnderlayInterface("d1")
	if err != nil {
		return err
	}
	if _, err := tb.Exec(ctx, "d1", "ip", "link", "set", iface, "down"); err != nil {
		return err
	}
	defer func() {
		if _, err := tb.Exec(context.WithoutCancel(ctx), "d1", "ip", "link", "set", iface, "up"); err != nil {
			tb.log.Warn("bring d1 back", "err", err)
		}
	}()
	start := time.Now()
	// Hold time (9s) plus the graceful-restart time the host advertised (10s).
	wctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	err = frr.WaitNoVPNRoute(wctx, gone.Address.String()+"/32")
	cancel()
	if err != nil {
		<-flowDone
		return err
	}
	fmt.Fprintf(w, "  d1 cut off: %s withdrawn from %s after %s\n", gone.Address, frr.Node, time.Since(start).Round(100*time.Millisecond))
	f := <-flowDone
	if f.err != nil {
		return f.err
	}
	fmt.Fprintf(w, "  c1/red → d2/red %s meanwhile: %d/%d replies\n", survivor.Address, f.st.Received, f.st.Sent)
	if f.st.Received != f.st.Sent {
		return fmt.Errorf("traffic to the surviving server lost %d packets", f.st.Sent-f.st.Received)
	}
	return nil
}

// runMPLSoMPLS is scenario d: tenant green runs MPLS over MPLS between c1
// and c2, which share the VPC segment; the bridge in vpcgw carries MPLS
// frames, not IP.
func runMPLSoMPLS(ctx context.Context, tb *Testbed, w io.Writer) error {
	if err := tb.requireDaemons(ctx); err != nil {
		return err
	}
	if err := tb.requireDataplane("c1", "c2"); err != nil {
		return err
	}
	pods, cleanup, err := tb.addPods(ctx, "c1/green/pd", "c2/green/pd")
	if err != nil {
		return err
	}
	defer cleanup()
	src, dst := pods[0], pods[1]
	if err := tb.waitPodRoutes(ctx, src, dst); err != nil {
		return err
	}
	srv, err := tb.ServeIdentity(dst, probePort)
	if err != nil {
		return err
	}
	defer srv.Close()
	capture, err := tb.startCapture(ctx, "vpcgw", "c1")
	if err != nil {
		return err
	}
	defer capture.stop(context.WithoutCancel(ctx))
	if err := tb.waitPodReach(ctx, src, dst.Address.String()); err != nil {
		return err
	}
	st, err := tb.PodPing(ctx, src, PingOptions{To: dst.Address.String(), Count: 50, Interval: 10 * time.Millisecond})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "  ping c1/green %s → c2/green %s: %d/%d replies\n", src.Address, dst.Address, st.Received, st.Sent)
	if st.Received != st.Sent {
		return fmt.Errorf("ping pod to pod: lost %v", st.Lost)
	}
	res, err := tb.TCPExchange(ctx, src, dst.Address.String(), probePort, 8<<20)
	if err != nil {
		return fmt.Errorf("tcp pod to pod: %w", err)
	}
	fmt.Fprintf(w, "  tcp  c1/green → %s: 8 MiB intact at %.0f Mbit/s\n", res.Identity, res.Mbps())
	pkts, err := capture.stop(ctx)
	if err != nil {
		return err
	}
	mpls := 0
	var leaked []string
	for _, p := range pkts {
		switch {
		case p.EtherType == 0x8847:
			mpls++
		case p.EtherType == 0x0800 && (p.Src == src.Address || p.Dst == src.Address || p.Src == dst.Address || p.Dst == dst.Address):
			leaked = append(leaked, p.String())
		}
	}
	fmt.Fprintf(w, "  vpcgw's port to c1 saw %d MPLS frames, %d pod packets in plain IP\n", mpls, len(leaked))
	if len(leaked) > 0 {
		return fmt.Errorf("pod packets crossed the segment unencapsulated: %v", leaked[:min(len(leaked), 5)])
	}
	if mpls < 2*st.Sent {
		return fmt.Errorf("saw %d MPLS frames, fewer than the %d pings and replies", mpls, 2*st.Sent)
	}
	return nil
}

// restartWitness collects what a restart of isthmusd on the pod's host must
// not change: the VRF's configuration and labels as gNMI shows them, and
// the VPN label the gateway holds for the pod's /32.
func (tb *Testbed) restartWitness(ctx context.Context, p *Pod) (map[string]string, error) {
	vrf := "network-instances/network-instance[name=" + p.Tenant + "]"
	leaves, err := tb.GnmiFlat(ctx, p.Host, "/"+vrf)
	if err != nil {
		return nil, err
	}
	w := map[string]string{}
	for k, v := range leaves {
		rest := strings.TrimPrefix(k, vrf+"/")
		if strings.HasPrefix(rest, "config/") || strings.HasPrefix(rest, "state/label") {
			w[rest] = v
		}
	}
	frr, err := tb.gatewayFRR()
	if err != nil {
		return nil, err
	}
	rd, err := tb.TenantRD(p.Host, p.Tenant)
	if err != nil {
		return nil, err
	}
	d, err := frr.RouteDetail(ctx, rd, p.Address.String()+"/32")
	if err != nil {
		return nil, err
	}
	w["dcgw label for "+p.Address.String()] = fmt.Sprint(d.Labels)
	return w, nil
}
