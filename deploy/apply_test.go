package deploy

import (
	"context"
	"strings"
	"testing"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"

	"github.com/isthmus-net/isthmus/kube/kubetest"
)

// applyChart creates every object helm template renders (CRDs first) on
// the cluster, with strict field validation, so an unknown or misplaced
// field is an error as well as anything the API server refuses.
func applyChart(t *testing.T, c *kubetest.Cluster, objs []object) {
	t.Helper()
	ctx := context.Background()
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "isthmus-system"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	for _, o := range objs {
		u := &unstructured.Unstructured{Object: o}
		gvk := u.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("%s %s: %v", gvk.Kind, u.GetName(), err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == "namespace" {
			ns := u.GetNamespace()
			if ns == "" {
				t.Errorf("%s %s is namespaced but the chart gives it no namespace", gvk.Kind, u.GetName())
				ns = "isthmus-system"
			}
			ri = dyn.Resource(m.Resource).Namespace(ns)
		}
		if _, err := ri.Create(ctx, u, metav1.CreateOptions{FieldValidation: "Strict"}); err != nil {
			t.Errorf("create %s %s: %v", gvk.Kind, u.GetName(), err)
		}
		if gvk.Kind == "CustomResourceDefinition" {
			waitEstablished(t, dyn, u.GetName())
			mapper.Reset() // the chart's objects of this kind come later
		}
	}
}

func waitEstablished(t *testing.T, dyn dynamic.Interface, name string) {
	t.Helper()
	gvr := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		u, err := dyn.Resource(gvr).Get(context.Background(), name, metav1.GetOptions{})
		if err == nil {
			conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
			for _, c := range conds {
				if m, _ := c.(map[string]any); m["type"] == "Established" && m["status"] == "True" {
					return
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("crd %s not established after 30s", name)
}

// TestChartAppliesToAPIServer: the rendered chart, CRDs included, is
// created on a real kube-apiserver, and the API server's RBAC authorizer
// grants the controller's service account what the controller does and
// nothing more.
func TestChartAppliesToAPIServer(t *testing.T) {
	cluster := kubetest.StartCluster(t)
	objs := render(t, "--include-crds")
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.kind()]++
	}
	for _, k := range []string{"CustomResourceDefinition", "DaemonSet", "Deployment", "ClusterRole", "Role", "VirtualNetwork"} {
		if kinds[k] == 0 {
			t.Fatalf("rendered chart has no %s: %v", k, kinds)
		}
	}
	applyChart(t, cluster, objs)
	if t.Failed() {
		return
	}

	sa := "system:serviceaccount:isthmus-system:isthmus-controller"
	for _, tc := range []struct {
		verb, group, resource, sub, ns, name string
		allowed                              bool
	}{
		{"watch", "", "nodes", "", "", "", true},
		{"list", "", "pods", "", "", "", true},
		{"watch", "discovery.k8s.io", "endpointslices", "", "", "", true},
		{"watch", "networking.k8s.io", "networkpolicies", "", "", "", true},
		{"create", "isthmus.dev", "virtualnetworks", "", "", "", true},
		{"update", "isthmus.dev", "virtualnetworks", "status", "", "red", true},
		{"patch", "isthmus.dev", "virtualnetworks", "status", "", "red", true},
		{"patch", "isthmus.dev", "virtualnetworks", "", "", "red", false},
		{"create", "coordination.k8s.io", "leases", "", "isthmus-system", "", true},
		{"update", "coordination.k8s.io", "leases", "", "isthmus-system", "isthmus-controller", true},
		{"update", "coordination.k8s.io", "leases", "", "isthmus-system", "someone-else", false},
		{"update", "coordination.k8s.io", "leases", "", "kube-system", "isthmus-controller", false},
		{"update", "", "nodes", "", "", "node1", false},
		{"patch", "", "nodes", "status", "", "node1", true},
		{"update", "", "nodes", "status", "", "node1", false},
		{"create", "", "pods", "", "default", "", false},
		{"create", "", "events", "", "shop", "", true},
		{"get", "", "secrets", "", "isthmus-system", "isthmus-gnmi", false},
		{"delete", "", "namespaces", "", "", "default", false},
	} {
		r, err := cluster.Client.AuthorizationV1().SubjectAccessReviews().Create(context.Background(), &authzv1.SubjectAccessReview{
			Spec: authzv1.SubjectAccessReviewSpec{User: sa, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:isthmus-system", "system:authenticated"},
				ResourceAttributes: &authzv1.ResourceAttributes{Verb: tc.verb, Group: tc.group, Resource: tc.resource, Subresource: tc.sub, Namespace: tc.ns, Name: tc.name}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		what := strings.TrimSpace(strings.Join([]string{tc.verb, tc.group, tc.resource, tc.sub, tc.ns, tc.name}, " "))
		if r.Status.Allowed != tc.allowed {
			t.Errorf("controller may %s: %v, want %v (%s)", what, r.Status.Allowed, tc.allowed, r.Status.Reason)
		}
	}
}
