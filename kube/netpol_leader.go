package kube

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// policyDistributor is the leader's policy half: it compiles every
// NetworkPolicy on each pass and hands each node's policyWorker the
// node's part. Owned by the leader's run goroutine.
type policyDistributor struct {
	workers map[string]*policyWorker
	// reported is the last set of translation errors logged.
	reported string
	// noticed is the notice (reason and message) last recorded as an
	// Event on each policy, by "namespace/name/uid".
	noticed map[string]string
}

// distributePolicy compiles the cluster's NetworkPolicies and gives every
// node with a gNMI address its policy configuration.
func (l *leader) distributePolicy(ctx context.Context, s snapshot, p plan) error {
	if l.pol == nil {
		l.pol = &policyDistributor{workers: map[string]*policyWorker{}, noticed: map[string]string{}}
	}
	c, err := l.policyCluster()
	if err != nil {
		return err
	}
	compiled, errs := compilePolicies(c)
	if msg := errs.String(); msg != l.pol.reported {
		l.pol.reported = msg
		if msg != "" {
			l.c.log.Warn("network policies not translated (the pods they select allow nothing through them)", "errors", msg)
		}
	}
	l.reportPolicies(ctx, policyNotices(c, errs))
	network := map[string]string{}
	for _, ns := range s.namespaces {
		network[ns.name] = networkOf(l.cfg, ns)
	}
	sharing := routeSharing(p)
	live := map[string]bool{}
	for _, nd := range s.nodes {
		if nd.gnmi == "" {
			continue
		}
		live[nd.name] = true
		wk := l.pol.workers[nd.name]
		if wk != nil && wk.addr != nd.gnmi {
			wk.stop()
			wk = nil
		}
		if wk == nil {
			wk = newPolicyWorker(nd.name, nd.gnmi, l.cfg, &l.c.sets)
			if err := wk.start(ctx); err != nil {
				l.c.log.Warn("start node policy worker", "node", nd.name, "err", err)
				continue
			}
			l.pol.workers[nd.name] = wk
		}
		onNode := p.nodes[nd.name].namespaces
		vrf := func(ns string) (string, bool) {
			if network[ns] == "" {
				return "", true
			}
			v, ok := onNode[ns]
			return v, ok
		}
		vrfs := p.nodes[nd.name].vrfs
		shared := func(ns string) []string {
			var out []string
			for _, o := range sharing[network[ns]] {
				if _, on := vrfs[o]; on {
					out = append(out, o)
				}
			}
			return out
		}
		wk.set(renderNodePolicy(c, compiled, nd.name, vrf, shared))
	}
	for name, wk := range l.pol.workers {
		if !live[name] {
			wk.stop()
			delete(l.pol.workers, name)
		}
	}
	return nil
}

// routeSharing maps each accepted network to the other accepted networks
// it shares routes with (one imports a route target the other exports,
// external access included), sorted: their pods reach each other with
// their own addresses, and render refuses overlapping subnets between
// them, so a pod's /32 scoped to such a network names that pod only.
func routeSharing(p plan) map[string][]string {
	exporters := map[string][]string{}
	for name, v := range p.networks {
		if v.accepted {
			_, exports := routeTargetsOf(v.vn)
			for _, rt := range exports {
				exporters[rt] = append(exporters[rt], name)
			}
		}
	}
	out := map[string][]string{}
	for name, v := range p.networks {
		if !v.accepted {
			continue
		}
		imports, _ := routeTargetsOf(v.vn)
		for _, rt := range imports {
			for _, o := range exporters[rt] {
				if o != name {
					out[name] = append(out[name], o)
					out[o] = append(out[o], name)
				}
			}
		}
	}
	for k, l := range out {
		slices.Sort(l)
		out[k] = slices.Compact(l)
	}
	return out
}

// stopPolicy stops every policy worker.
func (l *leader) stopPolicy() {
	if l.pol == nil {
		return
	}
	for _, wk := range l.pol.workers {
		wk.stop()
	}
}

// policyCluster reads policies, namespaces and pods from the listers.
func (l *leader) policyCluster() (*policyCluster, error) {
	pols, err := l.w.policies.List(labels.Everything())
	if err != nil {
		return nil, fmt.Errorf("list network policies: %w", err)
	}
	nss, err := l.w.namespaces.List(labels.Everything())
	if err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	c := &policyCluster{policies: pols, namespaces: make(map[string]map[string]string, len(nss)), excluded: map[string]bool{}}
	for _, ns := range nss {
		c.namespaces[ns.Name] = ns.Labels
	}
	// Pods of excluded namespaces stay in: they are peers (CoreDNS in
	// kube-system is the usual one), though never isolated.
	for _, ns := range l.cfg.ExcludedNamespaces {
		c.excluded[ns] = true
	}
	for _, o := range l.w.pods.List() {
		p, ok := o.(*corev1.Pod)
		if !ok || p.Spec.HostNetwork || p.Spec.NodeName == "" ||
			p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		c.pods = append(c.pods, policyPodOf(p))
	}
	slices.SortFunc(c.pods, func(a, b *policyPod) int {
		return strings.Compare(podKey(a.namespace, a.name), podKey(b.namespace, b.name))
	})
	return c, nil
}

// String lists the errors by policy, sorted ("" when none).
func (e policyErrors) String() string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(e)) {
		parts = append(parts, k+": "+e[k].Error())
	}
	return strings.Join(parts, "; ")
}
