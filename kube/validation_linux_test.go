package kube_test

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/isthmus-net/isthmus/internal/testenv"
	"github.com/isthmus-net/isthmus/kube/apis/v1alpha1"
)

// TestBadNetworks: what one object can get wrong is refused by the API
// server (OpenAPI and CEL); what conflicts with another network is reported
// in status, and no node gets any of it, while the good network next to it
// runs everywhere.
func TestBadNetworks(t *testing.T) {
	e := newEnv(t, 2)
	refused := []struct {
		name string
		vn   *v1alpha1.VirtualNetwork
		want string
	}{
		{"rt-number", network("x1", 7, "1:4294967296", "10.9.0.0/16"), "route target"},
		{"rt-asn", network("x2", 7, "4294967296:1", "10.9.0.0/16"), "route target"},
		{"rt-4byte-asn-number", network("x3", 7, "70000:65536", "10.9.0.0/16"), "route target"},
		{"rt-syntax", network("x4", 7, "65000-1", "10.9.0.0/16"), "route target"},
		{"subnets-overlap", network("x5", 7, "65000:7", "10.9.0.0/16", "10.9.4.0/24"), "subnets overlap"},
		{"subnet-host-bits", network("x6", 7, "65000:7", "10.9.0.1/16"), "IPv4 prefix"},
		{"subnet-ipv6", network("x7", 7, "65000:7", "fd00::/64"), "IPv4 prefix"},
		{"rd-range", network("x8", 70000, "65000:7", "10.9.0.0/16"), "routeDistinguisher.number"},
	}
	for _, c := range refused {
		err := e.createNetwork(c.vn)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: create = %v, want refused mentioning %q", c.name, err, c.want)
		}
	}
	short := network("x9", 7, "65000:7", "10.9.0.0/24")
	short.Spec.BlockSize = 20
	if err := e.createNetwork(short); err == nil || !strings.Contains(err.Error(), "blockSize") {
		t.Errorf("block shorter than subnet: create = %v", err)
	}

	e.runController(e.config("a"))
	e.mustCreateNetwork(network("red", 100, "65000:100", "10.1.0.0/16"))
	e.waitCondition("red", v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonAllNodesReady)

	// Same RD number as red.
	e.mustCreateNetwork(network("blue", 100, "65000:200", "10.2.0.0/16"))
	// Imports red's routes and overlaps red's subnet.
	green := network("green", 300, "65000:300", "10.1.5.0/24")
	green.Spec.ImportRouteTargets = append(green.Spec.ImportRouteTargets, "65000:100")
	e.mustCreateNetwork(green)
	// Overlaps red too but shares no route target with it: fine.
	e.mustCreateNetwork(network("tenant2", 400, "65000:400", "10.1.0.0/16"))

	vn := e.waitCondition("blue", v1alpha1.ConditionAccepted, metav1.ConditionFalse, v1alpha1.ReasonRDConflict)
	if c := condition(vn, v1alpha1.ConditionAccepted); !strings.Contains(c.Message, `"red"`) {
		t.Errorf("blue: message %q does not name red", c.Message)
	}
	e.waitCondition("green", v1alpha1.ConditionAccepted, metav1.ConditionFalse, v1alpha1.ReasonSubnetOverlap)
	e.waitCondition("tenant2", v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonAllNodesReady)
	e.waitVRF(e.nodes, "tenant2", true, 10*time.Second)
	for _, name := range []string{"blue", "green"} {
		e.waitVRF(e.nodes, name, false, time.Second)
		if vn := e.network(name); len(vn.Status.Blocks) != 0 || vn.Status.ReadyNodes != 0 {
			t.Errorf("%s: refused network has blocks or ready nodes: %+v", name, vn.Status)
		}
	}
}

// TestExplain: kubectl explain describes the resource from the CRD's schema.
func TestExplain(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		testenv.Unavailable(t, "kubectl is not installed")
	}
	e := newEnv(t, 0)
	// Discovery lists a new CRD a moment after it is established.
	var out []byte
	eventually(t, 20*time.Second, func() (bool, string) {
		out, err = exec.Command(kubectl, "--kubeconfig", e.c.Kubeconfig, "explain", "virtualnetwork.spec.routeDistinguisher").CombinedOutput()
		return err == nil, string(out)
	})
	if err != nil || !strings.Contains(string(out), "number") || !strings.Contains(string(out), "InternalIP") {
		t.Fatalf("kubectl explain: %v\n%s", err, out)
	}
	out, err = exec.Command(kubectl, "--kubeconfig", e.c.Kubeconfig, "explain", "vn.spec.subnets").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "IPv4 pod prefixes") {
		t.Fatalf("kubectl explain vn.spec.subnets: %v\n%s", err, out)
	}
}
