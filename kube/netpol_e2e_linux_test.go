package kube_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/isthmus-net/isthmus/kube"
	"github.com/isthmus-net/isthmus/kube/apis/v1alpha1"
	"github.com/isthmus-net/isthmus/kube/kubetest"
	"github.com/isthmus-net/isthmus/kube/netpoltest"
)

// Probe timing: a probe that gets no answer within probeTimeout counts as
// denied. Once the node holds a case's configuration, a matrix that
// differs from the truth table is probed again until probeDeadline (the
// dataplane applies a commit asynchronously, within well under that).
const (
	probeTimeout  = 400 * time.Millisecond
	probeDeadline = 3 * time.Second
)

// TestNetworkPolicyTruthTable: namespaces x, y and z with pods a, b and c
// each, attached through the real CNI plugin to two real isthmusd nodes
// (a and b on node-0, c on node-1; the nodes learn each other's pods over
// BGP through a real route reflector), whose eBPF forwarders carry their
// traffic, across the tunnel between the nodes too. For every case of the
// truth table (netpoltest.Cases: ingress, egress, both, pod and namespace
// selectors, ipBlock with except, named and numbered ports, port ranges,
// default deny, allow-all), the controller translates the case's
// NetworkPolicies and the full matrix of TCP and UDP probes on ports 80
// and 81 between every ordered pair of pods matches what the reference
// evaluator says.
func TestNetworkPolicyTruthTable(t *testing.T) {
	e := newEnv(t, 2)
	n0, n1 := e.nodes[0], e.nodes[1]
	cfg := e.withReflector(t)
	e.runController(cfg)
	subnet := netip.MustParsePrefix("10.77.0.0/16")
	e.mustCreateNetwork(network("pol", 300, "65000:300", subnet.String()))
	for _, ns := range netpoltest.Namespaces {
		e.createNamespace(ns, map[string]string{"ns": ns, v1alpha1.NetworkLabel: "pol"})
	}
	e.waitVRF(e.nodes, "pol", true, 30*time.Second)
	for _, ns := range netpoltest.Namespaces {
		e.waitNamespaceMapping(ns, "pol", 20*time.Second)
	}

	pods := map[string]*kubetest.Pod{}
	addrs := map[string]netip.Addr{}
	for _, ns := range netpoltest.Namespaces {
		for _, name := range netpoltest.Pods {
			nd := n0
			if name == "c" {
				nd = n1
			}
			p := e.attachPod(nd, netpoltest.NewPod(ns, name, netip.Addr{}))
			for _, port := range netpoltest.Ports {
				p.Serve(t, int(port))
			}
			pods[ns+"/"+name], addrs[ns+"/"+name] = p, p.Addr
		}
	}
	f := netpoltest.NewFixture(subnet, func(ns, name string) netip.Addr { return addrs[ns+"/"+name] })
	// Every pod reaches every other, across the nodes too, before any policy.
	all := f.Expected(nil)
	eventually(t, 30*time.Second, func() (bool, string) {
		diff := truthDiff(all, probeMatrix(t, f, pods))
		return diff == "", "before any policy (routes over BGP):\n" + diff
	})

	for _, tc := range netpoltest.Cases() {
		pols := tc.Policies(f)
		e.replacePolicies(pols)
		want := f.Expected(pols)
		start := time.Now()
		waitPolicyConfig(t, e.nodes, kube.NetpolExpectedSets(f, pols), f.Isolation(pols))
		configured := time.Since(start)
		var diff string
		for probing := time.Now(); ; {
			got := probeMatrix(t, f, pods)
			if diff = truthDiff(want, got); diff == "" || time.Since(probing) > probeDeadline {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		allowed := 0
		for _, ok := range want {
			if ok {
				allowed++
			}
		}
		if diff != "" {
			t.Errorf("case %q: the nodes hold the policy (after %v), but %v later the probes still differ from the truth table:\n%s",
				tc.Name, configured.Round(time.Millisecond), probeDeadline, diff)
			continue
		}
		t.Logf("case %q: configured in %v, %d probes (%d allowed) match after %v", tc.Name, configured.Round(time.Millisecond),
			len(want), allowed, time.Since(start).Round(time.Millisecond))
	}
}

// waitPolicyConfig waits until the nodes hold, together, exactly the
// controller's ACL sets wanted (name → JSON) and their pod interfaces have
// sets attached as isolation says (pod → ingress, egress).
func waitPolicyConfig(t *testing.T, nodes []*kubetest.Node, want map[string]string, isolation map[string][2]bool) {
	t.Helper()
	eventually(t, 20*time.Second, func() (bool, string) {
		have := map[string]string{}
		seen := 0
		for _, nd := range nodes {
			pc, err := readPolicyConfig(nd)
			if err != nil {
				return false, err.Error()
			}
			if pc.acl.AclSets != nil {
				for name, s := range pc.acl.AclSets.AclSet {
					if strings.HasPrefix(name, "k8s/") {
						have[name] = kube.ACLSetJSON(s)
					}
				}
			}
			for key, i := range pc.pods {
				w, ok := isolation[key]
				if !ok {
					continue
				}
				seen++
				cf := i.GetAcl().GetConfig()
				if got := [2]bool{len(cf.GetIngressAclSet()) > 0, len(cf.GetEgressAclSet()) > 0}; got != w {
					return false, fmt.Sprintf("interface of %s on %s: isolated (ingress, egress) %v, want %v", key, nd.Name, got, w)
				}
				if ns, _, _ := strings.Cut(key, "/"); tagsOf(i.GetTags())["k8s.ns/kubernetes.io/metadata.name"] != ns {
					return false, fmt.Sprintf("interface of %s on %s: tags %v", key, nd.Name, tagsOf(i.GetTags()))
				}
			}
		}
		for name, js := range want {
			if have[name] != js {
				return false, fmt.Sprintf("set %s on the nodes:\n%s\nwant:\n%s", name, have[name], js)
			}
		}
		if len(have) != len(want) {
			return false, fmt.Sprintf("nodes have %d controller sets, want %d", len(have), len(want))
		}
		return seen == len(isolation), fmt.Sprintf("%d pod interfaces, want %d", seen, len(isolation))
	})
}

// replacePolicies deletes every NetworkPolicy of the truth table's
// namespaces and creates pols.
func (e *env) replacePolicies(pols []*networkingv1.NetworkPolicy) {
	e.t.Helper()
	ctx := context.Background()
	for _, ns := range netpoltest.Namespaces {
		err := e.c.Client.NetworkingV1().NetworkPolicies(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		if err != nil {
			e.t.Fatal(err)
		}
	}
	for _, p := range pols {
		if _, err := e.c.Client.NetworkingV1().NetworkPolicies(p.Namespace).Create(ctx, p.DeepCopy(), metav1.CreateOptions{}); err != nil {
			e.t.Fatalf("create policy %s/%s: %v", p.Namespace, p.Name, err)
		}
	}
}

// probeMatrix sends every probe of the truth table at once and returns
// which were answered by the pod they were sent to.
func probeMatrix(t *testing.T, f *netpoltest.Fixture, pods map[string]*kubetest.Pod) map[string]bool {
	t.Helper()
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		got  = map[string]bool{}
		errs []string
	)
	for _, src := range f.Pods {
		for _, dst := range f.Pods {
			if src == dst {
				continue
			}
			for _, pr := range netpoltest.Probes {
				wg.Add(1)
				go func() {
					defer wg.Done()
					from := pods[src.Namespace+"/"+src.Name]
					answer, err := from.Probe(context.Background(), strings.ToLower(string(pr.Proto)),
						netip.MustParseAddr(dst.Status.PodIP), int(pr.Port), probeTimeout)
					mu.Lock()
					defer mu.Unlock()
					key := netpoltest.Key(src, dst, pr)
					switch {
					case err == kubetest.ErrNoAnswer:
						got[key] = false
					case err != nil:
						errs = append(errs, key+": "+err.Error())
					case answer != dst.Namespace+"/"+dst.Name:
						errs = append(errs, fmt.Sprintf("%s: answered by %q", key, answer))
					default:
						got[key] = true
					}
				}()
			}
		}
	}
	wg.Wait()
	if len(errs) > 0 {
		slices.Sort(errs)
		t.Fatalf("probes failed:\n%s", strings.Join(errs, "\n"))
	}
	return got
}

// truthDiff lists the probes whose outcome differs from want.
func truthDiff(want, got map[string]bool) string {
	var lines []string
	for k, w := range want {
		if g := got[k]; g != w {
			lines = append(lines, fmt.Sprintf("  %s: got %v, want %v", k, g, w))
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}
