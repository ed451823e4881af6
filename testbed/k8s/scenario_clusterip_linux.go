package k8s

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// clusterIPProbes is how many connections red's DC pod opens to the
// ClusterIP: enough for the data center's ECMP and the hosts' balancing
// to reach both backends.
const clusterIPProbes = 24

// clusterIP (claim 12, chart mode): the controller translates `kubectl
// expose`'s Service ns/web into the service k8s/<ns>/web of red on c1 and
// c2 (its ClusterIP, port 8080, both pods as backends), both nodes
// advertise the ClusterIP /32 (RD <node>:100, route target 65000:100,
// which red's VRF on d1 imports), dcgw and d1 hold it, and red's DC pod
// on d1 connects to ClusterIP:8080 and is answered by both backends.
func (e *Env) clusterIP(ctx context.Context, ns string, pods []corev1.Pod) error {
	c := e.Cluster
	svc, err := c.Client.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get service %s/web: %w", ns, err)
	}
	vip := svc.Spec.ClusterIP
	if vip == "" || vip == corev1.ClusterIPNone {
		return fmt.Errorf("service %s/web has no cluster IP", ns)
	}
	name := "k8s/" + ns + "/web"
	path := "/network-instances/network-instance[name=red]/services"
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for _, n := range c.nodeNames {
		node, err := c.Client.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("get node %s: %w", n, err)
		}
		addr := nodeInternalIP(node)
		var got string
		if err := poll(wctx, fmt.Sprintf("service %s on %s with %s and both backends", name, n, vip), func() (bool, error) {
			out, err := e.gnmiGetTLS(wctx, n, addr+":9339", path)
			got = string(out)
			if err != nil || !strings.Contains(got, `"`+name+`"`) || !strings.Contains(got, `"`+vip+`"`) {
				return false, err
			}
			for _, p := range pods {
				if !strings.Contains(got, `"`+p.Status.PodIP+`"`) {
					return false, nil
				}
			}
			return true, nil
		}); err != nil {
			return fmt.Errorf("%w\n%s", err, got)
		}
		if err := e.waitRouteRD(ctx, addr+":100", vip+"/32"); err != nil {
			return err
		}
	}
	if err := e.d1HoldsVIP(ctx, vip); err != nil {
		return err
	}
	e.say("Service %s/web (ClusterIP %s:8080): the controller wrote service %s on c1 and c2 with backends %v; dcgw holds %s/32 from both nodes (RD <node>:100), and so does red's VRF on d1, importing %s", ns, vip, name, podIPs(pods), vip, redRT)
	backends := map[string]string{}
	for _, p := range pods {
		backends[p.Name] = p.Status.PodIP
	}
	dc := e.DC["red"]
	seen := map[string]int{}
	pctx, cancel2 := context.WithTimeout(ctx, 30*time.Second)
	defer cancel2()
	url := "http://" + vip + ":8080/"
	if err := poll(pctx, fmt.Sprintf("%s reaching %s", dc.Name, url), func() (bool, error) {
		_, err := HTTPGet(pctx, dc, url)
		return err == nil, err
	}); err != nil {
		return err
	}
	for i := 0; i < clusterIPProbes; i++ {
		body, err := HTTPGet(ctx, dc, url)
		if err != nil {
			return err
		}
		pod, _, ok := strings.Cut(strings.TrimPrefix(body, "pod "), " from "+dc.Address.String()+":")
		if !strings.HasPrefix(body, "pod ") || !ok || backends[pod] == "" {
			return fmt.Errorf("%s from %s answered %q, want one of the backends %v seeing %s", url, dc.Name, body, podIPs(pods), dc.Address)
		}
		seen[pod]++
	}
	if len(seen) != len(pods) {
		return fmt.Errorf("%d connections from %s to %s reached only %v, want every backend of %v", clusterIPProbes, dc.Name, url, seen, podIPs(pods))
	}
	names := make([]string, 0, len(seen))
	for p, n := range seen {
		names = append(names, fmt.Sprintf("%s %d", p, n))
	}
	sort.Strings(names)
	e.say("%d connections from d1/red/%s %s to %s: answered by %s (each seeing the DC pod's own address)", clusterIPProbes, dc.Name, dc.Address, url, strings.Join(names, ", "))
	return nil
}

// redRT is the route target of the VirtualNetwork red, the data center's
// red: d1's VRF red imports it from the testbed's own configuration.
const redRT = "65000:100"

// d1HoldsVIP checks that red's VRF on d1 imports redRT and waits until its
// forwarding table holds vip/32.
func (e *Env) d1HoldsVIP(ctx context.Context, vip string) error {
	cfg, err := e.TB.GnmiFlat(ctx, "d1", "/network-instances/network-instance[name=red]/config")
	if err != nil {
		return err
	}
	imports := ""
	for k, v := range cfg {
		if strings.Contains(k, "import-route-target") {
			imports += v + " "
		}
	}
	if !strings.Contains(imports, redRT) {
		return fmt.Errorf("d1's VRF red imports %q, not %s: the Service's VIP cannot reach it", imports, redRT)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var aft map[string]string
	return poll(wctx, fmt.Sprintf("d1's VRF red holding %s/32", vip), func() (bool, error) {
		var err error
		aft, err = e.TB.GnmiFlat(wctx, "d1", "/network-instances/network-instance[name=red]/afts/ipv4-unicast/ipv4-entry[prefix="+vip+"/32]")
		if err != nil {
			return false, err
		}
		for k, v := range aft {
			if strings.Contains(k, vip+"/32") || strings.Contains(v, vip+"/32") {
				return true, nil
			}
		}
		return false, nil
	})
}

// nodeInternalIP returns node's InternalIP address.
func nodeInternalIP(n *corev1.Node) string {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address
		}
	}
	return ""
}
