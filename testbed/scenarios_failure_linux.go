package testbed

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// The failure scenarios: a daemon restarted and a server cut off, each
// under a ping flow that must lose nothing.

// runRestart is scenario e.
func runRestart(ctx context.Context, tb *Testbed, r *Report) error {
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
	flowDone := tb.pingInBackground(ctx, src, PingOptions{To: dst.Address.String(), Count: 800, Interval: 10 * time.Millisecond})
	time.Sleep(2 * time.Second)
	start := time.Now()
	if _, err := tb.RestartIsthmusd(ctx, "c1"); err != nil {
		<-flowDone
		return err
	}
	took := time.Since(start).Round(time.Millisecond)
	r.Printf("isthmusd on c1 restarted in %s under a 10ms ping flow", took)
	f := <-flowDone
	if f.err != nil {
		return f.err
	}
	r.AddFlow(Flow{From: PodEndpoint(src), To: PodEndpoint(dst), VRF: src.Tenant, Encap: tenantEncap(tb.topo, src.Tenant),
		Ping: &f.st, Note: "across the restart"})
	after, err := tb.restartWitness(ctx, src)
	if err != nil {
		return err
	}
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
		r.Observe("vrf red config, labels and dcgw's label for the pod: %d of %d values changed", len(changed), len(before))
		return fmt.Errorf("the restart changed %v", changed)
	}
	r.Observe("isthmusd on c1 restarted in %s; vrf red config, labels and dcgw's label for the pod: %d values unchanged", took, len(before))
	if f.st.Received != f.st.Sent {
		return fmt.Errorf("the restart lost %d packets (sequence numbers %v)", f.st.Sent-f.st.Received, f.st.Lost[:min(len(f.st.Lost), 10)])
	}
	return nil
}

// runServerRemoved is scenario f.
func runServerRemoved(ctx context.Context, tb *Testbed, r *Report) error {
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
	flowDone := tb.pingInBackground(ctx, src, PingOptions{To: survivor.Address.String(), Count: 3000, Interval: 10 * time.Millisecond})
	time.Sleep(time.Second)
	iface, err := tb.topo.UnderlayInterface("d1")
	if err != nil {
		return err
	}
	if _, err := tb.Exec(ctx, "d1", "ip", "link", "set", iface, "down"); err != nil {
		return err
	}
	restored := false
	defer func() {
		if restored {
			return
		}
		if err := tb.restoreLink(context.WithoutCancel(ctx), "d1", iface); err != nil {
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
	withdrawn := time.Since(start).Round(100 * time.Millisecond)
	r.Observe("d1 cut off: its pod %s/32 withdrawn from %s after %s", gone.Address, frr.Node, withdrawn)
	f := <-flowDone
	if f.err != nil {
		return f.err
	}
	r.AddFlow(Flow{From: PodEndpoint(src), To: PodEndpoint(survivor), VRF: src.Tenant, Encap: tenantEncap(tb.topo, src.Tenant),
		Ping: &f.st, Note: "while d1 is cut off"})
	// d1 comes back whole, as the scenarios after this one need it.
	start = time.Now()
	restored = true
	if err := tb.restoreLink(ctx, "d1", iface); err != nil {
		return err
	}
	if err := tb.waitServerBack(ctx, frr, src, gone); err != nil {
		return err
	}
	r.Observe("d1 back after %s (link up, static routes put back): it reaches %s's underlay, its session and pod %s/32 are back on %s, %s reaches the pod again",
		time.Since(start).Round(100*time.Millisecond), src.Host, gone.Address, frr.Node, PodEndpoint(src))
	if f.st.Received != f.st.Sent {
		return fmt.Errorf("traffic to the surviving server lost %d packets", f.st.Sent-f.st.Received)
	}
	return nil
}

// restoreLink brings a node's interface up again and puts back the node's
// static routes: taking a link down makes the kernel delete the routes
// through it, and bringing it up restores only the connected prefix.
func (tb *Testbed) restoreLink(ctx context.Context, node, iface string) error {
	n, ok := tb.topo.Node(node)
	if !ok {
		return fmt.Errorf("restore %s: unknown node", node)
	}
	if _, err := tb.Exec(ctx, node, "ip", "link", "set", iface, "up"); err != nil {
		return fmt.Errorf("restore %s: %w", node, err)
	}
	for _, rt := range n.Routes {
		if _, err := tb.Exec(ctx, node, "ip", "route", "replace", rt.To, "via", rt.Via); err != nil {
			return fmt.Errorf("restore %s: %w", node, err)
		}
	}
	return nil
}

// waitServerBack waits until the host of pod back is whole again after
// restoreLink: its underlay reaches the host of pod from, the gateway's
// session with it is established, the gateway holds back's /32 again, and
// from reaches back.
func (tb *Testbed) waitServerBack(ctx context.Context, frr *FRR, from, back *Pod) error {
	peer, err := tb.topo.UnderlayAddr(from.Host)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = poll(wctx, func() (bool, error) {
		st, err := tb.PingFlow(wctx, back.Host, PingOptions{To: peer.String(), Count: 1, Timeout: 500 * time.Millisecond})
		return err == nil && st.Received == 1, err
	})
	cancel()
	if err != nil {
		return fmt.Errorf("%s never reached %s's underlay %s again: %w", back.Host, from.Host, peer, err)
	}
	self, err := tb.topo.UnderlayAddr(back.Host)
	if err != nil {
		return err
	}
	// The gateway retries its connection every 2s; GoBGP every 5s.
	wctx, cancel = context.WithTimeout(ctx, 45*time.Second)
	err = frr.WaitEstablished(wctx, self.String())
	cancel()
	if err != nil {
		return fmt.Errorf("%s's session with %s: %w", back.Host, frr.Node, err)
	}
	if err := tb.waitPodRoutes(ctx, back); err != nil {
		return err
	}
	return tb.waitPodReach(ctx, from, back.Address.String())
}

// pingResult is what a ping flow in the background ended with.
type pingResult struct {
	st  PingStats
	err error
}

// pingInBackground starts an echo flow from pod p and delivers its result
// on the channel when it ends.
func (tb *Testbed) pingInBackground(ctx context.Context, p *Pod, o PingOptions) <-chan pingResult {
	done := make(chan pingResult, 1)
	go func() {
		st, err := tb.PodPing(ctx, p, o)
		done <- pingResult{st, err}
	}()
	return done
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
		if strings.HasPrefix(rest, "config/") || strings.HasPrefix(rest, "state/forwarding/labels") {
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
