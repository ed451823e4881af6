package deploy

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/isthmus-net/isthmus/kube/kubetest"
)

// syncBuffer is a bytes.Buffer safe for a process writing and a test
// reading.
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestChartControllerRuns: the real isthmus-controller, started with the
// arguments the chart renders and acting as the chart's service account
// (impersonated, so the chart's RBAC decides), takes its Lease, and puts
// its finalizer and status on the default VirtualNetwork the chart makes,
// with nothing forbidden.
func TestChartControllerRuns(t *testing.T) {
	cluster := kubetest.StartCluster(t)
	// Self-signed node certificates: no TLS Secret to read locally.
	objs := render(t, "--include-crds", "--set", "gnmi.tls.secretName=", "--set", "gnmi.tls.clientSecretName=", "--set", "gnmi.tls.skipVerify=true")
	applyChart(t, cluster, objs)
	if t.Failed() {
		return
	}

	dir := t.TempDir()
	bin := filepath.Join(dir, "isthmus-controller")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/isthmus-controller").CombinedOutput(); err != nil {
		t.Fatalf("build isthmus-controller: %v\n%s", err, out)
	}
	kc, err := clientcmd.LoadFromFile(cluster.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range kc.AuthInfos {
		u.Impersonate = "system:serviceaccount:isthmus-system:isthmus-controller"
		u.ImpersonateGroups = []string{"system:serviceaccounts", "system:serviceaccounts:isthmus-system", "system:authenticated"}
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, kubeconfig); err != nil {
		t.Fatal(err)
	}
	password := filepath.Join(dir, "password")
	os.WriteFile(password, []byte("s3cret\n"), 0o600)

	dep := find(t, objs, "Deployment", "isthmus-controller")
	cmdline := strs(dep.get("spec", "template", "spec", "containers", 0, "command"))
	args := []string{"--kubeconfig", kubeconfig}
	for _, a := range cmdline[1:] {
		a = strings.ReplaceAll(a, "$(ISTHMUS_GNMI_USERNAME)", "isthmus")
		if strings.HasPrefix(a, "--gnmi-password-file=") {
			a = "--gnmi-password-file=" + password
		}
		args = append(args, a)
	}
	var logs syncBuffer
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "POD_NAME=isthmus-controller-0", "POD_NAMESPACE=isthmus-system")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("isthmus-controller %v:\n%s", args, logs.String())
		}
	})

	ctx := context.Background()
	waitUntil(t, "isthmus-controller", done, 60*time.Second, "the controller's Lease", func() bool {
		l, err := cluster.Client.CoordinationV1().Leases("isthmus-system").Get(ctx, "isthmus-controller", metav1.GetOptions{})
		return err == nil && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity == "isthmus-controller-0"
	})

	dyn, err := dynamic.NewForConfig(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	vns := dyn.Resource(schema.GroupVersionResource{Group: "isthmus.dev", Version: "v1alpha1", Resource: "virtualnetworks"})
	// The chart made the network --default-network names.
	if _, err := vns.Get(ctx, "pods", metav1.GetOptions{}); err != nil {
		t.Fatalf("get the chart's default VirtualNetwork: %v", err)
	}
	waitUntil(t, "isthmus-controller", done, 60*time.Second, "finalizer and status on the VirtualNetwork", func() bool {
		u, err := vns.Get(ctx, "pods", metav1.GetOptions{})
		if err != nil {
			return false
		}
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		return len(u.GetFinalizers()) > 0 && len(conds) > 0
	})
	if out := logs.String(); strings.Contains(strings.ToLower(out), "forbidden") {
		t.Errorf("the controller was refused something under the chart's RBAC:\n%s", out)
	}
}

// waitUntil polls ok until it holds, failing t after d or when the
// process (named proc) behind done exits first.
func waitUntil(t *testing.T, proc string, done chan error, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("%s exited (%v) before %s", proc, err, what)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %s", what, d)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
