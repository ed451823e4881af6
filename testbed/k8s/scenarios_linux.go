package k8s

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/isthmus-net/isthmus/testbed"
)

// Env is what the Kubernetes scenarios run against: the testbed, its
// cluster, the data center's gateway, and a data-center pod per tenant on
// d1 serving its identity on DCPort.
type Env struct {
	TB      *testbed.Testbed
	Cluster *Cluster
	Gateway *testbed.FRR
	// DC holds the data-center pods by tenant (red, blue).
	DC map[string]*testbed.Pod
	// Out receives each scenario's account.
	Out io.Writer
	// Helm is the helm CLI and ChartImages the directory of `make images`'
	// archives, for the chart scenario.
	Helm, ChartImages string

	servers []*testbed.PodServer
}

// DCPort is where the data-center pods answer with their identity.
const DCPort = 7000

// Namespaces the scenarios use and the tenant VRF each maps to: shop and
// bank have overlapping address pools (the topology's red and blue).
var Namespaces = map[string]string{"shop": "red", "bank": "blue"}

// NewEnv maps the scenario namespaces to their VRFs on every node, creates
// them, and starts a data-center pod per tenant on d1. With the cluster in
// OwnMounts mode (the chart's isthmusd), it only starts the data-center
// pods: the controller maps namespaces there.
func NewEnv(ctx context.Context, tb *testbed.Testbed, c *Cluster, out io.Writer) (*Env, error) {
	gw := tb.FRRAt("dcgw")
	if gw == nil {
		return nil, fmt.Errorf("set up scenarios: no FRR on dcgw")
	}
	e := &Env{TB: tb, Cluster: c, Gateway: gw, DC: map[string]*testbed.Pod{}, Out: out}
	for _, ns := range sortedKeys(Namespaces) {
		if !c.ownMounts {
			if err := c.MapNamespace(ctx, ns, Namespaces[ns]); err != nil {
				return nil, err
			}
			if _, err := c.Kubectl(ctx, "create", "namespace", ns); err != nil {
				return nil, err
			}
		}
		tenant := Namespaces[ns]
		p, err := tb.AddPod(ctx, "d1", "dc-"+tenant, tenant)
		if err != nil {
			return nil, err
		}
		e.DC[tenant] = p
		s, err := tb.ServeIdentity(p, DCPort)
		if err != nil {
			return nil, err
		}
		e.servers = append(e.servers, s)
	}
	return e, nil
}

// Close stops the data-center pods' servers and deletes the pods.
func (e *Env) Close(ctx context.Context) error {
	var errs []string
	for _, s := range e.servers {
		if err := s.Close(); err != nil {
			errs = append(errs, err.Error())
		}
	}
	for _, p := range e.DC {
		if err := e.TB.DelPod(ctx, p); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("close scenarios: %s", strings.Join(errs, "; "))
	}
	return nil
}

func (e *Env) say(format string, args ...any) { fmt.Fprintf(e.Out, "  "+format+"\n", args...) }

// Scenario is one Kubernetes scenario.
type Scenario struct {
	Name, Title string
	Run         func(ctx context.Context, e *Env) error
}

// Scenarios returns the Kubernetes scenarios in the order they build on
// each other (deploy first: the others use its deployment).
func Scenarios() []Scenario {
	return []Scenario{
		{"deploy", "kubectl create deployment + expose: pods get their namespace's network and reach DC pods over MPLSoUDP", deploy},
		{"overlap", "namespaces in isolated networks with overlapping subnets stay apart", overlap},
		{"probe", "kubelet readiness probes (exec) pass, and a failing one takes the pod out of the Service", probe},
		{"delete", "deleting a pod withdraws its /32 at the DC gateway", deletePod},
		{"drain", "draining a node moves its pods, their routes and the traffic to the other node", drain},
		{"chart", "helm template | kubectl apply: the controller and the route reflector run as pods and configure the reflector", chart},
		{"probe-http", "an httpGet readiness probe (kubelet from the node's stack, host access) passes, and goes NotReady when the server fails", probeHTTP},
	}
}

// probePatch adds an exec readiness probe to podserver's container.
const probePatch = `{"spec":{"template":{"spec":{"containers":[{"name":"podserver","readinessProbe":` +
	`{"exec":{"command":["/usr/local/bin/podserver","probe","http://127.0.0.1:8080/healthz"]},"periodSeconds":1,"failureThreshold":1}}]}}}}`

// createWeb runs `kubectl create deployment web` in ns with no replica,
// adds a readiness probe, scales it to 2 (so every pod is of the probed
// template), exposes it on 8080, and waits for the rollout.
func (e *Env) createWeb(ctx context.Context, ns string) error {
	c := e.Cluster
	steps := [][]string{
		{"-n", ns, "create", "deployment", "web", "--image", PodImage, "--replicas", "0", "--port", "8080", "--", "/usr/local/bin/podserver", "serve"},
		{"-n", ns, "patch", "deployment", "web", "-p", probePatch},
		{"-n", ns, "scale", "deployment", "web", "--replicas", "2"},
		{"-n", ns, "expose", "deployment", "web", "--port", "8080"},
		{"-n", ns, "rollout", "status", "deployment/web", "--timeout", "120s"},
	}
	for _, args := range steps {
		out, err := c.Kubectl(ctx, args...)
		if err != nil {
			return err
		}
		shown := strings.Join(args, " ")
		if len(shown) > 100 {
			shown = shown[:97] + "..."
		}
		e.say("$ kubectl %s\n    %s", shown, strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", "\n    "))
	}
	return nil
}

// readyPods lists the Running, Ready pods of ns matching selector.
func (e *Env) readyPods(ctx context.Context, ns, selector string) ([]corev1.Pod, error) {
	list, err := e.Cluster.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, fmt.Errorf("list pods of %s: %w", ns, err)
	}
	var ready []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil && p.Status.PodIP != "" && podReady(&p) {
			ready = append(ready, p)
		}
	}
	sort.Slice(ready, func(i, j int) bool { return ready[i].Name < ready[j].Name })
	return ready, nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// waitWeb waits until ns/web has n ready pods with no other pod left, on
// the given nodes when any are named, and returns them.
func (e *Env) waitWeb(ctx context.Context, ns string, n int, nodes ...string) ([]corev1.Pod, error) {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	var pods []corev1.Pod
	err := poll(ctx, fmt.Sprintf("%d ready web pods in %s on %v", n, ns, nodes), func() (bool, error) {
		all, err := e.Cluster.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return false, err
		}
		pods, err = e.readyPods(ctx, ns, "app=web")
		if err != nil || len(pods) != n || len(all.Items) != n {
			return false, err
		}
		for _, p := range pods {
			if len(nodes) > 0 && !slices.Contains(nodes, p.Spec.NodeName) {
				return false, nil
			}
		}
		return true, nil
	})
	return pods, err
}

// readyEndpoints returns the addresses of ns/svc's EndpointSlices that
// are ready.
func (e *Env) readyEndpoints(ctx context.Context, ns, svc string) ([]string, error) {
	slices_, err := e.Cluster.Client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		return nil, fmt.Errorf("list endpointslices of %s/%s: %w", ns, svc, err)
	}
	var addrs []string
	for _, s := range slices_.Items {
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && *ep.Conditions.Ready {
				addrs = append(addrs, ep.Addresses...)
			}
		}
	}
	sort.Strings(addrs)
	return addrs, nil
}

func (e *Env) waitEndpoints(ctx context.Context, ns, svc string, want []string) error {
	sort.Strings(want)
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var got []string
	return poll(ctx, fmt.Sprintf("ready endpoints of %s/%s = %v", ns, svc, want), func() (bool, error) {
		var err error
		got, err = e.readyEndpoints(ctx, ns, svc)
		if err != nil {
			return false, err
		}
		if !slices.Equal(got, want) {
			return false, fmt.Errorf("ready endpoints %v", got)
		}
		return true, nil
	})
}

// waitRoute waits until the gateway holds prefix from the RD of vrf on
// host (present) or holds no such path (withdrawn).
func (e *Env) waitRoute(ctx context.Context, host, vrf, prefix string, present bool) error {
	rd, err := e.TB.TenantRD(host, vrf)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	what := fmt.Sprintf("dcgw holding %s rd %s", prefix, rd)
	if !present {
		what = fmt.Sprintf("dcgw withdrawing %s rd %s", prefix, rd)
	}
	return poll(ctx, what, func() (bool, error) {
		routes, err := e.Gateway.VPNRoutes(ctx)
		if err != nil {
			return false, err
		}
		has := slices.ContainsFunc(routes, func(r testbed.VPNRoute) bool { return r.RD == rd && r.Prefix == prefix })
		return has == present, nil
	})
}

// poolOf returns the address pool of vrf on host.
func (e *Env) poolOf(host, vrf string) (netip.Prefix, error) {
	for _, t := range e.TB.Topology().Tenants {
		if t.Name == vrf {
			return netip.ParsePrefix(t.Pools[host])
		}
	}
	return netip.Prefix{}, fmt.Errorf("no tenant %q", vrf)
}

// checkReach proves both directions between the DC pod of vrf and pod:
// the DC pod fetches the pod's name over HTTP, and the pod, asked over
// that connection, opens a TCP connection to the DC pod and reads its
// identity.
func (e *Env) checkReach(ctx context.Context, vrf string, pod corev1.Pod) error {
	dc := e.DC[vrf]
	var body string
	ctx2, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := poll(ctx2, fmt.Sprintf("%s reaching %s", dc.Name, pod.Name), func() (bool, error) {
		var err error
		body, err = HTTPGet(ctx2, dc, "http://"+pod.Status.PodIP+":8080/")
		return err == nil, err
	})
	if err != nil {
		return err
	}
	if !strings.HasPrefix(body, "pod "+pod.Name+" from "+dc.Address.String()+":") {
		return fmt.Errorf("%s at %s answered %q, want pod %s seeing %s", pod.Name, pod.Status.PodIP, body, pod.Name, dc.Address)
	}
	id, err := HTTPGet(ctx, dc, fmt.Sprintf("http://%s:8080/dial?addr=%s:%d", pod.Status.PodIP, dc.Address, DCPort))
	if err != nil {
		return err
	}
	want := "d1/" + vrf + "/" + dc.Name
	if strings.TrimSpace(id) != want {
		return fmt.Errorf("%s dialled %s:%d and read %q, want %q", pod.Name, dc.Address, DCPort, id, want)
	}
	e.say("%s/%s %s on %s ↔ %s %s: %q; the pod dialled back and read %q", pod.Namespace, pod.Name, pod.Status.PodIP, pod.Spec.NodeName, want, dc.Address, body, want)
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
