package plugin

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/isthmus-net/isthmus/cni/daemon"
)

func TestConcurrentAdds(t *testing.T) {
	e := newEnv(t, daemon.Config{})
	e.d.AddVRF("red", "65000:1", "10.1.0.0/24")
	const n = 50
	pods := make([]ns.NetNS, n)
	for i := range pods {
		pods[i] = newNS(t)
	}
	results := make([]*current.Result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = e.add("red", fmt.Sprintf("con-%d", i), pods[i], "")
		}()
	}
	wg.Wait()
	seen := map[netip.Addr]int{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("add %d: %v", i, errs[i])
		}
		a := resultAddr(t, results[i])
		if j, dup := seen[a]; dup {
			t.Fatalf("pods %d and %d both got %s", j, i, a)
		}
		seen[a] = i
		if e.d.Interface(results[i].Interfaces[0].Name) == nil {
			t.Fatalf("pod %d is not in the tree", i)
		}
	}
}

func TestDaemonRestartKeepsPods(t *testing.T) {
	e := newEnv(t, daemon.Config{})
	e.d.AddVRF("red", "65000:1", "10.1.0.0/24")
	pods := make([]ns.NetNS, 5)
	results := make([]*current.Result, len(pods))
	for i := range pods {
		pods[i] = newNS(t)
		var err error
		if results[i], err = e.add("red", fmt.Sprintf("rs-%d", i), pods[i], ""); err != nil {
			t.Fatal(err)
		}
	}
	e.d.Restart()
	for i := range pods {
		if err := e.check("red", fmt.Sprintf("rs-%d", i), pods[i], results[i]); err != nil {
			t.Fatalf("check pod %d after restart: %v", i, err)
		}
	}
	res, err := e.add("red", "rs-new", newNS(t), "")
	if err != nil {
		t.Fatal(err)
	}
	for i := range results {
		if resultAddr(t, res) == resultAddr(t, results[i]) {
			t.Fatalf("new pod got %s, still held by pod %d", resultAddr(t, res), i)
		}
	}
}

func TestNamespaceIsolation(t *testing.T) {
	e := newEnv(t, daemon.Config{Mode: daemon.ModeNamespaceIsolation, VRFPrefix: "k8s-"})
	e.d.AddVRF("k8s-shop", "65000:1", "10.1.0.0/24")
	e.d.AddVRF("k8s-bank", "65000:2", "10.1.0.0/24")
	for _, tt := range []struct{ pod, namespace, vrf string }{
		{"iso-1", "shop", "k8s-shop"},
		{"iso-2", "bank", "k8s-bank"},
		{"iso-3", "shop", "k8s-shop"},
	} {
		res, err := e.add("pods", tt.pod, newNS(t), "K8S_POD_NAMESPACE="+tt.namespace+";K8S_POD_NAME="+tt.pod)
		if err != nil {
			t.Fatalf("add %s: %v", tt.pod, err)
		}
		if got := e.d.Interface(res.Interfaces[0].Name).GetConfig().GetNetworkInstance(); got != tt.vrf {
			t.Fatalf("pod %s in namespace %s is in vrf %q, want %q", tt.pod, tt.namespace, got, tt.vrf)
		}
	}
	// A namespace with no VRF is an unknown network.
	if _, err := e.add("pods", "iso-4", newNS(t), "K8S_POD_NAMESPACE=nowhere"); cniCode(t, err) != CodeUnknownNetwork {
		t.Fatalf("add in a namespace without vrf: %v", err)
	}
}
