package testbed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/isthmus-net/isthmus/cni/plugin"
)

// Scenario "policy": a tier policy in tenant red between cloud and DC
// pods, configured over gNMI on each isthmusd as an operator (or the
// Kubernetes controller) would: pods tagged app=web, app=db or app=other;
// web may reach db on TCP 5432 and nothing else; db accepts only that;
// other pods carry no policy. Each host knows its own pods by their
// interface tags and the other hosts' pods as tagged address groups. Every
// flow between the cloud (c1, c2) and the data center (d1, d2) crosses the
// tunnel, so egress policy is enforced at the sending host and ingress
// policy after decapsulation at the receiving one, in both directions.

const (
	// policyPort is the port web may reach db on.
	policyPort = 5432
	// policyProbeTimeout bounds a probe that policy should drop.
	policyProbeTimeout = time.Second
)

// policyPod is one pod of the scenario and its tier.
type policyPod struct {
	spec, app string
	pod       *Pod
}

// runPolicy is scenario "policy".
func runPolicy(ctx context.Context, tb *Testbed, r *Report) error {
	if err := tb.requireDaemons(ctx); err != nil {
		return err
	}
	hosts := []string{"c1", "c2", "d1", "d2"}
	if err := tb.requireDataplane(hosts...); err != nil {
		return err
	}
	pps := []*policyPod{
		{spec: "c1/red/web1", app: "web"}, {spec: "c2/red/db1", app: "db"}, {spec: "c1/red/other1", app: "other"},
		{spec: "d1/red/web2", app: "web"}, {spec: "d2/red/db2", app: "db"}, {spec: "d2/red/other2", app: "other"},
	}
	var specs []string
	for _, pp := range pps {
		specs = append(specs, pp.spec)
	}
	pods, cleanup, err := tb.addPods(ctx, specs...)
	if err != nil {
		return err
	}
	defer cleanup()
	for i, p := range pods {
		pps[i].pod = p
		for _, port := range []int{policyPort, probePort} {
			srv, err := tb.ServeIdentity(p, port)
			if err != nil {
				return err
			}
			defer srv.Close()
		}
	}
	if err := tb.waitPodRoutes(ctx, pods...); err != nil {
		return err
	}
	// Before any policy every pod reaches every other on both ports.
	open, err := policyMatrix(ctx, tb, pps, func(*policyPod, *policyPod, int) bool { return true }, 20*time.Second)
	if err != nil {
		return fmt.Errorf("before policy: %w", err)
	}
	r.Observe("without policy: %d TCP probes between 6 pods on 4 hosts, all answered", open)

	removed := false
	defer func() {
		if removed {
			return
		}
		for _, h := range hosts {
			if err := tb.deletePolicy(context.WithoutCancel(ctx), h, pps); err != nil {
				tb.log.Warn("delete policy", "host", h, "err", err)
			}
		}
	}()
	start := time.Now()
	for _, h := range hosts {
		if err := tb.setPolicy(ctx, h, pps); err != nil {
			return err
		}
	}
	want := func(src, dst *policyPod, port int) bool {
		if src.app == "other" && dst.app == "other" {
			return true
		}
		return src.app == "web" && dst.app == "db" && port == policyPort
	}
	n, err := policyMatrix(ctx, tb, pps, want, 10*time.Second)
	if err != nil {
		return fmt.Errorf("with policy: %w", err)
	}
	r.Observe("tier policy set on 4 hosts; within %s all %d probes follow it: web → db on %d crosses the tunnel both ways (c1 → d2, d1 → c2), nothing else reaches web or db, web and db reach nothing else",
		time.Since(start).Round(time.Millisecond), n, policyPort)
	for _, pp := range pps {
		if pp.app == "other" {
			continue
		}
		dir := "ingress"
		if pp.app == "web" {
			dir = "egress"
		}
		denied, err := tb.aclDenied(ctx, pp.pod, dir)
		if err != nil {
			return err
		}
		if denied == 0 {
			return fmt.Errorf("%s (%s): %s-denied-packets is 0 after probes its policy refused", ident(pp.pod), pp.app, dir)
		}
		r.Observe("%s (app=%s): %s-denied-packets %d", ident(pp.pod), pp.app, dir, denied)
	}
	// Removed, the policy stops: every probe is answered again.
	removed = true
	for _, h := range hosts {
		if err := tb.deletePolicy(ctx, h, pps); err != nil {
			return err
		}
	}
	if _, err := policyMatrix(ctx, tb, pps, func(*policyPod, *policyPod, int) bool { return true }, 10*time.Second); err != nil {
		return fmt.Errorf("after the policy was removed: %w", err)
	}
	r.Observe("policy removed from the 4 hosts: all %d probes answered again", open)
	for _, pp := range pps {
		for _, dst := range pps {
			if pp.pod.Host[0] != dst.pod.Host[0] && want(pp, dst, policyPort) && pp.app == "web" {
				r.AddFlow(Flow{From: PodEndpoint(pp.pod), To: PodEndpoint(dst.pod), VRF: "red", Encap: tenantEncap(tb.topo, "red"),
					Note: fmt.Sprintf("tcp/%d allowed by the tier policy, tcp/%d refused", policyPort, probePort)})
			}
		}
	}
	return nil
}

// policyMatrix probes TCP on policyPort and probePort between every
// ordered pair of pods until the outcome is want for all of them, or
// within fails naming the probes that differ. It returns how many probes
// one round sends.
func policyMatrix(ctx context.Context, tb *Testbed, pps []*policyPod, want func(src, dst *policyPod, port int) bool, within time.Duration) (int, error) {
	deadline := time.Now().Add(within)
	for {
		var (
			mu    sync.Mutex
			wg    sync.WaitGroup
			wrong []string
			n     int
		)
		for _, src := range pps {
			for _, dst := range pps {
				if src == dst {
					continue
				}
				for _, port := range []int{policyPort, probePort} {
					n++
					wg.Add(1)
					go func() {
						defer wg.Done()
						pctx, cancel := context.WithTimeout(ctx, policyProbeTimeout)
						res, err := tb.TCPExchange(pctx, src.pod, dst.pod.Address.String(), port, 64)
						cancel()
						got := err == nil && res.Identity == ident(dst.pod)
						if got != want(src, dst, port) {
							mu.Lock()
							wrong = append(wrong, fmt.Sprintf("%s (%s) → %s (%s) tcp/%d: answered %v, want %v",
								ident(src.pod), src.app, ident(dst.pod), dst.app, port, got, !got))
							mu.Unlock()
						}
					}()
				}
			}
		}
		wg.Wait()
		if len(wrong) == 0 {
			return n, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			slices.Sort(wrong)
			return n, fmt.Errorf("%d of %d probes differ from the policy:\n  %s", len(wrong), n, strings.Join(wrong, "\n  "))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// podIfName is the host end of a pod's veth, as isthmus-cni named it.
func podIfName(p *Pod) string { return plugin.HostIfName(p.Netns, "eth0") }

func policyGroupName(p *Pod) string { return "tier-" + p.Host + "-" + p.Name }

// setPolicy configures the tier policy on host in one gNMI Set: the tag
// key, the other hosts' pods as tagged /32 groups, the two sets, and the
// tags and attachments of the host's own pods.
func (tb *Testbed) setPolicy(ctx context.Context, host string, pps []*policyPod) error {
	type obj = map[string]any
	tag := func(k, v string) obj { return obj{"key": k, "config": obj{"key": k, "value": v}} }
	entry := func(sel string, dir string) obj {
		return obj{"sequence-id": 10, "config": obj{"sequence-id": 10, "action": "ACCEPT", "protocol": 6,
			"destination-port": policyPort, dir + "-tag-selector": []string{sel}}}
	}
	set := func(name, desc string, e obj) obj {
		return obj{"name": name, "config": obj{"name": name, "description": desc}, "acl-entries": obj{"acl-entry": []obj{e}}}
	}
	replaces := []obj{
		{"path": "/acl/tag-keys/tag-key[name=app]", "value": obj{"name": "app", "config": obj{"name": "app"}}},
		{"path": "/acl/acl-sets/acl-set[name=tier-web-egress]", "value": set("tier-web-egress", "web reaches db on 5432", entry("app=db", "destination"))},
		{"path": "/acl/acl-sets/acl-set[name=tier-db-ingress]", "value": set("tier-db-ingress", "db accepts web on 5432", entry("app=web", "source"))},
	}
	for _, pp := range pps {
		p := pp.pod
		if p.Host != host {
			name := policyGroupName(p)
			replaces = append(replaces, obj{"path": "/acl/address-groups/address-group[name=" + name + "]", "value": obj{
				"name":   name,
				"config": obj{"name": name, "prefix": []string{p.Address.String() + "/32"}, "network-instance": "red"},
				"tags":   obj{"tag": []obj{tag("app", pp.app)}},
			}})
			continue
		}
		ifPath := "/interfaces/interface[name=" + podIfName(p) + "]"
		replaces = append(replaces, obj{"path": ifPath + "/tags", "value": obj{"tag": []obj{tag("app", pp.app)}}})
		switch pp.app {
		case "web":
			replaces = append(replaces, obj{"path": ifPath + "/acl", "value": obj{"config": obj{
				"egress-acl-set": []string{"tier-web-egress"}, "egress-default-action": "DROP", "ingress-default-action": "DROP"}}})
		case "db":
			replaces = append(replaces, obj{"path": ifPath + "/acl", "value": obj{"config": obj{
				"ingress-acl-set": []string{"tier-db-ingress"}, "ingress-default-action": "DROP", "egress-default-action": "DROP"}}})
		}
	}
	for i := range replaces {
		replaces[i]["encoding"] = "json_ietf"
	}
	out, err := yaml.Marshal(obj{"replaces": replaces})
	if err != nil {
		return fmt.Errorf("render policy for %s: %w", host, err)
	}
	return tb.gnmicRequest(ctx, host, "policy-request.yaml", out)
}

// deletePolicy removes what setPolicy made on host.
func (tb *Testbed) deletePolicy(ctx context.Context, host string, pps []*policyPod) error {
	deletes := []string{"/acl/acl-sets/acl-set[name=tier-web-egress]", "/acl/acl-sets/acl-set[name=tier-db-ingress]"}
	for _, pp := range pps {
		if pp.pod == nil {
			continue
		}
		if pp.pod.Host != host {
			deletes = append(deletes, "/acl/address-groups/address-group[name="+policyGroupName(pp.pod)+"]")
			continue
		}
		ifPath := "/interfaces/interface[name=" + podIfName(pp.pod) + "]"
		deletes = append(deletes, ifPath+"/tags")
		if pp.app != "other" {
			deletes = append(deletes, ifPath+"/acl")
		}
	}
	deletes = append(deletes, "/acl/tag-keys/tag-key[name=app]")
	out, err := yaml.Marshal(map[string]any{"deletes": deletes})
	if err != nil {
		return fmt.Errorf("render policy deletion for %s: %w", host, err)
	}
	if err := tb.gnmicRequest(ctx, host, "policy-delete.yaml", out); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// gnmicRequest runs `gnmic set --request-file` with req on host.
func (tb *Testbed) gnmicRequest(ctx context.Context, host, file string, req []byte) error {
	gnmic, err := tb.needGnmic()
	if err != nil {
		return err
	}
	dir := filepath.Join(tb.dir, "isthmusd", host)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("gnmi set on %s: %w", host, err)
	}
	path := filepath.Join(dir, file)
	if err := os.WriteFile(path, req, 0o644); err != nil {
		return fmt.Errorf("gnmi set on %s: %w", host, err)
	}
	target, err := tb.GNMIAddr(host)
	if err != nil {
		return err
	}
	if _, err := tb.Gnmic(ctx, gnmic, host, target, "set", "--request-file", path); err != nil {
		return fmt.Errorf("gnmi set %s on %s: %w", file, host, err)
	}
	return nil
}

// aclDenied reads a pod interface's ingress- or egress-denied-packets.
func (tb *Testbed) aclDenied(ctx context.Context, p *Pod, dir string) (uint64, error) {
	leaf := dir + "-denied-packets"
	out, err := tb.GnmiGet(ctx, p.Host, "/interfaces/interface[name="+podIfName(p)+"]/acl/state/"+leaf)
	if err != nil {
		return 0, fmt.Errorf("read %s of %s: %w", leaf, ident(p), err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(strings.TrimSpace(k), leaf) {
			n, err := strconv.ParseUint(strings.Trim(strings.TrimSpace(v), `"`), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("read %s of %s: %q: %w", leaf, ident(p), v, err)
			}
			return n, nil
		}
	}
	return 0, nil
}
