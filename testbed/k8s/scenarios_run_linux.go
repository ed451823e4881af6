package k8s

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// deploy: shop/web (2 replicas, one per node) gets addresses from red's
// pools, its Service's EndpointSlice lists them, dcgw holds each /32 from
// its node's RD, and each pod and red's DC pod reach each other. vpcgw
// routes no pod prefix, so what crosses it is the tunnel.
func deploy(ctx context.Context, e *Env) error {
	if err := e.createWeb(ctx, "shop"); err != nil {
		return err
	}
	pods, err := e.waitWeb(ctx, "shop", 2)
	if err != nil {
		return err
	}
	out, err := e.Cluster.Kubectl(ctx, "get", "pods", "-A", "-o", "wide")
	if err != nil {
		return err
	}
	e.say("$ kubectl get pods -A -o wide\n    %s", strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", "\n    "))
	var ips []string
	for _, p := range pods {
		pool, err := e.poolOf(p.Spec.NodeName, "red")
		if err != nil {
			return err
		}
		if !pool.Contains(mustAddr(p.Status.PodIP)) {
			return fmt.Errorf("pod %s on %s has %s, outside red's pool %s there", p.Name, p.Spec.NodeName, p.Status.PodIP, pool)
		}
		ips = append(ips, p.Status.PodIP)
	}
	if err := e.waitEndpoints(ctx, "shop", "web", ips); err != nil {
		return err
	}
	e.say("service shop/web: ready endpoints %v (red's pools: c1 10.1.1.0/24, c2 10.1.2.0/24)", ips)
	for _, p := range pods {
		if err := e.waitRoute(ctx, p.Spec.NodeName, "red", p.Status.PodIP+"/32", true); err != nil {
			return err
		}
	}
	e.say("dcgw holds each pod's /32 with its node's RD")
	for _, p := range pods {
		if err := e.checkReach(ctx, "red", p); err != nil {
			return err
		}
	}
	return nil
}

// overlap: bank/web lands in blue, whose pools are red's; the same
// addresses answer as bank's pods to blue's DC pod and as shop's pods (or
// not at all) to red's.
func overlap(ctx context.Context, e *Env) error {
	if err := e.createWeb(ctx, "bank"); err != nil {
		return err
	}
	bank, err := e.waitWeb(ctx, "bank", 2)
	if err != nil {
		return err
	}
	shop, err := e.readyPods(ctx, "shop", "app=web")
	if err != nil {
		return err
	}
	shared := 0
	for _, b := range bank {
		if err := e.checkReach(ctx, "blue", b); err != nil {
			return err
		}
		body, err := HTTPGet(ctx, e.DC["red"], "http://"+b.Status.PodIP+":8080/")
		if err == nil && strings.HasPrefix(body, "pod "+b.Name+" ") {
			return fmt.Errorf("red's DC pod reached bank's pod %s at %s", b.Name, b.Status.PodIP)
		}
		if slices.ContainsFunc(shop, func(s corev1.Pod) bool { return s.Status.PodIP == b.Status.PodIP }) {
			shared++
		}
		answer := body
		if err != nil {
			answer = "no answer"
		}
		e.say("%s from red's DC pod: %s (never bank's pod)", b.Status.PodIP, answer)
	}
	if shared == 0 {
		return fmt.Errorf("bank's pods %v share no address with shop's: the overlap was not exercised", podIPs(bank))
	}
	e.say("%d of bank's addresses are also shop's; each network answered only with its own pods", shared)
	return nil
}

// probe: the exec readiness probe keeps shop's pods Ready; one pod told to
// fail it turns NotReady and leaves the Service's ready endpoints, then
// comes back.
func probe(ctx context.Context, e *Env) error {
	pods, err := e.readyPods(ctx, "shop", "app=web")
	if err != nil {
		return err
	}
	if len(pods) != 2 {
		return fmt.Errorf("want 2 ready shop pods, have %d", len(pods))
	}
	victim, other := pods[0], pods[1]
	if _, err := e.Cluster.Kubectl(ctx, "-n", "shop", "exec", victim.Name, "--", "/usr/local/bin/podserver", "unready"); err != nil {
		return err
	}
	if err := e.waitReady(ctx, "shop", victim.Name, false); err != nil {
		return err
	}
	if err := e.waitEndpoints(ctx, "shop", "web", []string{other.Status.PodIP}); err != nil {
		return err
	}
	e.say("kubectl exec %s -- podserver unready: the probe fails, the pod is NotReady, shop/web's ready endpoints are [%s]", victim.Name, other.Status.PodIP)
	if _, err := e.Cluster.Kubectl(ctx, "-n", "shop", "exec", victim.Name, "--", "/usr/local/bin/podserver", "ready"); err != nil {
		return err
	}
	if err := e.waitReady(ctx, "shop", victim.Name, true); err != nil {
		return err
	}
	if err := e.waitEndpoints(ctx, "shop", "web", podIPs(pods)); err != nil {
		return err
	}
	e.say("podserver ready: the pod is Ready again, endpoints %v", podIPs(pods))
	return nil
}

func (e *Env) waitReady(ctx context.Context, ns, name string, ready bool) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return poll(ctx, fmt.Sprintf("pod %s/%s ready=%v", ns, name, ready), func() (bool, error) {
		p, err := e.Cluster.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return podReady(p) == ready, nil
	})
}

// deletePod: a standalone pod's /32 reaches dcgw; `kubectl delete pod`
// withdraws it.
func deletePod(ctx context.Context, e *Env) error {
	c := e.Cluster
	if _, err := c.Kubectl(ctx, "-n", "shop", "run", "solo", "--image", PodImage, "--labels", "app=solo", "--", "/usr/local/bin/podserver", "serve"); err != nil {
		return err
	}
	if _, err := c.Kubectl(ctx, "-n", "shop", "wait", "--for=condition=Ready", "pod/solo", "--timeout=90s"); err != nil {
		return err
	}
	p, err := c.Client.CoreV1().Pods("shop").Get(ctx, "solo", metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get pod solo: %w", err)
	}
	prefix := p.Status.PodIP + "/32"
	if err := e.waitRoute(ctx, p.Spec.NodeName, "red", prefix, true); err != nil {
		return err
	}
	e.say("pod shop/solo %s on %s: dcgw holds %s", p.Status.PodIP, p.Spec.NodeName, prefix)
	start := time.Now()
	if _, err := c.Kubectl(ctx, "-n", "shop", "delete", "pod", "solo", "--grace-period=1"); err != nil {
		return err
	}
	if err := e.waitRoute(ctx, p.Spec.NodeName, "red", prefix, false); err != nil {
		return err
	}
	e.say("kubectl delete pod solo: %s withdrawn from dcgw %s after the command returned", prefix, time.Since(start).Round(100*time.Millisecond))
	return nil
}

// drain: `kubectl drain c2` evicts shop's pod there; the Deployment puts it
// on c1; dcgw loses the c2 /32 and gains the new one; red's DC pod reaches
// both endpoints, now on c1. c2 is uncordoned after.
func drain(ctx context.Context, e *Env) error {
	c := e.Cluster
	before, err := e.readyPods(ctx, "shop", "app=web")
	if err != nil {
		return err
	}
	var moved []corev1.Pod
	for _, p := range before {
		if p.Spec.NodeName == "c2" {
			moved = append(moved, p)
		}
	}
	if len(moved) == 0 {
		return fmt.Errorf("no shop pod on c2 to move: %v", podIPs(before))
	}
	out, err := c.Kubectl(ctx, "drain", "c2", "--ignore-daemonsets", "--delete-emptydir-data", "--grace-period=1", "--timeout=90s")
	if err != nil {
		return err
	}
	e.say("$ kubectl drain c2\n    %s", strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", "\n    "))
	defer func() { _, _ = c.Kubectl(context.WithoutCancel(ctx), "uncordon", "c2") }() // best effort: the next run starts fresh anyway
	after, err := e.waitWeb(ctx, "shop", 2, "c1")
	if err != nil {
		return err
	}
	for _, p := range moved {
		if err := e.waitRoute(ctx, "c2", "red", p.Status.PodIP+"/32", false); err != nil {
			return err
		}
	}
	if err := e.waitEndpoints(ctx, "shop", "web", podIPs(after)); err != nil {
		return err
	}
	for _, p := range after {
		if err := e.waitRoute(ctx, "c1", "red", p.Status.PodIP+"/32", true); err != nil {
			return err
		}
		if err := e.checkReach(ctx, "red", p); err != nil {
			return err
		}
	}
	e.say("c2's pod %v withdrawn from dcgw; shop/web now %v, both on c1", podIPs(moved), podIPs(after))
	if _, err := c.Kubectl(ctx, "uncordon", "c2"); err != nil {
		return err
	}
	return nil
}

func podIPs(pods []corev1.Pod) []string {
	ips := make([]string, len(pods))
	for i, p := range pods {
		ips[i] = p.Status.PodIP
	}
	return ips
}
