package testbed

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
)

// Scenario "external": tenants red and blue each have a pod on c1 (the
// tenants' pools overlap, so the pods may share an address). Each VRF
// source-NATs to c1's underlay address, red with ports 20000..20999, blue
// with 21000..21999. Both pods connect at once to an "internet" address
// (core's 100.64.0.2: outside every VRF, behind the provider's routers,
// with no route to any pod); the server there sees c1's underlay address
// for both, each with a port of its own tenant's range, and a capture on
// vpcgw's uplink holds no pod address, only c1's.

// internetAddr is the "internet" server: core's address toward vpcgw.
var internetAddr = netip.MustParseAddr("100.64.0.2")

const internetPort = 8081

// externalRanges are the tenants' SNAT ports on c1.
var externalRanges = map[string][2]int{"red": {20000, 20999}, "blue": {21000, 21999}}

// runExternal is scenario "external".
func runExternal(ctx context.Context, tb *Testbed, r *Report) error {
	if err := tb.requireDaemons(ctx); err != nil {
		return err
	}
	if err := tb.requireDataplane("c1"); err != nil {
		return err
	}
	host, err := tb.Topology().UnderlayAddr("c1")
	if err != nil {
		return err
	}
	pods, cleanup, err := tb.addPods(ctx, "c1/red/xr", "c1/blue/xb")
	if err != nil {
		return err
	}
	defer cleanup()
	// A node forwards (as every Kubernetes node does); the testbed's hosts
	// do not by default.
	old, err := tb.Exec(ctx, "c1", "sysctl", "-n", "net.ipv4.ip_forward")
	if err != nil {
		return err
	}
	if _, err := tb.Exec(ctx, "c1", "sysctl", "-qw", "net.ipv4.ip_forward=1"); err != nil {
		return err
	}
	defer tb.Exec(context.WithoutCancel(ctx), "c1", "sysctl", "-qw", "net.ipv4.ip_forward="+strings.TrimSpace(string(old)))
	for _, p := range pods {
		rg := externalRanges[p.Tenant]
		if err := tb.setExternal(ctx, "c1", p.Tenant, rg[0], rg[1]); err != nil {
			return err
		}
		defer tb.deleteExternal(context.WithoutCancel(ctx), "c1", p.Tenant)
	}
	l, err := listenIn(filepath.Join(netnsDir, tb.Namespace("core")), netip.AddrPortFrom(internetAddr, internetPort).String())
	if err != nil {
		return err
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s\n", c.RemoteAddr())
			c.Close()
		}
	}()
	capt, err := tb.startCapture(ctx, "vpcgw", "core")
	if err != nil {
		return err
	}
	defer capt.stop(context.WithoutCancel(ctx))

	seen := make([]netip.AddrPort, len(pods))
	errs := make([]error, len(pods))
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i, p := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The first attempts wait for the commit to reach the forwarder.
			errs[i] = poll(wctx, func() (bool, error) {
				ap, err := askInternet(wctx, p)
				seen[i] = ap
				return err == nil, err
			})
		}()
	}
	wg.Wait()
	for i, p := range pods {
		if errs[i] != nil || !seen[i].IsValid() {
			return fmt.Errorf("%s (%s) did not reach %s through SNAT: %v", ident(p), p.Address, internetAddr, errs[i])
		}
		rg := externalRanges[p.Tenant]
		if seen[i].Addr() != host || int(seen[i].Port()) < rg[0] || int(seen[i].Port()) > rg[1] {
			return fmt.Errorf("%s reached %s as %s, want %s with a port in %d..%d", ident(p), internetAddr, seen[i], host, rg[0], rg[1])
		}
		r.Observe("%s %s → %s:%d: the server saw %s (tenant %s's ports %d..%d)", ident(p), p.Address, internetAddr, internetPort, seen[i], p.Tenant, rg[0], rg[1])
	}
	pkts, err := capt.stop(ctx)
	if err != nil {
		return err
	}
	toInternet := 0
	for _, pk := range pkts {
		if pk.Src != internetAddr && pk.Dst != internetAddr {
			continue
		}
		toInternet++
		for _, p := range pods {
			if pk.Src == p.Address || pk.Dst == p.Address {
				return fmt.Errorf("vpcgw's uplink carried a pod address: %s", pk)
			}
		}
		if pk.Src != host && pk.Dst != host {
			return fmt.Errorf("vpcgw's uplink carried %s, which is not c1's address %s", pk, host)
		}
	}
	if toInternet == 0 {
		return fmt.Errorf("vpcgw's uplink saw no packet to or from %s", internetAddr)
	}
	same := ""
	if pods[0].Address == pods[1].Address {
		same = " (both pods have the same address)"
	}
	r.Observe("vpcgw's uplink: %d packets to or from %s, all between it and c1's %s, no pod address%s", toInternet, internetAddr, host, same)
	return nil
}

// askInternet connects from pod p to the internet server and returns the
// address the server saw the connection come from.
func askInternet(ctx context.Context, p *Pod) (netip.AddrPort, error) {
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := dialIn(dctx, filepath.Join(netnsDir, p.Netns), netip.AddrPortFrom(internetAddr, internetPort).String())
	if err != nil {
		return netip.AddrPort{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.ParseAddrPort(strings.TrimSpace(string(b)))
}

func externalPath(vrf string) string {
	return fmt.Sprintf("/network-instances/network-instance[name=%s]/external", vrf)
}

// setExternal turns on source NAT for vrf on host with ports min..max, in
// one gNMI Set.
func (tb *Testbed) setExternal(ctx context.Context, host, vrf string, min, max int) error {
	gnmic, err := tb.needGnmic()
	if err != nil {
		return err
	}
	req := map[string]any{"replaces": []map[string]any{{
		"path":     externalPath(vrf) + "/config",
		"encoding": "json_ietf",
		"value":    map[string]any{"mode": "SNAT", "port-min": min, "port-max": max},
	}}}
	out, err := yaml.Marshal(req)
	if err != nil {
		return fmt.Errorf("render external connectivity for %s: %w", host, err)
	}
	dir := filepath.Join(tb.dir, "isthmusd", host)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("set external connectivity on %s: %w", host, err)
	}
	file := filepath.Join(dir, "external-"+vrf+"-request.yaml")
	if err := os.WriteFile(file, out, 0o644); err != nil {
		return fmt.Errorf("set external connectivity on %s: %w", host, err)
	}
	target, err := tb.GNMIAddr(host)
	if err != nil {
		return err
	}
	if _, err := tb.Gnmic(ctx, gnmic, host, target, "set", "--request-file", file); err != nil {
		return fmt.Errorf("set external connectivity of %s on %s: %w", vrf, host, err)
	}
	return nil
}

// deleteExternal removes vrf's external connectivity on host; a failure
// is logged (it runs on the way out).
func (tb *Testbed) deleteExternal(ctx context.Context, host, vrf string) {
	gnmic, err := tb.needGnmic()
	if err == nil {
		var target string
		if target, err = tb.GNMIAddr(host); err == nil {
			_, err = tb.Gnmic(ctx, gnmic, host, target, "set", "--delete", externalPath(vrf))
		}
	}
	if err != nil {
		tb.log.Warn("delete external connectivity", "host", host, "vrf", vrf, "err", err)
	}
}
