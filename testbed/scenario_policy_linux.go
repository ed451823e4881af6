package testbed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
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
//
// Every ordered pair of pods is probed with TCP and UDP to 5432 and 7000
// and an ICMP echo, each bounded by policyProbeTimeout and all at once: a
// TCP probe passes only when the server's identity and the checksum of
// what was sent come back, so an allowed web → db connection also shows
// its replies passing db's egress and web's ingress, both DROP by default.
// One more round under the policy is then checked against the denied
// counters of the four attachment points and the hosts' acl-flows, read
// over gNMI.

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
			usrv, err := servePolicyUDP(p, port)
			if err != nil {
				return err
			}
			defer usrv.Close()
		}
	}
	if err := tb.waitPodRoutes(ctx, pods...); err != nil {
		return err
	}
	// Before any policy every pod reaches every other with every probe.
	all := func(*policyPod, *policyPod, policyProbe) bool { return true }
	open, err := policyMatrix(ctx, tb, pps, all, 20*time.Second)
	if err != nil {
		return fmt.Errorf("before policy: %w", err)
	}
	r.Observe("without policy: %d probes (TCP and UDP to %d and %d, ICMP echo) between 6 pods on 4 hosts, all answered", open, policyPort, probePort)

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
	want := func(src, dst *policyPod, pr policyProbe) bool {
		if src.app == "other" && dst.app == "other" {
			return true
		}
		return src.app == "web" && dst.app == "db" && pr == policyProbe{"tcp", policyPort}
	}
	n, err := policyMatrix(ctx, tb, pps, want, 10*time.Second)
	if err != nil {
		return fmt.Errorf("with policy: %w", err)
	}
	r.Observe("tier policy set on 4 hosts; within %s all %d probes follow it: web → db tcp/%d connects and its replies pass across the tunnel both ways (c1 → d2, d1 → c2); web → db udp/%d, udp/%d, tcp/%d and icmp echo are refused, db opens nothing to web (c2 → d1, d2 → c1), nothing else reaches web or db",
		time.Since(start).Round(time.Millisecond), n, policyPort, policyPort, probePort, probePort)
	if err := policyCounted(ctx, tb, r, pps, want); err != nil {
		return err
	}
	// Removed, the policy stops: every probe is answered again.
	removed = true
	for _, h := range hosts {
		if err := tb.deletePolicy(ctx, h, pps); err != nil {
			return err
		}
	}
	if _, err := policyMatrix(ctx, tb, pps, all, 10*time.Second); err != nil {
		return fmt.Errorf("after the policy was removed: %w", err)
	}
	r.Observe("policy removed from the 4 hosts: all %d probes answered again", open)
	for _, pp := range pps {
		for _, dst := range pps {
			if pp.pod.Host[0] != dst.pod.Host[0] && pp.app == "web" && dst.app == "db" {
				r.AddFlow(Flow{From: PodEndpoint(pp.pod), To: PodEndpoint(dst.pod), VRF: "red", Encap: tenantEncap(tb.topo, "red"),
					Note: fmt.Sprintf("tcp/%d allowed, replies pass; tcp/%d, udp and icmp refused, both ways", policyPort, probePort)})
			}
		}
	}
	return nil
}

// policyCounted sends one more round under the tier policy and shows its
// refusals where they happened: each attachment point's denied counter
// rises by at least the probes refused there, read over gNMI before and
// after; and each host's acl-flows hold every probe refused there, with
// its verdict and attachment point, and the allowed flows, both
// directions, with the entries that accepted them.
func policyCounted(ctx context.Context, tb *Testbed, r *Report, pps []*policyPod, want policyWant) error {
	var guarded []*policyPod // the pods policy attaches to
	for _, pp := range pps {
		if pp.app != "other" {
			guarded = append(guarded, pp)
		}
	}
	readAll := func() (map[*policyPod]map[string]uint64, error) {
		got := map[*policyPod]map[string]uint64{}
		for _, pp := range guarded {
			c, err := tb.aclDenied(ctx, pp.pod)
			if err != nil {
				return nil, err
			}
			got[pp] = c
		}
		return got, nil
	}
	before, err := readAll()
	if err != nil {
		return err
	}
	n, wrong := policyRound(ctx, tb, pps, want)
	if len(wrong) > 0 {
		return fmt.Errorf("counted round: %d of %d probes differ from the policy:\n  %s", len(wrong), n, strings.Join(wrong, "\n  "))
	}
	after, err := readAll()
	if err != nil {
		return err
	}
	refused := map[*policyPod]map[string]int{}
	for _, pp := range guarded {
		refused[pp] = map[string]int{}
	}
	for _, src := range pps {
		for _, dst := range pps {
			for _, pr := range policyProbes {
				if src != dst && !want(src, dst, pr) {
					at, dir := policyRefuser(src, dst)
					refused[at][dir]++
				}
			}
		}
	}
	for _, pp := range guarded {
		var parts []string
		for _, dir := range []string{"egress", "ingress"} {
			d := after[pp][dir] - before[pp][dir]
			if d < uint64(refused[pp][dir]) {
				return fmt.Errorf("%s (app=%s): %s-denied-packets rose by %d in a round that refused %d probes there",
					ident(pp.pod), pp.app, dir, d, refused[pp][dir])
			}
			parts = append(parts, fmt.Sprintf("%s-denied-packets +%d (%d probes refused)", dir, d, refused[pp][dir]))
		}
		r.Observe("%s (app=%s), one round: %s", ident(pp.pod), pp.app, strings.Join(parts, ", "))
	}
	flows := map[string][]aclFlow{}
	for _, h := range []string{"c1", "c2", "d1", "d2"} {
		f, err := tb.aclFlows(ctx, h, "red")
		if err != nil {
			return err
		}
		flows[h] = f
	}
	var missing []string
	nDenied, nAllowed := 0, 0
	for _, src := range pps {
		for _, dst := range pps {
			for _, pr := range policyProbes {
				if src == dst || (src.app == "other" && dst.app == "other") {
					continue
				}
				line := fmt.Sprintf("%s (%s) → %s (%s) %s", ident(src.pod), src.app, ident(dst.pod), dst.app, pr)
				if !want(src, dst, pr) {
					at, dir := policyRefuser(src, dst)
					denied := func(f aclFlow) bool {
						return (f.verdict == "DENY" || f.verdict == "REJECT") && strings.EqualFold(f.deniedAt, dir) && f.iface == podIfName(at.pod)
					}
					if !findFlow(flows[at.pod.Host], src.pod, dst.pod, pr, false, denied) {
						missing = append(missing, fmt.Sprintf("%s: no refused flow at %s's %s on %s", line, ident(at.pod), dir, at.pod.Host))
					}
					nDenied++
					continue
				}
				for _, side := range []struct {
					host, entry string
				}{{src.pod.Host, "tier-web-egress/10"}, {dst.pod.Host, "tier-db-ingress/10"}} {
					allowed := func(f aclFlow) bool { return f.verdict == "ALLOW" && strings.Contains(f.decidedBy, side.entry) }
					if !findFlow(flows[side.host], src.pod, dst.pod, pr, false, allowed) {
						missing = append(missing, fmt.Sprintf("%s: no flow on %s allowed by %s", line, side.host, side.entry))
					}
					if !findFlow(flows[side.host], dst.pod, src.pod, pr, true, func(f aclFlow) bool { return f.verdict == "ALLOW" }) {
						missing = append(missing, fmt.Sprintf("%s: no allowed reply flow on %s", line, side.host))
					}
				}
				nAllowed++
			}
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return fmt.Errorf("acl-flows of red on c1, c2, d1, d2 lack %d flows:\n  %s", len(missing), strings.Join(missing, "\n  "))
	}
	r.Observe("acl-flows of red on the 4 hosts: all %d refused probes as DENY at the pod and attachment point that refused them (egress of web or db, ingress of web or db after decapsulation); the %d web → db tcp/%d flows ALLOW by tier-web-egress/10 at the sender and tier-db-ingress/10 at the receiver, their replies ALLOW on both",
		nDenied, nAllowed, policyPort)
	return nil
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
