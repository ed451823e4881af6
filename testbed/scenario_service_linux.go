package testbed

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Scenario "service": a service address in tenant red with one backend pod
// on c1 and one on c2. Both hosts advertise the address to dcgw; a pod on
// d1 reaches it, and its connections are spread over the two hosts (d1
// ECMPs over their routes, each host translates to its local backend).
// When c1's backend is removed from the service, c1 withdraws its route
// and every connection lands on c2. With the service's external traffic
// then sent to every backend (scope ALL), c1 advertises the address again
// although it has no backend: it carries its share of d1's connections on
// to c2's backend, and a gNMI Get of the service's flows on c1, read from
// the flow table at that moment, lists them with that backend.

const (
	serviceName = "web"
	servicePort = 80
)

// serviceVIP is the service address: outside every tenant pool.
var serviceVIP = netip.MustParseAddr("10.96.0.10")

// serviceProbes is how many connections each check opens.
const serviceProbes = 30

// runService is scenario "service".
func runService(ctx context.Context, tb *Testbed, r *Report) error {
	if err := tb.requireDaemons(ctx); err != nil {
		return err
	}
	if err := tb.requireDataplane("c1", "c2", "d1"); err != nil {
		return err
	}
	pods, cleanup, err := tb.addPods(ctx, "c1/red/sa", "c2/red/sb", "d1/red/sc")
	if err != nil {
		return err
	}
	defer cleanup()
	sa, sb, client := pods[0], pods[1], pods[2]
	for _, p := range []*Pod{sa, sb} {
		srv, err := tb.ServeIdentity(p, probePort)
		if err != nil {
			return err
		}
		defer srv.Close()
	}
	hosts := []string{"c1", "c2"}
	defer func() {
		for _, h := range hosts {
			if err := tb.deleteService(context.WithoutCancel(ctx), h); err != nil {
				tb.log.Warn("delete service", "host", h, "err", err)
			}
		}
	}()
	for _, h := range hosts {
		if err := tb.setService(ctx, h, "LOCAL", sa, sb); err != nil {
			return err
		}
	}
	frr, err := tb.gatewayFRR()
	if err != nil {
		return err
	}
	vip := serviceVIP.String() + "/32"
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, h := range hosts {
		rd, err := tb.TenantRD(h, "red")
		if err != nil {
			return err
		}
		route, err := frr.WaitVPNRoute(wctx, rd, vip)
		if err != nil {
			return err
		}
		r.Observe("dcgw holds service %s rd %s next hop %s (%s)", vip, rd, route.Nexthop, h)
	}
	if err := tb.waitPodRoutes(ctx, client, sa, sb); err != nil {
		return err
	}
	seen, err := tb.probeService(ctx, r, client)
	if err != nil {
		return err
	}
	want := []string{ident(sa), ident(sb)}
	for _, w := range want {
		if seen[w] == 0 {
			return fmt.Errorf("of %d connections from d1 to the service none reached %s: %v", serviceProbes, w, seen)
		}
	}
	r.Observe("%d connections from d1/red/sc to %s:%d: %s", serviceProbes, serviceVIP, servicePort, countsText(seen))

	// c1's backend goes: c1 withdraws, everything lands on c2.
	for _, h := range hosts {
		if err := tb.setService(ctx, h, "LOCAL", sb); err != nil {
			return err
		}
	}
	rd1, err := tb.TenantRD("c1", "red")
	if err != nil {
		return err
	}
	start := time.Now()
	if err := waitNoVPNRouteRD(wctx, frr, rd1, vip); err != nil {
		return err
	}
	r.Observe("c1's backend removed: dcgw withdrew %s rd %s after %s", vip, rd1, time.Since(start).Round(time.Millisecond))
	seen, err = tb.probeService(ctx, r, client)
	if err != nil {
		return err
	}
	if seen[ident(sb)] != serviceProbes {
		return fmt.Errorf("after c1's backend went, connections reached %v, want all %d on %s", seen, serviceProbes, ident(sb))
	}
	r.Observe("then %d connections: %s", serviceProbes, countsText(seen))
	return serviceToEveryBackend(ctx, tb, r, frr, client, sb)
}

// serviceToEveryBackend is the last part of scenario "service": with the
// ALL external-traffic scope and the one backend on c2, c1 advertises the
// address again and carries d1's connections that reach it on to c2.
func serviceToEveryBackend(ctx context.Context, tb *Testbed, r *Report, frr *FRR, client, sb *Pod) error {
	for _, h := range []string{"c1", "c2"} {
		if err := tb.setService(ctx, h, "ALL", sb); err != nil {
			return err
		}
	}
	rd1, err := tb.TenantRD("c1", "red")
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	vip := serviceVIP.String() + "/32"
	if _, err := frr.WaitVPNRoute(wctx, rd1, vip); err != nil {
		return fmt.Errorf("c1 with external traffic to every backend: %w", err)
	}
	r.Observe("external traffic to every backend: dcgw holds %s rd %s again (c1 has no backend)", vip, rd1)
	seen, err := tb.probeService(ctx, r, client)
	if err != nil {
		return err
	}
	if seen[ident(sb)] != serviceProbes {
		return fmt.Errorf("with external traffic to every backend, connections reached %v, want all %d on %s", seen, serviceProbes, ident(sb))
	}
	out, err := tb.GnmiGet(ctx, "c1", servicePath()+"/state/flows")
	if err != nil {
		return fmt.Errorf("get the service's flows on c1: %w", err)
	}
	carried := 0
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "backend-address") && strings.HasSuffix(strings.TrimSpace(line), sb.Address.String()) {
			carried++
		}
	}
	if carried == 0 {
		return fmt.Errorf("c1's flows of the service (a Get at request time) list none carried on to %s:\n%s", ident(sb), out)
	}
	r.Observe("then %d connections: %s; c1 carried %d of them on to c2 (its flows, read on request)", serviceProbes, countsText(seen), carried)
	return nil
}

func ident(p *Pod) string { return p.Host + "/" + p.Tenant + "/" + p.Name }

func countsText(seen map[string]int) string {
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d to %s", seen[k], k))
	}
	return strings.Join(parts, ", ")
}

// probeService opens serviceProbes TCP connections from client to the
// service (1 KiB each, checksum checked) and counts who answered; the
// first attempts wait for the route to the service.
func (tb *Testbed) probeService(ctx context.Context, r *Report, client *Pod) (map[string]int, error) {
	seen := map[string]int{}
	addr := serviceVIP.String()
	var first TCPResult
	err := poll(ctx, func() (bool, error) {
		res, err := tb.TCPExchange(ctx, client, addr, servicePort, 1024)
		first = res
		return err == nil, err
	})
	if err != nil {
		return nil, fmt.Errorf("reach the service from %s: %w", ident(client), err)
	}
	seen[first.Identity]++
	for i := 1; i < serviceProbes; i++ {
		res, err := tb.TCPExchange(ctx, client, addr, servicePort, 1024)
		if err != nil {
			return seen, fmt.Errorf("connection %d to the service: %w", i, err)
		}
		seen[res.Identity]++
	}
	r.AddFlow(Flow{From: PodEndpoint(client), To: Endpoint{Host: "service " + serviceName, Addr: serviceVIP},
		VRF: "red", Encap: tenantEncap(tb.topo, "red"), Note: countsText(seen)})
	return seen, nil
}

// waitNoVPNRouteRD polls until bgpd holds no path for prefix under rd.
func waitNoVPNRouteRD(ctx context.Context, f *FRR, rd, prefix string) error {
	err := poll(ctx, func() (bool, error) {
		routes, err := f.VPNRoutes(ctx)
		if err != nil {
			return false, err
		}
		return !slices.ContainsFunc(routes, func(r VPNRoute) bool { return r.RD == rd && r.Prefix == prefix }), nil
	})
	if err != nil {
		return fmt.Errorf("wait for %s rd %s to be withdrawn in %s: %w", prefix, rd, f.Node, err)
	}
	return nil
}

func servicePath() string {
	return "/network-instances/network-instance[name=red]/services/service[name=" + serviceName + "]"
}

// setService replaces service web on host with this external-traffic
// scope and these backends (target port probePort), in one gNMI Set.
func (tb *Testbed) setService(ctx context.Context, host, scope string, backends ...*Pod) error {
	gnmic, err := tb.needGnmic()
	if err != nil {
		return err
	}
	bes := make([]any, 0, len(backends))
	for _, p := range backends {
		bes = append(bes, map[string]any{"address": p.Address.String(), "port": probePort,
			"config": map[string]any{"address": p.Address.String(), "port": probePort}})
	}
	req := map[string]any{"replaces": []map[string]any{{
		"path":     servicePath(),
		"encoding": "json_ietf",
		"value": map[string]any{
			"name": serviceName,
			"config": map[string]any{"name": serviceName, "address": serviceVIP.String(), "protocol": "TCP", "port": servicePort,
				"external-traffic-scope": scope},
			"backends": map[string]any{"backend": bes},
		},
	}}}
	out, err := yaml.Marshal(req)
	if err != nil {
		return fmt.Errorf("render service for %s: %w", host, err)
	}
	dir := filepath.Join(tb.dir, "isthmusd", host)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("set service on %s: %w", host, err)
	}
	file := filepath.Join(dir, "service-request.yaml")
	if err := os.WriteFile(file, out, 0o644); err != nil {
		return fmt.Errorf("set service on %s: %w", host, err)
	}
	target, err := tb.GNMIAddr(host)
	if err != nil {
		return err
	}
	if _, err := tb.Gnmic(ctx, gnmic, host, target, "set", "--request-file", file); err != nil {
		return fmt.Errorf("set service on %s: %w", host, err)
	}
	return nil
}

// deleteService removes service web from host.
func (tb *Testbed) deleteService(ctx context.Context, host string) error {
	gnmic, err := tb.needGnmic()
	if err != nil {
		return err
	}
	target, err := tb.GNMIAddr(host)
	if err != nil {
		return err
	}
	if _, err := tb.Gnmic(ctx, gnmic, host, target, "set", "--delete", servicePath()); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("delete service on %s: %w", host, err)
	}
	return nil
}
