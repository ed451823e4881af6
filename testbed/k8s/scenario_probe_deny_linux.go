package k8s

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// denyAllPolicy isolates the pods labelled app=probed of %[1]s for
// ingress and egress, with no rule: no peer is allowed, the pod's own node
// included.
const denyAllPolicy = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: probed-deny-all, namespace: %[1]s}
spec:
  podSelector: {matchLabels: {app: probed}}
  policyTypes: [Ingress, Egress]
`

// probeHold is how long a probed pod under deny-all must stay Ready with
// no restart once it is Ready: several periods of both probes.
const probeHold = 6 * time.Second

// probeDeny (chart mode, after netpol): a pod of ns with an httpGet
// readiness probe and a tcpSocket liveness probe, under a NetworkPolicy
// denying all its ingress and egress with no rule for the node, becomes
// Ready and stays Ready without restarts (Kubernetes: a pod's own node
// always reaches it; the kubelet probes from the node's stack, through host
// access of red); meanwhile the node holds both isolations, the pod
// reaches no other pod (web, unisolated) and red's DC pod gets no answer
// from it.
func (e *Env) probeDeny(ctx context.Context, ns string, web corev1.Pod) error {
	c := e.Cluster
	pol := filepath.Join(c.Dir, "probed-deny-all.yaml")
	if err := os.WriteFile(pol, []byte(fmt.Sprintf(denyAllPolicy, ns)), 0o644); err != nil {
		return fmt.Errorf("write policy: %w", err)
	}
	if _, err := c.Kubectl(ctx, "apply", "-f", pol); err != nil {
		return err
	}
	defer func() {
		_, _ = c.Kubectl(context.WithoutCancel(ctx), "delete", "-f", pol, "--wait=false")
	}()
	// Host access before the pod exists: its CNI ADD commits the
	// attachment before the pod's link is up, and the host route follows
	// once it is (a pod in a VRF that already had host access could not
	// start before 6934ece).
	restore, err := e.forwarding(ctx)
	if err != nil {
		return err
	}
	defer restore()
	if err := e.setHostAccess(ctx, hostAccessVRF, true); err != nil {
		return err
	}
	defer func() {
		if err := e.setHostAccess(context.WithoutCancel(ctx), hostAccessVRF, false); err != nil {
			e.say("remove host access: %v", err)
		}
	}()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "probed", Labels: map[string]string{"app": "probed"}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptrTo(int64(1)),
			Containers: []corev1.Container{{
				Name:            "podserver",
				Image:           PodImage,
				ImagePullPolicy: corev1.PullNever,
				Command:         []string{"/usr/local/bin/podserver", "serve"},
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}},
					PeriodSeconds:    1,
					TimeoutSeconds:   1,
					FailureThreshold: 1,
				},
				// From 4 s on: the host route follows the pod's link up.
				LivenessProbe: &corev1.Probe{
					ProbeHandler:        corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8080)}},
					InitialDelaySeconds: 4,
					PeriodSeconds:       1,
					TimeoutSeconds:      1,
					FailureThreshold:    1,
				},
			}},
		},
	}
	if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create pod %s/probed: %w", ns, err)
	}
	defer func() {
		_, _ = c.Kubectl(context.WithoutCancel(ctx), "-n", ns, "delete", "pod", "probed", "--grace-period=1", "--wait=true", "--timeout=30s")
	}()
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var p *corev1.Pod
	if err := poll(wctx, "pod "+ns+"/probed running", func() (bool, error) {
		var err error
		p, err = c.Client.CoreV1().Pods(ns).Get(wctx, "probed", metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "", err
	}); err != nil {
		return err
	}
	if err := poll(wctx, fmt.Sprintf("%s isolating %s/probed for ingress and egress", p.Spec.NodeName, ns), func() (bool, error) {
		iso, err := e.podIsolation(wctx, p.Spec.NodeName)
		return err == nil && iso[ns+"/probed"] == [2]bool{true, true}, err
	}); err != nil {
		return err
	}
	if err := e.waitReady(ctx, ns, "probed", true); err != nil {
		return fmt.Errorf("under deny-all, with host access: %w", err)
	}
	// Every probe of the hold must pass: one failed readiness probe makes
	// the pod NotReady, one failed liveness probe restarts it.
	q, err := c.Client.CoreV1().Pods(ns).Get(ctx, "probed", metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get pod %s/probed: %w", ns, err)
	}
	base := restarts(q)
	deadline := time.Now().Add(probeHold)
	for time.Now().Before(deadline) {
		q, err = c.Client.CoreV1().Pods(ns).Get(ctx, "probed", metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("get pod %s/probed: %w", ns, err)
		}
		if !podReady(q) {
			return fmt.Errorf("pod %s/probed went NotReady under deny-all", ns)
		}
		if n := restarts(q); n > base {
			return fmt.Errorf("pod %s/probed restarted %d times while Ready under deny-all (tcpSocket liveness probe)", ns, n-base)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	e.say("NetworkPolicy %s/probed-deny-all (Ingress and Egress, no rule), host access on red: pod probed %s on %s, isolated both ways on its node, is Ready and stays Ready %s with no restart (httpGet :8080/healthz readiness, tcpSocket :8080 liveness, every second; egress-node-packets %s)",
		ns, p.Status.PodIP, p.Spec.NodeName, probeHold, e.egressNodePackets(ctx, p.Spec.NodeName, ns, "probed"))
	url := "http://" + web.Status.PodIP + ":8080/healthz"
	if _, err := c.Kubectl(ctx, "-n", ns, "exec", "probed", "--", "/usr/local/bin/podserver", "probe", url); err == nil {
		return fmt.Errorf("%s/probed reached %s under deny-all egress", ns, url)
	}
	dc := e.DC[hostAccessVRF]
	hctx, hcancel := context.WithTimeout(ctx, 2*time.Second)
	defer hcancel()
	if _, err := HTTPGet(hctx, dc, "http://"+p.Status.PodIP+":8080/"); err == nil {
		return fmt.Errorf("%s reached %s/probed under deny-all ingress", dc.Name, ns)
	}
	e.say("meanwhile probed does not reach %s (%s), and red's DC pod gets no answer from it", web.Name, url)
	return nil
}

// forwarding turns IPv4 forwarding on on every node (a Kubernetes node
// forwards; host access's FIB lookup refuses otherwise) and returns what
// puts each node's setting back.
func (e *Env) forwarding(ctx context.Context) (func(), error) {
	was := map[string]string{}
	restore := func() {
		for n, v := range was {
			_, _ = e.TB.Exec(context.WithoutCancel(ctx), n, "sysctl", "-qw", "net.ipv4.ip_forward="+v)
		}
	}
	for _, n := range e.Cluster.nodeNames {
		out, err := e.TB.Exec(ctx, n, "sysctl", "-n", "net.ipv4.ip_forward")
		if err != nil {
			restore()
			return nil, fmt.Errorf("read forwarding of %s: %w", n, err)
		}
		was[n] = strings.TrimSpace(string(out))
		if _, err := e.TB.Exec(ctx, n, "sysctl", "-qw", "net.ipv4.ip_forward=1"); err != nil {
			restore()
			return nil, fmt.Errorf("turn on forwarding on %s: %w", n, err)
		}
	}
	return restore, nil
}

// restarts is the restart count of p's containers.
func restarts(p *corev1.Pod) int32 {
	var n int32
	for _, s := range p.Status.ContainerStatuses {
		n += s.RestartCount
	}
	return n
}

// egressNodePackets reads acl/state/egress-node-packets of pod ns/name's
// interface on node (the chart's isthmusd) for the account, or says why
// it could not.
func (e *Env) egressNodePackets(ctx context.Context, node, ns, name string) string {
	n, err := e.Cluster.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return "unread: " + err.Error()
	}
	out, err := e.TB.Exec(ctx, node, e.TB.Binaries().Gnmic, "-a", nodeInternalIP(n)+":9339", "--skip-verify", "-u", "isthmus", "-p", e.Cluster.GNMIPassword(),
		"--timeout", "5s", "-e", "json_ietf", "get", "--path", "/interfaces")
	if err != nil {
		return "unread: " + err.Error()
	}
	var resp any
	if err := json.Unmarshal(out, &resp); err != nil {
		return "unread: " + err.Error()
	}
	if v := findPodACLState(resp, ns, name, "egress-node-packets"); v != nil {
		return fmt.Sprint(v)
	}
	return "not found"
}

// findPodACLState walks gnmic's JSON for the interface of pod ns/name and
// returns its acl/state member leaf.
func findPodACLState(v any, ns, name, leaf string) any {
	switch v := v.(type) {
	case []any:
		for _, x := range v {
			if r := findPodACLState(x, ns, name, leaf); r != nil {
				return r
			}
		}
	case map[string]any:
		pod := field(field(v, "config"), "pod")
		if n, _ := field(pod, "name").(string); n != "" {
			if s, _ := field(pod, "namespace").(string); s == ns && n == name {
				return field(field(field(v, "acl"), "state"), leaf)
			}
			return nil
		}
		for _, x := range v {
			if r := findPodACLState(x, ns, name, leaf); r != nil {
				return r
			}
		}
	}
	return nil
}
