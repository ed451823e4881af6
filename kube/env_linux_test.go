package kube_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/kube"
	"github.com/isthmus-net/isthmus/kube/apis/v1alpha1"
	"github.com/isthmus-net/isthmus/kube/kubetest"
)

const testAS = 65000

// env is one test's cluster, nodes and clients.
type env struct {
	t     testing.TB
	c     *kubetest.Cluster
	dyn   dynamic.Interface
	nodes []*kubetest.Node
}

func newEnv(t testing.TB, nodes int) *env {
	t.Helper()
	c := kubetest.StartCluster(t)
	c.InstallCRD(t)
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, c: c, dyn: dyn}
	if nodes > 0 {
		e.nodes = kubetest.StartNodes(t, "node", nodes)
		for _, nd := range e.nodes {
			nd.StartBGP(t, testAS)
			e.addNode(nd)
		}
	}
	return e
}

// addNode registers nd as a Kubernetes Node with its InternalIP.
func (e *env) addNode(nd *kubetest.Node) {
	e.t.Helper()
	ctx := context.Background()
	n, err := e.c.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nd.Name}}, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: nd.Addr.String()}}
	if _, err := e.c.Client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) config(identity string) kube.Config {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("KUBE_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("replica", identity)
	}
	return kube.Config{
		Logger:          log,
		Identity:        identity,
		LeaseNamespace:  "default",
		GNMI:            kube.GNMIConfig{Port: kubetest.GNMIPort, Username: kubetest.GNMIUser, Password: kubetest.GNMIPassword, SkipVerify: true},
		BGPAS:           testAS,
		RouteReflectors: []netip.Addr{netip.MustParseAddr("192.0.2.1")},
	}
}

// runController runs a controller until the returned stop is called (or
// the test ends).
func (e *env) runController(cfg kube.Config) (*kube.Controller, func()) {
	e.t.Helper()
	ctl, err := kube.New(e.c.Config, cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ctl.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			e.t.Error("controller did not stop within 30s")
		}
	}
	e.t.Cleanup(stop)
	return ctl, stop
}

func (e *env) createNetwork(vn *v1alpha1.VirtualNetwork) error {
	vn.APIVersion, vn.Kind = v1alpha1.SchemeGroupVersion.String(), v1alpha1.Kind
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(vn)
	if err != nil {
		return err
	}
	_, err = e.dyn.Resource(v1alpha1.GroupVersionResource).Create(context.Background(), &unstructured.Unstructured{Object: m}, metav1.CreateOptions{})
	return err
}

func (e *env) mustCreateNetwork(vn *v1alpha1.VirtualNetwork) {
	e.t.Helper()
	if err := e.createNetwork(vn); err != nil {
		e.t.Fatalf("create network %s: %v", vn.Name, err)
	}
}

// network reads a VirtualNetwork (nil when it does not exist).
func (e *env) network(name string) *v1alpha1.VirtualNetwork {
	e.t.Helper()
	u, err := e.dyn.Resource(v1alpha1.GroupVersionResource).Get(context.Background(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	vn := &v1alpha1.VirtualNetwork{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, vn); err != nil {
		e.t.Fatal(err)
	}
	return vn
}

func (e *env) deleteNetwork(name string) {
	e.t.Helper()
	if err := e.dyn.Resource(v1alpha1.GroupVersionResource).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) createNamespace(name string, labels map[string]string) {
	e.t.Helper()
	_, err := e.c.Client.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) createPod(ns, name, node string) {
	e.t.Helper()
	_, err := e.c.Client.CoreV1().Pods(ns).Create(context.Background(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{
			Name: "c", Image: "isthmus.dev/none:0", ImagePullPolicy: corev1.PullNever,
		}}},
	}, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) deletePod(ns, name string) {
	e.t.Helper()
	zero := int64(0)
	if err := e.c.Client.CoreV1().Pods(ns).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		e.t.Fatal(err)
	}
}

type vrfT = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance

// eventually polls cond every 50 ms for up to d and fails with its last
// message.
func eventually(t testing.TB, d time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	var msg string
	for {
		ok, m := cond()
		if ok {
			return
		}
		msg = m
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// vrfOn returns the VRF on a node (nil if absent).
func vrfOn(nd *kubetest.Node, name string) (*vrfT, error) {
	nis, err := nd.NetworkInstances()
	if err != nil {
		return nil, err
	}
	return nis[name], nil
}

// waitVRF waits until every node holds VRF name (present) or none does,
// and returns the VRFs by node.
func (e *env) waitVRF(nodes []*kubetest.Node, name string, present bool, d time.Duration) map[string]*vrfT {
	e.t.Helper()
	out := map[string]*vrfT{}
	eventually(e.t, d, func() (bool, string) {
		for _, nd := range nodes {
			v, err := vrfOn(nd, name)
			if err != nil {
				return false, fmt.Sprintf("read %s: %v", nd.Name, err)
			}
			if (v != nil) != present {
				return false, fmt.Sprintf("vrf %s on %s: present=%v, want %v", name, nd.Name, v != nil, present)
			}
			out[nd.Name] = v
		}
		return true, ""
	})
	return out
}

func condition(vn *v1alpha1.VirtualNetwork, typ string) *metav1.Condition {
	i := slices.IndexFunc(vn.Status.Conditions, func(c metav1.Condition) bool { return c.Type == typ })
	if i < 0 {
		return nil
	}
	return &vn.Status.Conditions[i]
}

// waitCondition waits for a condition of network name to have status and reason.
func (e *env) waitCondition(name, typ string, status metav1.ConditionStatus, reason string) *v1alpha1.VirtualNetwork {
	e.t.Helper()
	var vn *v1alpha1.VirtualNetwork
	eventually(e.t, 20*time.Second, func() (bool, string) {
		vn = e.network(name)
		if vn == nil {
			return false, "network " + name + " does not exist"
		}
		c := condition(vn, typ)
		if c == nil || c.Status != status || c.Reason != reason {
			return false, fmt.Sprintf("network %s condition %s = %+v, want %s/%s", name, typ, c, status, reason)
		}
		return true, ""
	})
	return vn
}

func network(name string, rd int32, rt string, subnets ...string) *v1alpha1.VirtualNetwork {
	return &v1alpha1.VirtualNetwork{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.VirtualNetworkSpec{
			RouteDistinguisher: v1alpha1.RouteDistinguisher{Number: rd},
			ImportRouteTargets: []string{rt},
			ExportRouteTargets: []string{rt},
			Subnets:            subnets,
			BlockSize:          24,
		},
	}
}

// waitNodeCondition waits for a node's IsthmusNetworkReady condition to have
// status and reason.
func (e *env) waitNodeCondition(node string, status corev1.ConditionStatus, reason string) {
	e.t.Helper()
	eventually(e.t, 30*time.Second, func() (bool, string) {
		n, err := e.c.Client.CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		for _, c := range n.Status.Conditions {
			if c.Type == kube.NodeConditionType {
				return c.Status == status && c.Reason == reason, fmt.Sprintf("node %s condition %+v, want %s/%s", node, c, status, reason)
			}
		}
		return false, "node " + node + " has no condition " + string(kube.NodeConditionType)
	})
}
