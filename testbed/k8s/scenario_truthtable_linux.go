package k8s

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/isthmus-net/isthmus/kube/netpoltest"
)

// Truth-table timing. A probe unanswered within truthProbeTimeout counts
// as denied (the policies drop, they do not reject). Once both nodes hold
// a case's isolation, a matrix that differs from the table is probed again
// until truthSettle has passed (the controller may still be handing the
// nodes a later pass of the same case); past that the case fails.
const (
	truthProbeTimeout = 500 * time.Millisecond
	truthSettle       = 10 * time.Second
)

// maxShownMismatches is how many differing probes a failed case lists.
const maxShownMismatches = 16

// truthBlock is red's subnet (redNetwork), which holds every pod address
// of the table: the cases' ipBlocks are written against it.
var truthBlock = netip.MustParsePrefix("10.1.1.0/24")

// truthLabel marks the table's NetworkPolicies, so one delete removes a
// case's.
const truthLabel = "isthmus.dev/truth-table"

// truthNode spreads the table's pods over c1 and c2, alternating, so
// that pairs of every kind (same namespace or not, same node or not)
// occur: x/a c1, x/b c2, x/c c1, y/a c2, ...
func truthNode(ns, name string) string {
	i := slices.Index(netpoltest.Namespaces, ns) + slices.Index(netpoltest.Pods, name)
	return []string{"c1", "c2"}[i%2]
}

// NetpolTruthTable is the NetworkPolicy truth table through the kubelet
// cluster, run after DaemonSetMission (the chart's isthmusd, controller
// and VirtualNetwork red in place): namespaces x, y and z on network red,
// with pods a, b and c each made by the kubelets of c1 and c2 from the
// podserver image (TCP and UDP identity on 80 and 81); then for every case
// of kube/netpoltest, its NetworkPolicies applied with kubectl, and the
// full matrix of TCP and UDP probes between every ordered pair of pods,
// sent from inside the pods, must match what the reference evaluator says,
// exactly.
func NetpolTruthTable(ctx context.Context, e *Env) (err error) {
	start := time.Now()
	c := e.Cluster
	f, err := e.truthPods(ctx)
	if err != nil {
		return err
	}
	var where []string
	for _, p := range f.Pods {
		where = append(where, fmt.Sprintf("%s/%s %s %s", p.Namespace, p.Name, p.Status.PodIP, p.Spec.NodeName))
	}
	e.say("namespaces x, y, z (network red), pods a, b, c each, through the kubelets in %s: %s", time.Since(start).Round(100*time.Millisecond), strings.Join(where, ", "))

	probers := make([]*prober, len(f.Pods))
	defer func() {
		for _, p := range probers {
			if p != nil {
				err = errors.Join(err, p.close())
			}
		}
	}()
	for i, p := range f.Pods {
		if probers[i], err = c.startProber(ctx, p, truthProbeTimeout); err != nil {
			return err
		}
	}
	plan := truthPlan(f)
	probes := len(plan) * len(plan[0])

	// Before any policy every pod reaches every other (across the nodes too,
	// once BGP has carried the routes).
	all := f.Expected(nil)
	if _, err := e.settleTruth(ctx, probers, plan, all, 60*time.Second); err != nil {
		return fmt.Errorf("truth table before any policy: %w", err)
	}
	tableStart := time.Now()
	var failed []string
	policies, had := 0, false
	for _, tc := range netpoltest.Cases() {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("truth table at case %q: %w", tc.Name, err)
		}
		pols := tc.Policies(f)
		caseStart := time.Now()
		if err := e.applyTruthCase(ctx, pols, had); err != nil {
			return fmt.Errorf("case %q: %w", tc.Name, err)
		}
		policies, had = policies+len(pols), len(pols) > 0
		if err := e.waitIsolation(ctx, f, pols); err != nil {
			return fmt.Errorf("case %q: %w", tc.Name, err)
		}
		landed := time.Since(caseStart)
		want := f.Expected(pols)
		rounds, err := e.settleTruth(ctx, probers, plan, want, truthSettle)
		if err != nil {
			failed = append(failed, fmt.Sprintf("case %q: %v", tc.Name, err))
			e.say("case %q: FAIL: %v", tc.Name, err)
			continue
		}
		allowed := 0
		for _, ok := range want {
			if ok {
				allowed++
			}
		}
		e.say("case %q: %s, on both nodes in %s; %d probes (%d allowed) match in %s, %s in all",
			tc.Name, count(len(pols), "policy", "policies"), landed.Round(100*time.Millisecond), probes, allowed,
			count(rounds, "round", "rounds"), time.Since(caseStart).Round(100*time.Millisecond))
	}
	if had {
		if _, err := c.Kubectl(ctx, "delete", "networkpolicy", "-A", "-l", truthLabel); err != nil {
			return err
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("the truth table differs in %d of %d cases:\n%s", len(failed), len(netpoltest.Cases()), strings.Join(failed, "\n"))
	}
	e.say("truth table: %d cases, %d NetworkPolicies applied with kubectl, %d probes each (TCP and UDP, ports 80 and 81, every ordered pair of the %d pods, c1 ↔ c2 across the tunnel), all as the reference evaluator says; %s for the cases, %s in all",
		len(netpoltest.Cases()), policies, probes, len(f.Pods), time.Since(tableStart).Round(100*time.Millisecond), time.Since(start).Round(100*time.Millisecond))
	return nil
}

// truthPods creates the table's namespaces (labelled for network red) and
// pods, waits for the controller to map the namespaces on both nodes and
// for every pod to be Ready, and returns the fixture with their addresses.
func (e *Env) truthPods(ctx context.Context) (*netpoltest.Fixture, error) {
	c := e.Cluster
	for _, ns := range netpoltest.Namespaces {
		if _, err := c.Kubectl(ctx, "create", "namespace", ns); err != nil {
			return nil, err
		}
		if _, err := c.Kubectl(ctx, "label", "namespace", ns, "ns="+ns, "isthmus.dev/network=red"); err != nil {
			return nil, err
		}
	}
	if err := e.waitNamespacesMapped(ctx, netpoltest.Namespaces, "red"); err != nil {
		return nil, err
	}
	var items []any
	for _, ns := range netpoltest.Namespaces {
		for _, name := range netpoltest.Pods {
			items = append(items, truthPod(ns, name))
		}
	}
	if err := c.applyObjects(ctx, "truth-pods.json", items); err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	defer cancel()
	addrs := map[string]netip.Addr{}
	if err := poll(wctx, "the truth table's 9 pods Ready", func() (bool, error) {
		for _, ns := range netpoltest.Namespaces {
			pods, err := e.readyPods(wctx, ns, "")
			if err != nil {
				return false, err
			}
			for _, p := range pods {
				addrs[ns+"/"+p.Name] = mustAddr(p.Status.PodIP)
			}
		}
		return len(addrs) == len(netpoltest.Namespaces)*len(netpoltest.Pods), fmt.Errorf("%d ready", len(addrs))
	}); err != nil {
		return nil, err
	}
	f := netpoltest.NewFixture(truthBlock, func(ns, name string) netip.Addr { return addrs[ns+"/"+name] })
	for _, p := range f.Pods {
		if !truthBlock.Contains(addrs[p.Namespace+"/"+p.Name]) {
			return nil, fmt.Errorf("pod %s/%s has %s, outside %s", p.Namespace, p.Name, addrs[p.Namespace+"/"+p.Name], truthBlock)
		}
		p.Spec.NodeName = truthNode(p.Namespace, p.Name)
	}
	return f, nil
}

// truthPod is the table's pod ns/name (labels and named ports as
// netpoltest.NewPod) running podserver with identity listeners on the
// table's ports, on its node.
func truthPod(ns, name string) *corev1.Pod {
	p := netpoltest.NewPod(ns, name, netip.Addr{})
	p.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}
	var ports []string
	for _, port := range netpoltest.Ports {
		ports = append(ports, fmt.Sprint(port))
	}
	grace := int64(1)
	p.Spec.NodeName = truthNode(ns, name)
	p.Spec.TerminationGracePeriodSeconds = &grace
	ct := &p.Spec.Containers[0]
	ct.Image, ct.ImagePullPolicy = PodImage, corev1.PullNever
	ct.Command = []string{"/usr/local/bin/podserver", "serve", "-identity", strings.Join(ports, ",")}
	ct.Env = []corev1.EnvVar{
		{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
	}
	return p
}

// applyTruthCase replaces the table's NetworkPolicies with pols: `kubectl
// delete` of the previous case's (when it had any), `kubectl apply` of
// these.
func (e *Env) applyTruthCase(ctx context.Context, pols []*networkingv1.NetworkPolicy, had bool) error {
	c := e.Cluster
	if had {
		if _, err := c.Kubectl(ctx, "delete", "networkpolicy", "-A", "-l", truthLabel, "--wait=false"); err != nil {
			return err
		}
	}
	if len(pols) == 0 {
		return nil
	}
	items := make([]any, len(pols))
	for i, p := range pols {
		p = p.DeepCopy()
		p.TypeMeta = metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"}
		p.Labels = map[string]string{truthLabel: "true"}
		items[i] = p
	}
	return c.applyObjects(ctx, "truth-policies.json", items)
}

// applyObjects writes items as a v1 List to file in the cluster's
// directory and applies it with kubectl.
func (c *Cluster) applyObjects(ctx context.Context, file string, items []any) error {
	js, err := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "List", "items": items})
	if err != nil {
		return fmt.Errorf("encode %s: %w", file, err)
	}
	path := filepath.Join(c.Dir, file)
	if err := os.WriteFile(path, js, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	_, err = c.Kubectl(ctx, "apply", "-f", path)
	return err
}

// settleTruth probes the whole matrix until it matches want, for at most
// settle; it returns the number of rounds, or the last mismatches.
func (e *Env) settleTruth(ctx context.Context, probers []*prober, plan [][]truthProbe, want map[string]bool, settle time.Duration) (int, error) {
	deadline := time.Now().Add(settle)
	for rounds := 1; ; rounds++ {
		got, err := probeRound(ctx, probers, plan)
		if err != nil {
			return rounds, err
		}
		diff := truthMismatches(plan, want, got)
		if len(diff) == 0 {
			return rounds, nil
		}
		if time.Now().After(deadline) {
			shown := diff
			if len(shown) > maxShownMismatches {
				shown = append(shown[:maxShownMismatches:maxShownMismatches], fmt.Sprintf("(and %d more)", len(diff)-maxShownMismatches))
			}
			return rounds, fmt.Errorf("%d probes differ from the truth table after %d rounds over %s:\n  %s",
				len(diff), rounds, settle, strings.Join(shown, "\n  "))
		}
		select {
		case <-ctx.Done():
			return rounds, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitIsolation waits until the pod interfaces on c1 and c2 have ACL sets
// attached exactly as the reference evaluator isolates the pods (ingress,
// egress): the nodes hold the case.
func (e *Env) waitIsolation(ctx context.Context, f *netpoltest.Fixture, pols []*networkingv1.NetworkPolicy) error {
	want := f.Isolation(pols)
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return poll(wctx, "the nodes isolating the pods as the policies say", func() (bool, error) {
		have := map[string][2]bool{}
		for _, n := range e.Cluster.nodeNames {
			iso, err := e.podIsolation(wctx, n)
			if err != nil {
				return false, err
			}
			for k, v := range iso {
				have[k] = v
			}
		}
		var diff []string
		for k, w := range want {
			if h, ok := have[k]; !ok || h != w {
				diff = append(diff, fmt.Sprintf("%s (ingress, egress) %v, want %v", k, h, w))
			}
		}
		slices.Sort(diff)
		if len(diff) > 0 {
			return false, errors.New(strings.Join(diff, "; "))
		}
		return true, nil
	})
}

// podIsolation reads node's pod interfaces over gNMI (the chart's
// isthmusd, TLS) and returns, by "namespace/name", whether each has
// ingress and egress ACL sets attached.
func (e *Env) podIsolation(ctx context.Context, node string) (map[string][2]bool, error) {
	n, err := e.Cluster.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get node %s: %w", node, err)
	}
	out, err := e.gnmiGetTLS(ctx, node, nodeInternalIP(n)+":9339", "/interfaces")
	if err != nil {
		return nil, err
	}
	var resp any
	if err := json.Unmarshal(out, &resp); err != nil {
		return nil, fmt.Errorf("parse /interfaces of %s: %w", node, err)
	}
	iso := map[string][2]bool{}
	collectIsolation(resp, iso)
	return iso, nil
}

// collectIsolation walks gnmic's JSON for pod interfaces (objects whose
// config holds pod/namespace and pod/name) and notes whether each has
// acl/config/ingress-acl-set and egress-acl-set; module prefixes of keys
// ("isthmus-interfaces:config") are ignored.
func collectIsolation(v any, out map[string][2]bool) {
	switch v := v.(type) {
	case []any:
		for _, x := range v {
			collectIsolation(x, out)
		}
	case map[string]any:
		pod := field(field(v, "config"), "pod")
		ns, _ := field(pod, "namespace").(string)
		name, _ := field(pod, "name").(string)
		if name != "" {
			acl := field(field(v, "acl"), "config")
			in, _ := field(acl, "ingress-acl-set").([]any)
			eg, _ := field(acl, "egress-acl-set").([]any)
			out[ns+"/"+name] = [2]bool{len(in) > 0, len(eg) > 0}
			return
		}
		for _, x := range v {
			collectIsolation(x, out)
		}
	}
}

// field returns v's member key, with or without a module prefix.
func field(v any, key string) any {
	m, ok := v.(map[string]any)
	if !ok {
		return nil
	}
	for k, x := range m {
		if _, local, _ := strings.Cut(k, ":"); k == key || local == key {
			return x
		}
	}
	return nil
}

// waitNamespacesMapped waits until every node's isthmusd maps each of
// namespaces to vrf under /cni/namespaces (the controller's entry, without
// which the CNI plugin refuses the namespace's pods).
func (e *Env) waitNamespacesMapped(ctx context.Context, namespaces []string, vrf string) error {
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	return poll(wctx, fmt.Sprintf("namespaces %v mapped to %s on every node", namespaces, vrf), func() (bool, error) {
		for _, node := range e.Cluster.nodeNames {
			n, err := e.Cluster.Client.CoreV1().Nodes().Get(wctx, node, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			out, err := e.gnmiGetTLS(wctx, node, nodeInternalIP(n)+":9339", "/cni/namespaces")
			if err != nil {
				return false, err
			}
			for _, ns := range namespaces {
				if !strings.Contains(string(out), `"`+ns+`"`) {
					return false, fmt.Errorf("%s does not map %s yet", node, ns)
				}
			}
		}
		return true, nil
	})
}

// count is n and the noun in the number n asks for.
func count(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
