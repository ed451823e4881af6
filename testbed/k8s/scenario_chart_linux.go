package k8s

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// HelmBinary builds (or finds in its cache) the helm CLI pinned in
// tools/helm and returns its path.
func HelmBinary(ctx context.Context, repo string) (string, error) {
	out, err := exec.CommandContext(ctx, "bash", filepath.Join(repo, "tools", "helm", "build.sh")).Output()
	if err != nil {
		return "", fmt.Errorf("build helm: %w", exitDetail(err))
	}
	return filepath.Join(strings.TrimSpace(string(out)), "helm"), nil
}

// chart: Isthmus from deploy/ with `helm template | kubectl apply`: the
// controller (2 replicas) and the route reflector run as pods through the
// kubelets, the controller takes its Lease, accepts the chart's default
// VirtualNetwork, and configures the in-cluster route reflector over gNMI
// (TLS, the chart's credentials) with both Nodes as route-reflector
// clients.
func chart(ctx context.Context, e *Env) error {
	c := e.Cluster
	if e.Helm == "" || e.ChartImages == "" {
		return fmt.Errorf("chart: no helm binary or image archives (make images)")
	}
	start := time.Now()
	if err := c.InstallChart(ctx, e.Helm, e.ChartImages); err != nil {
		return err
	}
	e.say("helm template deploy/isthmus | kubectl apply: controller and route reflector rolled out in %s", time.Since(start).Round(100*time.Millisecond))
	out, err := c.Kubectl(ctx, "-n", ChartNamespace, "get", "pods", "-o", "wide")
	if err != nil {
		return err
	}
	e.say("$ kubectl -n %s get pods -o wide\n    %s", ChartNamespace, strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", "\n    "))
	pods, err := c.Client.CoreV1().Pods(ChartNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list chart pods: %w", err)
	}
	ready := map[string]int{}
	for _, p := range pods.Items {
		if podReady(&p) && p.Status.Phase == corev1.PodRunning {
			ready[p.Labels["app.kubernetes.io/component"]]++
		}
	}
	if ready["controller"] != 2 || ready["route-reflector"] != 1 {
		return fmt.Errorf("ready chart pods by component: %v, want 2 controllers and 1 route reflector", ready)
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var holder string
	if err := poll(wctx, "the controller's Lease held", func() (bool, error) {
		l, err := c.Client.CoordinationV1().Leases(ChartNamespace).Get(wctx, "isthmus-controller", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if l.Spec.HolderIdentity != nil {
			holder = *l.Spec.HolderIdentity
		}
		return holder != "", nil
	}); err != nil {
		return err
	}
	e.say("Lease %s/isthmus-controller held by %s", ChartNamespace, holder)
	if err := poll(wctx, "VirtualNetwork pods Accepted", func() (bool, error) {
		out, err := c.Kubectl(wctx, "get", "virtualnetwork", "pods", "-o", `jsonpath={.status.conditions[?(@.type=="Accepted")].status}`)
		return strings.TrimSpace(string(out)) == "True", err
	}); err != nil {
		return err
	}
	e.say("VirtualNetwork pods (the chart's default network): Accepted=True")
	var got string
	if err := poll(wctx, "the route reflector's clients 10.10.0.11 and 10.10.0.12", func() (bool, error) {
		out, err := e.gnmiGetTLS(wctx, "c1", "10.10.0.11:9340", "/network-instances/network-instance[name=default]/protocols")
		got = string(out)
		return strings.Contains(got, `"10.10.0.11"`) && strings.Contains(got, `"10.10.0.12"`) && strings.Contains(got, "route-reflector-client"), err
	}); err != nil {
		return fmt.Errorf("%w\n%s", err, got)
	}
	e.say("the route reflector pod (isthmusd role rr on c1, gNMI over TLS with the chart's credentials) has Nodes 10.10.0.11 and 10.10.0.12 as route-reflector clients, set by the controller pod")
	return nil
}

// gnmiGetTLS reads path from a chart-run isthmusd (TLS with its
// self-signed certificate, user isthmus) with gnmic from inside node.
func (e *Env) gnmiGetTLS(ctx context.Context, node, target, path string) ([]byte, error) {
	return e.TB.Exec(ctx, node, e.TB.Binaries().Gnmic, "-a", target, "--skip-verify", "-u", "isthmus", "-p", e.Cluster.GNMIPassword(),
		"--timeout", "5s", "-e", "json_ietf", "get", "--type", "config", "--path", path)
}
