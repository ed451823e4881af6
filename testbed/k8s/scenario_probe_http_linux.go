package k8s

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// hostAccessVRF is the VRF the probe-http scenario gives host access: shop's
// red (its pools overlap blue's, so only one of the two may have it).
const hostAccessVRF = "red"

// probeHTTP: an httpGet readiness probe is sent by the kubelet from the
// node's own stack to the pod's address, so it needs host access. A pod of
// shop (red, a tenant VRF: no host access by default) stays NotReady; with
// host-access set on red over gNMI on c1 and c2 it becomes Ready; once its
// server answers 503 it goes NotReady, and Ready again after. c1 and c2
// forward for it (as Kubernetes nodes do); forwarding and host access are
// turned off again at the end.
func probeHTTP(ctx context.Context, e *Env) error {
	c := e.Cluster
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "probed", Labels: map[string]string{"app": "probed"}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptrTo(int64(1)),
			Containers: []corev1.Container{{
				Name:    "podserver",
				Image:   PodImage,
				Command: []string{"/usr/local/bin/podserver", "serve"},
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}},
					PeriodSeconds:    1,
					TimeoutSeconds:   1,
					FailureThreshold: 1,
				},
			}},
		},
	}
	if _, err := c.Client.CoreV1().Pods("shop").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create pod shop/probed: %w", err)
	}
	defer func() {
		_, _ = c.Kubectl(context.WithoutCancel(ctx), "-n", "shop", "delete", "pod", "probed", "--grace-period=1", "--wait=true", "--timeout=30s")
	}()
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var p *corev1.Pod
	if err := poll(wctx, "pod shop/probed running", func() (bool, error) {
		var err error
		p, err = c.Client.CoreV1().Pods("shop").Get(wctx, "probed", metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "", err
	}); err != nil {
		return err
	}
	// Several probe periods with no path from the host to the pod.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(4 * time.Second):
	}
	if p, err := c.Client.CoreV1().Pods("shop").Get(ctx, "probed", metav1.GetOptions{}); err != nil {
		return fmt.Errorf("get pod shop/probed: %w", err)
	} else if podReady(p) {
		return fmt.Errorf("pod shop/probed %s on %s is Ready without host access to red", p.Status.PodIP, p.Spec.NodeName)
	}
	e.say("pod shop/probed %s on %s, httpGet :8080/healthz readiness probe, red without host access: Running, NotReady", p.Status.PodIP, p.Spec.NodeName)
	// A Kubernetes node forwards (the host-access path's FIB lookup
	// refuses otherwise); the testbed's hosts do not by default.
	for _, n := range c.nodeNames {
		if _, err := e.TB.Exec(ctx, n, "sysctl", "-qw", "net.ipv4.ip_forward=1"); err != nil {
			return fmt.Errorf("turn on forwarding on %s: %w", n, err)
		}
	}
	defer func() {
		for _, n := range c.nodeNames {
			_, _ = e.TB.Exec(context.WithoutCancel(ctx), n, "sysctl", "-qw", "net.ipv4.ip_forward=0")
		}
	}()
	if err := e.setHostAccess(ctx, hostAccessVRF, true); err != nil {
		return err
	}
	defer func() {
		if err := e.setHostAccess(context.WithoutCancel(ctx), hostAccessVRF, false); err != nil {
			e.say("remove host access: %v", err)
		}
	}()
	if err := e.waitReady(ctx, "shop", "probed", true); err != nil {
		for _, cmd := range [][]string{{"ip", "route", "get", p.Status.PodIP}, {"ip", "-d", "link", "show", "isthmus-host"}, {"sysctl", "net.ipv4.conf.all.rp_filter", "net.ipv4.ip_forward"}} {
			out, err := e.TB.Exec(ctx, p.Spec.NodeName, cmd...)
			e.say("%s: %v %s %v", p.Spec.NodeName, cmd, out, err)
		}
		return err
	}
	e.say("host-access true on red (gNMI, c1 and c2): the kubelet's probe from the node's stack passes, the pod is Ready")
	if _, err := c.Kubectl(ctx, "-n", "shop", "exec", "probed", "--", "/usr/local/bin/podserver", "unready"); err != nil {
		return err
	}
	if err := e.waitReady(ctx, "shop", "probed", false); err != nil {
		return err
	}
	e.say("kubectl exec probed -- podserver unready: /healthz answers 503, the pod is NotReady")
	if _, err := c.Kubectl(ctx, "-n", "shop", "exec", "probed", "--", "/usr/local/bin/podserver", "ready"); err != nil {
		return err
	}
	if err := e.waitReady(ctx, "shop", "probed", true); err != nil {
		return err
	}
	e.say("podserver ready: Ready again")
	return nil
}

// setHostAccess sets (on) or deletes (off) host-access of vrf on every
// node over gNMI (TLS with the chart's credentials when the chart runs
// isthmusd).
func (e *Env) setHostAccess(ctx context.Context, vrf string, on bool) error {
	c := e.Cluster
	gnmic := e.TB.Binaries().Gnmic
	path := "/network-instances/network-instance[name=" + vrf + "]/external"
	req, err := json.Marshal(map[string]any{"updates": []any{map[string]any{
		"path":     path + "/config",
		"encoding": "json_ietf",
		"value":    map[string]any{"host-access": true},
	}}})
	if err != nil {
		return fmt.Errorf("set host access of %s: %w", vrf, err)
	}
	file := filepath.Join(c.Dir, "host-access-"+vrf+".json")
	if err := os.WriteFile(file, req, 0o644); err != nil {
		return fmt.Errorf("set host access of %s: %w", vrf, err)
	}
	for _, n := range c.nodeNames {
		args := []string{"set", "--request-file", file}
		if !on {
			args = []string{"set", "--delete", path}
		}
		if c.ownMounts {
			// The chart's isthmusd: TLS with its credentials, on the
			// node's address.
			node, err := c.Client.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("get node %s: %w", n, err)
			}
			args = append([]string{gnmic, "-a", nodeInternalIP(node) + ":9339", "--skip-verify", "-u", "isthmus", "-p", c.GNMIPassword(),
				"--timeout", "5s", "-e", "json_ietf"}, args...)
			if _, err := e.TB.Exec(ctx, n, args...); err != nil {
				return fmt.Errorf("set host access of %s on %s to %v: %w", vrf, n, on, err)
			}
			continue
		}
		target, err := e.TB.GNMIAddr(n)
		if err != nil {
			return err
		}
		if _, err := e.TB.Gnmic(ctx, gnmic, n, target, args...); err != nil {
			return fmt.Errorf("set host access of %s on %s to %v: %w", vrf, n, on, err)
		}
	}
	return nil
}

func ptrTo[T any](v T) *T { return &v }
