package kube_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/isthmus-net/isthmus/kube"
	"github.com/isthmus-net/isthmus/kube/apis/v1alpha1"
)

// TestNamespaceIsolation: in namespace-isolation mode each namespace gets a
// network of its own, made from the default network, on every node; a
// labelled namespace joins the network it names instead; deleting the
// namespace removes its network from every node.
func TestNamespaceIsolation(t *testing.T) {
	e := newEnv(t, 2)
	cfg := e.config("a")
	cfg.NamespaceIsolation, cfg.DefaultNetwork = true, "pods"
	e.mustCreateNetwork(network("pods", 1, "65000:1", "10.244.0.0/16"))
	e.runController(cfg)

	e.createNamespace("team-a", nil)
	e.createNamespace("team-b", map[string]string{v1alpha1.NetworkLabel: "pods"})
	vrfs := e.waitVRF(e.nodes, "k8s-team-a", true, 30*time.Second)
	vn := e.network("k8s-team-a")
	rt := fmt.Sprintf("%d:%d", testAS, vn.Spec.RouteDistinguisher.Number)
	if vn.Labels[v1alpha1.IsolatedNamespaceLabel] != "team-a" || vn.Spec.Subnets[0] != "10.244.0.0/16" ||
		vn.Spec.ImportRouteTargets[0] != rt || vn.Spec.RouteDistinguisher.Number == 1 {
		t.Errorf("network of team-a: %+v %+v", vn.Labels, vn.Spec)
	}
	for _, nd := range e.nodes {
		if got := vrfs[nd.Name].GetConfig().ExportRouteTarget; len(got) != 1 || got[0] != rt {
			t.Errorf("%s: export RTs %v, want [%s]", nd.Name, got, rt)
		}
	}
	if e.network("k8s-team-b") != nil {
		t.Error("a labelled namespace got a network of its own")
	}
	e.waitCondition("pods", v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonAllNodesReady)
	if ns := e.network("pods").Status.Namespaces; len(ns) != 1 || ns[0] != "team-b" {
		t.Errorf("pods network namespaces %v, want [team-b]", ns)
	}

	if err := e.c.Client.CoreV1().Namespaces().Delete(context.Background(), "team-a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitVRF(e.nodes, "k8s-team-a", false, 30*time.Second)
	eventually(t, 20*time.Second, func() (bool, string) {
		return e.network("k8s-team-a") == nil, "network of the deleted namespace still exists"
	})
}

// TestNodeRestartConverges: a node that comes back with an empty data dir
// gets its VRFs again without any change in the cluster, and a node that
// was down while a network was made gets it when it comes back.
func TestNodeRestartConverges(t *testing.T) {
	e := newEnv(t, 2)
	e.runController(e.config("a"))
	e.mustCreateNetwork(network("red", 100, "65000:100", "10.1.0.0/16"))
	before := e.waitVRF(e.nodes, "red", true, 30*time.Second)

	nd := e.nodes[0]
	nd.Stop()
	nd.Restart(t, true)
	nd.StartBGP(t, testAS) // the node's startup config
	after := e.waitVRF(e.nodes[:1], "red", true, 30*time.Second)
	if a, b := after[nd.Name].GetConfig().GetRouteDistinguisher(), before[nd.Name].GetConfig().GetRouteDistinguisher(); a != b {
		t.Errorf("rd after restart %s, before %s", a, b)
	}
	for p := range before[nd.Name].AddressPools.AddressPool {
		if after[nd.Name].AddressPools.AddressPool[p] == nil {
			t.Errorf("block %s not restored (node keeps its block)", p)
		}
	}

	nd.Stop()
	e.mustCreateNetwork(network("blue", 200, "65000:200", "10.2.0.0/16"))
	e.waitVRF(e.nodes[1:], "blue", true, 30*time.Second)
	e.waitCondition("blue", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonNodesPending)
	e.waitNodeCondition(nd.Name, corev1.ConditionFalse, kube.NodeReasonUnreachable)
	nd.Restart(t, false)
	e.waitVRF(e.nodes, "blue", true, 30*time.Second)
	e.waitCondition("blue", v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonAllNodesReady)
	e.waitNodeCondition(nd.Name, corev1.ConditionTrue, kube.NodeReasonConfigured)
}

// TestLeaderFailover: of two replicas only the Lease holder ever sends a
// Set or holds the lead; when it stops, the other takes over and configures
// what changed meanwhile.
func TestLeaderFailover(t *testing.T) {
	e := newEnv(t, 2)
	cfgA, cfgB := e.config("a"), e.config("b")
	for _, c := range []*kube.Config{&cfgA, &cfgB} {
		c.LeaderElect = true
		c.LeaseDuration, c.RenewDeadline, c.RetryPeriod = 3*time.Second, 2*time.Second, 200*time.Millisecond
	}
	a, stopA := e.runController(cfgA)
	b, stopB := e.runController(cfgB)

	var both atomic.Bool
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			if a.Leading() && b.Leading() {
				both.Store(true)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()

	e.mustCreateNetwork(network("red", 100, "65000:100", "10.1.0.0/16"))
	e.waitVRF(e.nodes, "red", true, 30*time.Second)
	leader, follower, stopLeader := a, b, stopA
	if b.Leading() {
		leader, follower, stopLeader = b, a, stopB
	}
	if !leader.Leading() {
		t.Fatal("nobody leads")
	}
	if follower.SetCount() != 0 {
		t.Fatalf("follower sent %d Sets", follower.SetCount())
	}
	stopLeader()
	setsBefore := leader.SetCount()
	e.mustCreateNetwork(network("blue", 200, "65000:200", "10.2.0.0/16"))
	e.waitVRF(e.nodes, "blue", true, 30*time.Second)
	if !follower.Leading() {
		t.Error("the follower configured nodes without leading")
	}
	if leader.SetCount() != setsBefore {
		t.Error("the stopped leader sent Sets")
	}
	if both.Load() {
		t.Error("both replicas led at once")
	}
}
