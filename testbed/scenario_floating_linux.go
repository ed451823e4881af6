package testbed

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"go.yaml.in/yaml/v3"
)

// Scenario "floating": tenant blue's floating IP 198.51.100.5, advertised
// as a VPNv4 route of an external VRF "public" (RT 65000:190, importing
// red's routes so that replies find their way) on c1 and c2. A pod on d1
// in red, whose VRF also imports 65000:190, reaches blue's pod on c1 by
// the floating IP (c1 translates it after decapsulation with public's
// label; the pod's reply leaves from the floating IP over public's route
// to d1); the binding then moves to blue's pod on c2: c1 withdraws the
// route, c2 advertises it, and the same address reaches the pod on c2.

var floatingIP = netip.MustParseAddr("198.51.100.5")

const (
	floatingPool = "198.51.100.0/28"
	floatingVRF  = "public"
	floatingRT   = "65000:190"
)

// runFloating is scenario "floating".
func runFloating(ctx context.Context, tb *Testbed, r *Report) error {
	if err := tb.requireDaemons(ctx); err != nil {
		return err
	}
	if err := tb.requireDataplane("c1", "c2", "d1"); err != nil {
		return err
	}
	redRT := ""
	for _, tn := range tb.topo.Tenants {
		if tn.Name == "red" {
			redRT = tn.RouteTarget
		}
	}
	if redRT == "" {
		return fmt.Errorf("%w: the topology has no tenant red", ErrNotAvailable)
	}
	pods, cleanup, err := tb.addPods(ctx, "c1/blue/fa", "c2/blue/fb", "d1/red/fc")
	if err != nil {
		return err
	}
	defer cleanup()
	fa, fb, client := pods[0], pods[1], pods[2]
	for _, p := range []*Pod{fa, fb} {
		srv, err := tb.ServeIdentity(p, probePort)
		if err != nil {
			return err
		}
		defer srv.Close()
	}
	hosts := []string{"c1", "c2"}
	bg := context.WithoutCancel(ctx)
	for _, h := range hosts {
		defer tb.floatingUndo(bg, h, "--delete", externalPath("blue"), "--delete", "/network-instances/network-instance[name="+floatingVRF+"]")
		if err := tb.floatingSet(ctx, h, "setup", floatingSetup(tb, h, redRT)); err != nil {
			return err
		}
	}
	redCfg := "/network-instances/network-instance[name=red]/config"
	if err := tb.floatingSet(ctx, "d1", "import", map[string]any{"updates": []map[string]any{{
		"path": redCfg, "encoding": "json_ietf", "value": map[string]any{"import-route-target": []string{redRT, floatingRT}},
	}}}); err != nil {
		return err
	}
	defer tb.floatingSet(bg, "d1", "import-restore", map[string]any{"updates": []map[string]any{{
		"path": redCfg, "encoding": "json_ietf", "value": map[string]any{"import-route-target": []string{redRT}},
	}}})
	frr, err := tb.gatewayFRR()
	if err != nil {
		return err
	}
	fip := floatingIP.String() + "/32"
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for i, p := range []*Pod{fa, fb} {
		h := hosts[i]
		if i == 1 {
			// The move: c1 unbinds, c2 binds.
			if err := tb.floatingSet(ctx, "c1", "unbind", map[string]any{"deletes": []string{floatingBinding()}}); err != nil {
				return err
			}
			rd1, err := floatingRD(tb, "c1")
			if err != nil {
				return err
			}
			start := time.Now()
			if err := waitNoVPNRouteRD(wctx, frr, rd1, fip); err != nil {
				return err
			}
			r.Observe("binding moved: dcgw withdrew %s rd %s (c1) after %s", fip, rd1, time.Since(start).Round(time.Millisecond))
		}
		if err := tb.floatingSet(ctx, h, "bind", map[string]any{"updates": []map[string]any{{
			"path": floatingBinding(), "encoding": "json_ietf",
			"value": map[string]any{"address": floatingIP.String(), "config": map[string]any{"address": floatingIP.String(), "pod-address": p.Address.String()}},
		}}}); err != nil {
			return err
		}
		rd, err := floatingRD(tb, h)
		if err != nil {
			return err
		}
		route, err := frr.WaitVPNRoute(wctx, rd, fip)
		if err != nil {
			return err
		}
		r.Observe("dcgw holds floating IP %s rd %s (VRF %s of %s) next hop %s", fip, rd, floatingVRF, h, route.Nexthop)
		var res TCPResult
		err = poll(wctx, func() (bool, error) {
			res, err = tb.TCPExchange(wctx, client, floatingIP.String(), probePort, 1024)
			return err == nil && res.Identity == ident(p), err
		})
		if err != nil {
			return fmt.Errorf("%s never reached %s by floating IP %s (last answer %q): %w", ident(client), ident(p), floatingIP, res.Identity, err)
		}
		r.Observe("%s %s → %s:%d answered by %s (%s), 1 KiB checked", ident(client), client.Address, floatingIP, probePort, res.Identity, p.Address)
		r.AddFlow(Flow{From: PodEndpoint(client), To: Endpoint{Host: h, Pod: p.Name, Addr: floatingIP},
			VRF: "red → " + floatingVRF + " → blue", Encap: tenantEncap(tb.topo, "red"), Note: "floating IP of " + p.Address.String()})
	}
	return nil
}

func floatingBinding() string {
	return externalPath("blue") + "/floating-ips/floating-ip[address=" + floatingIP.String() + "]"
}

// floatingRD is the route distinguisher of VRF public on host.
func floatingRD(tb *Testbed, host string) (string, error) {
	a, err := tb.topo.UnderlayAddr(host)
	if err != nil {
		return "", err
	}
	return a.String() + ":90", nil
}

// floatingSetup is the gNMI request that creates VRF public on host and
// makes blue's floating pool advertised in it.
func floatingSetup(tb *Testbed, host, redRT string) map[string]any {
	rd, _ := floatingRD(tb, host)
	return map[string]any{"updates": []map[string]any{
		{"path": "/network-instances/network-instance[name=" + floatingVRF + "]/config", "encoding": "json_ietf",
			"value": map[string]any{"name": floatingVRF, "type": "L3VRF", "route-distinguisher": rd,
				"import-route-target": []string{redRT}, "export-route-target": []string{floatingRT}}},
		{"path": externalPath("blue") + "/config", "encoding": "json_ietf",
			"value": map[string]any{"floating-pool": []string{floatingPool}, "floating-advertise": "VPNV4", "floating-network-instance": floatingVRF}},
	}}
}

// floatingSet sends req (a gnmic request file's content) to host.
func (tb *Testbed) floatingSet(ctx context.Context, host, name string, req map[string]any) error {
	gnmic, err := tb.needGnmic()
	if err != nil {
		return err
	}
	out, err := yaml.Marshal(req)
	if err != nil {
		return fmt.Errorf("render floating %s for %s: %w", name, host, err)
	}
	dir := filepath.Join(tb.dir, "isthmusd", host)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("floating %s on %s: %w", name, host, err)
	}
	file := filepath.Join(dir, "floating-"+name+"-request.yaml")
	if err := os.WriteFile(file, out, 0o644); err != nil {
		return fmt.Errorf("floating %s on %s: %w", name, host, err)
	}
	target, err := tb.GNMIAddr(host)
	if err != nil {
		return err
	}
	if _, err := tb.Gnmic(ctx, gnmic, host, target, "set", "--request-file", file); err != nil {
		return fmt.Errorf("floating %s on %s: %w", name, host, err)
	}
	return nil
}

// floatingUndo runs gnmic set with args on host on the way out; a failure
// is logged.
func (tb *Testbed) floatingUndo(ctx context.Context, host string, args ...string) {
	gnmic, err := tb.needGnmic()
	if err == nil {
		var target string
		if target, err = tb.GNMIAddr(host); err == nil {
			_, err = tb.Gnmic(ctx, gnmic, host, target, append([]string{"set"}, args...)...)
		}
	}
	if err != nil {
		tb.log.Warn("undo floating ip setup", "host", host, "err", err)
	}
}
