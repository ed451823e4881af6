package k8s

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// denyPolicy and allowPolicy are the NetworkPolicies of the netpol
// scenario (%[1]s: the namespace): its web pods isolated for ingress, then
// open on 8080/TCP to pods labelled role=client of the same namespace.
const denyPolicy = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-default-deny, namespace: %[1]s}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
`

const allowPolicy = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-allow-client, namespace: %[1]s}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {role: client}}}]
    ports: [{protocol: TCP, port: 8080}]
`

// netpol (chart mode): `kubectl apply` of a default-deny ingress policy for
// ns's web pods cuts red's DC pod and the other web pod off; the allow
// policy opens 8080 to pods labelled role=client only: one web pod, once
// labelled, reaches the other (on the other node) across the tunnel while red's DC
// pod still does not; the label removed, it is refused again; both
// policies deleted, the DC pod is answered again.
func (e *Env) netpol(ctx context.Context, ns string, pods []corev1.Pod) error {
	c := e.Cluster
	if len(pods) != 2 || pods[0].Spec.NodeName == pods[1].Spec.NodeName {
		return fmt.Errorf("netpol: want a web pod on each node, have %v", podIPs(pods))
	}
	client, server := pods[0], pods[1]
	dc := e.DC["red"]
	url := "http://" + server.Status.PodIP + ":8080/healthz"
	dcReach := func(ctx context.Context, p corev1.Pod) bool {
		_, err := HTTPGet(ctx, dc, "http://"+p.Status.PodIP+":8080/")
		return err == nil
	}
	podReach := func(ctx context.Context) bool {
		_, err := c.Kubectl(ctx, "-n", ns, "exec", client.Name, "--", "/usr/local/bin/podserver", "probe", url)
		return err == nil
	}
	wait := func(what string, cond func(context.Context) bool) error {
		wctx, cancel := context.WithTimeout(ctx, 45*time.Second)
		defer cancel()
		return poll(wctx, what, func() (bool, error) { return cond(wctx), nil })
	}
	deny, all := filepath.Join(c.Dir, "web-deny.yaml"), filepath.Join(c.Dir, "web-policies.yaml")
	if err := os.WriteFile(deny, []byte(fmt.Sprintf(denyPolicy, ns)), 0o644); err != nil {
		return fmt.Errorf("write policy: %w", err)
	}
	if err := os.WriteFile(all, []byte(fmt.Sprintf(denyPolicy+"---\n"+allowPolicy, ns)), 0o644); err != nil {
		return fmt.Errorf("write policies: %w", err)
	}
	if !podReach(ctx) {
		return fmt.Errorf("%s could not reach %s before any policy", client.Name, url)
	}
	if _, err := c.Kubectl(ctx, "apply", "-f", deny); err != nil {
		return err
	}
	for _, p := range pods {
		if err := wait(fmt.Sprintf("%s refused by %s (default deny)", dc.Name, p.Name), func(ctx context.Context) bool { return !dcReach(ctx, p) }); err != nil {
			return err
		}
	}
	if podReach(ctx) {
		return fmt.Errorf("%s reached %s under default deny", client.Name, url)
	}
	e.say("NetworkPolicy %s/web-default-deny: red's DC pod gets no answer from %v, and %s (%s) none from %s (%s)", ns, podIPs(pods), client.Name, client.Spec.NodeName, server.Name, server.Spec.NodeName)
	if _, err := c.Kubectl(ctx, "apply", "-f", all); err != nil {
		return err
	}
	if _, err := c.Kubectl(ctx, "-n", ns, "label", "pod", client.Name, "role=client"); err != nil {
		return err
	}
	if err := wait(fmt.Sprintf("%s (role=client) reaching %s", client.Name, url), podReach); err != nil {
		return err
	}
	if dcReach(ctx, server) {
		return fmt.Errorf("%s reached %s with only role=client pods allowed", dc.Name, server.Name)
	}
	e.say("+ web-allow-client (from role=client, TCP 8080) and kubectl label pod %s role=client: it reaches %s across the tunnel; red's DC pod still gets no answer", client.Name, url)
	if _, err := c.Kubectl(ctx, "-n", ns, "label", "pod", client.Name, "role-"); err != nil {
		return err
	}
	if err := wait(fmt.Sprintf("%s (unlabelled) refused by %s", client.Name, url), func(ctx context.Context) bool { return !podReach(ctx) }); err != nil {
		return err
	}
	e.say("label role removed: %s refused again", client.Name)
	if _, err := c.Kubectl(ctx, "delete", "-f", all); err != nil {
		return err
	}
	for _, p := range pods {
		if err := wait(fmt.Sprintf("%s answered by %s (policies deleted)", dc.Name, p.Name), func(ctx context.Context) bool { return dcReach(ctx, p) }); err != nil {
			return err
		}
	}
	e.say("policies deleted: red's DC pod is answered by %v again", podIPs(pods))
	return nil
}
