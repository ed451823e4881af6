package kube_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"
	"google.golang.org/grpc/metadata"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/isthmus-net/isthmus/kube/apis/v1alpha1"
	"github.com/isthmus-net/isthmus/kube/kubetest"
)

// waitAll polls every node until cond holds for the VRF name on all of them
// and returns when the last one did.
func waitAll(b *testing.B, nodes []*kubetest.Node, name string, present bool, timeout time.Duration) time.Time {
	b.Helper()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		last time.Time
		fail error
	)
	for _, nd := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			deadline := time.Now().Add(timeout)
			for {
				v, err := vrfOn(nd, name)
				if err == nil && (v != nil) == present {
					now := time.Now()
					mu.Lock()
					if now.After(last) {
						last = now
					}
					mu.Unlock()
					return
				}
				if time.Now().After(deadline) {
					mu.Lock()
					fail = fmt.Errorf("vrf %s on %s: present=%v after %v (err %v)", name, nd.Name, !present, timeout, err)
					mu.Unlock()
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	if fail != nil {
		b.Fatal(fail)
	}
	return last
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// vrfWatch records, per node, when each VRF's route distinguisher first
// appeared in the node's configuration, from a gNMI Subscribe (ON_CHANGE)
// to every node: the time isthmusd committed it, observed without polling.
type vrfWatch struct {
	mu   sync.Mutex // guards seen
	seen map[string]map[string]time.Time
}

func watchVRFs(b *testing.B, nodes []*kubetest.Node) *vrfWatch {
	w := &vrfWatch{seen: map[string]map[string]time.Time{}}
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	path, _ := ygot.StringToStructuredPath("/network-instances/network-instance[name=*]/config/route-distinguisher")
	for _, nd := range nodes {
		w.seen[nd.Name] = map[string]time.Time{}
		stream, err := nd.Client().Subscribe(metadata.NewOutgoingContext(ctx, mdOf(nd)))
		if err != nil {
			b.Fatal(err)
		}
		err = stream.Send(&gpb.SubscribeRequest{Request: &gpb.SubscribeRequest_Subscribe{Subscribe: &gpb.SubscriptionList{
			Mode: gpb.SubscriptionList_STREAM, Encoding: gpb.Encoding_JSON_IETF,
			Subscription: []*gpb.Subscription{{Path: path, Mode: gpb.SubscriptionMode_ON_CHANGE}},
		}}})
		if err != nil {
			b.Fatal(err)
		}
		go func() {
			for {
				resp, err := stream.Recv()
				if err != nil {
					return
				}
				now := time.Now()
				n := resp.GetUpdate()
				for _, u := range n.GetUpdate() {
					name := ""
					for _, e := range append(n.GetPrefix().GetElem(), u.GetPath().GetElem()...) {
						if e.GetName() == "network-instance" {
							name = e.GetKey()["name"]
						}
					}
					w.mu.Lock()
					if _, ok := w.seen[nd.Name][name]; !ok && name != "" {
						w.seen[nd.Name][name] = now
					}
					w.mu.Unlock()
				}
			}
		}()
	}
	return w
}

// wait returns when VRF name was last seen appearing on a node, once every
// node has it.
func (w *vrfWatch) wait(b *testing.B, name string, timeout time.Duration) time.Time {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for {
		w.mu.Lock()
		var last time.Time
		all := true
		for _, seen := range w.seen {
			t, ok := seen[name]
			all = all && ok
			if t.After(last) {
				last = t
			}
		}
		w.mu.Unlock()
		if all {
			return last
		}
		if time.Now().After(deadline) {
			b.Fatalf("vrf %s not on every node after %v", name, timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// BenchmarkNamespaceVRF20Nodes: a namespace is created in
// namespace-isolation mode; timed until its VRF is committed on all 20
// real isthmusd nodes (seen through a gNMI subscription to each). Each
// iteration is one namespace; p50 and p99 are reported.
func BenchmarkNamespaceVRF20Nodes(b *testing.B) {
	e := newEnv(b, 20)
	cfg := e.config("a")
	cfg.NamespaceIsolation, cfg.DefaultNetwork = true, "pods"
	e.mustCreateNetwork(network("pods", 1, "65000:1", "10.244.0.0/16"))
	e.runController(cfg)
	w := watchVRFs(b, e.nodes)
	w.wait(b, "k8s-default", time.Minute) // the cluster's own namespace
	var lat []time.Duration
	b.ResetTimer()
	for i := range b.N {
		name := fmt.Sprintf("bench-%d", i)
		start := time.Now()
		e.createNamespace(name, nil)
		lat = append(lat, w.wait(b, "k8s-"+name, time.Minute).Sub(start))
	}
	b.StopTimer()
	e.waitVRF(e.nodes, fmt.Sprintf("k8s-bench-%d", b.N-1), true, 10*time.Second) // cross-check with Get
	b.ReportMetric(float64(percentile(lat, 0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkPods1000: 1,000 pods across 20 nodes in 20 namespaces of one
// network. Timed: creating them (API server bound), the controller seeing
// them all (the network is deleted meanwhile and must stay on the nodes),
// and, once the last pod is deleted, the VRF leaving all 20 nodes.
func BenchmarkPods1000(b *testing.B) {
	for range b.N {
		e := newEnv(b, 20)
		e.runController(e.config("a"))
		e.mustCreateNetwork(network("red", 100, "65000:100", "10.1.0.0/16"))
		for i := range 20 {
			e.createNamespace(fmt.Sprintf("ns-%d", i), map[string]string{v1alpha1.NetworkLabel: "red"})
		}
		waitAll(b, e.nodes, "red", true, time.Minute)
		start := time.Now()
		var wg sync.WaitGroup
		for w := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 50 {
					_, err := e.c.Client.CoreV1().Pods(fmt.Sprintf("ns-%d", w)).Create(context.Background(), &corev1.Pod{
						ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p-%d", i)},
						Spec: corev1.PodSpec{NodeName: e.nodes[i%20].Name, Containers: []corev1.Container{{
							Name: "c", Image: "isthmus.dev/none:0", ImagePullPolicy: corev1.PullNever,
						}}},
					}, metav1.CreateOptions{})
					if err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		created := time.Since(start)
		e.deleteNetwork("red")
		e.waitCondition("red", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonInUseDeleting)
		eventually(b, time.Minute, func() (bool, string) {
			c := condition(e.network("red"), v1alpha1.ConditionReady)
			return c != nil && strings.HasPrefix(c.Message, "deleted; 1000 pods"), "status: " + c.Message
		})
		seen := time.Since(start)
		zero := int64(0)
		for i := range 20 {
			err := e.c.Client.CoreV1().Pods(fmt.Sprintf("ns-%d", i)).DeleteCollection(context.Background(),
				metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
			if err != nil {
				b.Fatal(err)
			}
		}
		lastDelete := time.Now()
		gone := waitAll(b, e.nodes, "red", false, time.Minute).Sub(lastDelete)
		b.ReportMetric(created.Seconds(), "create-1000-s")
		b.ReportMetric(seen.Seconds(), "seen-1000-s")
		b.ReportMetric(float64(gone.Milliseconds()), "vrf-gone-ms")
	}
	b.ReportMetric(0, "ns/op")
}

// BenchmarkMemory1000Namespaces runs the isthmus-controller binary in
// namespace-isolation mode against 20 real nodes and creates 1,000
// namespaces (so 1,000 networks, 20,000 VRFs across the nodes), then reports
// the controller's resident memory once every VRF is on every node.
func BenchmarkMemory1000Namespaces(b *testing.B) {
	e := newEnv(b, 20)
	dir := b.TempDir()
	bin := filepath.Join(dir, "isthmus-controller")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/isthmus-controller").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte(kubetest.GNMIPassword+"\n"), 0o600)
	e.mustCreateNetwork(network("pods", 1, "65000:1", "10.0.0.0/8"))
	cmd := exec.Command(bin, "--kubeconfig", e.c.Kubeconfig, "--leader-elect=false",
		"--gnmi-username", kubetest.GNMIUser, "--gnmi-password-file", pw, "--gnmi-skip-verify",
		"--bgp-as", "65000", "--route-reflectors", "192.0.2.1",
		"--namespace-isolation", "--default-network", "pods", "--log-level", "warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	start := time.Now()
	for i := range 1000 {
		e.createNamespace(fmt.Sprintf("m-%d", i), nil)
	}
	created := time.Since(start)
	// One full Get per node every 5 s: polling harder starves the nodes.
	deadline := time.Now().Add(30 * time.Minute)
	for _, nd := range e.nodes {
		for {
			nis, err := nd.NetworkInstances()
			if err == nil && len(nis) >= 1002 { // default, k8s-default and 1,000 more
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("%s has %d instances after 30m (%v)", nd.Name, len(nis), err)
			}
			time.Sleep(5 * time.Second)
		}
	}
	converged := time.Since(start)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	kb := func(key string) float64 {
		for _, l := range strings.Split(string(status), "\n") {
			if strings.HasPrefix(l, key+":") {
				var v float64
				fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(l, key+":"), "kB")), &v)
				return v / 1024
			}
		}
		return 0
	}
	b.ReportMetric(kb("VmRSS"), "rss-MiB")
	b.ReportMetric(kb("VmHWM"), "peak-rss-MiB")
	b.ReportMetric(created.Seconds(), "create-s")
	b.ReportMetric(converged.Seconds(), "converged-s")
	b.ReportMetric(0, "ns/op")
}

func mdOf(nd *kubetest.Node) metadata.MD {
	return metadata.Pairs("username", kubetest.GNMIUser, "password", kubetest.GNMIPassword)
}
