package k8s

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/isthmus-net/isthmus/testbed"
)

// redNetwork is the VirtualNetwork of the DaemonSet scenario: the data
// center's red (route target 65000:100) with pod blocks from 10.1.1.0/24.
const redNetwork = `apiVersion: isthmus.dev/v1alpha1
kind: VirtualNetwork
metadata: {name: red}
spec:
  routeDistinguisher: {number: 100}
  importRouteTargets: ["65000:100"]
  exportRouteTargets: ["65000:100"]
  subnets: ["10.1.1.0/24"]
  blockSize: 26
  encapsulation: MPLSoUDP
`

// DaemonSetMission is the mission with Isthmus entirely from its chart
// (cluster started with OwnMounts, no isthmusd process on c1 or c2): the
// DaemonSet's isthmusd pods, the controller and the route reflector (peer
// of dcgw) come up, a VirtualNetwork and a labelled namespace make the
// controller configure both nodes over gNMI, and a Deployment's pods get
// the network's addresses, are announced to dcgw through the reflector
// and reach red's data-center pod on d1 both ways; a pod with httpGet and
// tcpSocket probes under a deny-all NetworkPolicy is Ready (probeDeny).
func DaemonSetMission(ctx context.Context, e *Env) error {
	c := e.Cluster
	start := time.Now()
	if err := c.InstallChart(ctx, e.Helm, e.ChartImages); err != nil {
		return err
	}
	for _, n := range c.nodeNames {
		if err := c.WaitNodeReady(ctx, n, time.Minute); err != nil {
			return err
		}
	}
	e.say("helm template | kubectl apply: isthmusd DaemonSet, controller and route reflector rolled out in %s", time.Since(start).Round(100*time.Millisecond))
	vn := filepath.Join(c.Dir, "red.yaml")
	if err := os.WriteFile(vn, []byte(redNetwork), 0o644); err != nil {
		return fmt.Errorf("write VirtualNetwork: %w", err)
	}
	for _, args := range [][]string{
		{"apply", "-f", vn},
		{"create", "namespace", "shop"},
		{"label", "namespace", "shop", "isthmus.dev/network=red"},
	} {
		if _, err := c.Kubectl(ctx, args...); err != nil {
			return err
		}
	}
	if err := e.waitNodesConfigured(ctx); err != nil {
		return err
	}
	e.say("VirtualNetwork red + namespace shop labelled: the controller configured c1 and c2 (IsthmusNetworkReady=True)")
	if err := e.createWeb(ctx, "shop"); err != nil {
		return err
	}
	pods, err := e.waitWeb(ctx, "shop", 2)
	if err != nil {
		return err
	}
	out, err := c.Kubectl(ctx, "get", "pods", "-A", "-o", "wide")
	if err != nil {
		return err
	}
	e.say("$ kubectl get pods -A -o wide\n    %s", strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", "\n    "))
	for _, p := range pods {
		if !strings.HasPrefix(p.Status.PodIP, "10.1.1.") {
			return fmt.Errorf("pod %s has %s, outside red's 10.1.1.0/24", p.Name, p.Status.PodIP)
		}
		rd := p.Status.HostIP + ":100"
		if err := e.waitRouteRD(ctx, rd, p.Status.PodIP+"/32"); err != nil {
			return err
		}
	}
	e.say("dcgw holds each pod's /32 (RD <node>:100), learnt through the in-cluster route reflector")
	for _, p := range pods {
		if err := e.checkReach(ctx, "red", p); err != nil {
			return err
		}
	}
	if err := e.clusterIP(ctx, "shop", pods); err != nil {
		return err
	}
	if err := e.netpol(ctx, "shop", pods); err != nil {
		return err
	}
	return e.probeDeny(ctx, "shop", pods[1])
}

// waitNodesConfigured waits until every Node reports IsthmusNetworkReady.
func (e *Env) waitNodesConfigured(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	return poll(ctx, "IsthmusNetworkReady on every node", func() (bool, error) {
		for _, n := range e.Cluster.nodeNames {
			node, err := e.Cluster.Client.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			i := slices.IndexFunc(node.Status.Conditions, func(c corev1.NodeCondition) bool { return c.Type == "IsthmusNetworkReady" })
			if i < 0 {
				return false, fmt.Errorf("%s: no IsthmusNetworkReady condition", n)
			}
			if cond := node.Status.Conditions[i]; cond.Status != corev1.ConditionTrue {
				return false, fmt.Errorf("%s: %s: %s", n, cond.Reason, cond.Message)
			}
		}
		return true, nil
	})
}

// waitRouteRD waits until dcgw holds prefix with route distinguisher rd.
func (e *Env) waitRouteRD(ctx context.Context, rd, prefix string) error {
	ctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	return poll(ctx, fmt.Sprintf("dcgw holding %s rd %s", prefix, rd), func() (bool, error) {
		routes, err := e.Gateway.VPNRoutes(ctx)
		if err != nil {
			return false, err
		}
		return slices.ContainsFunc(routes, func(r testbed.VPNRoute) bool { return r.RD == rd && r.Prefix == prefix }), nil
	})
}
