package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/isthmus-net/isthmus/internal/testenv"
)

// testValues are the values the tests render the chart with.
const testValues = "isthmus/ci/test-values.yaml"

var (
	helmOnce sync.Once
	helmBin  string
	helmErr  error
)

// helm returns the helm CLI, built once by tools/helm/build.sh into its
// cache (reused when present). A failed build skips the test on a
// developer's machine and fails it under CI.
func helm(t *testing.T) string {
	t.Helper()
	helmOnce.Do(func() {
		out, err := exec.Command("bash", "../tools/helm/build.sh").Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				err = errors.Join(err, errors.New(string(ee.Stderr)))
			}
			helmErr = err
			return
		}
		helmBin = filepath.Join(strings.TrimSpace(string(out)), "helm")
	})
	if helmErr != nil {
		testenv.Unavailable(t, "build helm: "+helmErr.Error())
	}
	return helmBin
}

// runHelm runs helm with args in this directory and returns its stdout.
func runHelm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(helm(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// Keep helm's own cache and config out of the user's home.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
	if err := cmd.Run(); err != nil {
		return stdout.String(), errors.Join(err, errors.New(stderr.String()))
	}
	return stdout.String(), nil
}

// object is one rendered manifest.
type object map[string]any

func (o object) kind() string { s, _ := o["kind"].(string); return s }

func (o object) name() string {
	m, _ := o["metadata"].(map[string]any)
	s, _ := m["name"].(string)
	return s
}

// get walks keys (strings for maps, ints for lists) from o.
func (o object) get(keys ...any) any {
	var v any = map[string]any(o)
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

// render runs helm template with the test values (and extra args) and
// decodes every manifest.
func render(t *testing.T, extra ...string) []object {
	t.Helper()
	out, err := runHelm(t, append([]string{"template", "isthmus", "./isthmus", "--namespace", "isthmus-system", "-f", testValues}, extra...)...)
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	return decode(t, out)
}

func decode(t *testing.T, manifests string) []object {
	t.Helper()
	var objs []object
	dec := yaml.NewDecoder(strings.NewReader(manifests))
	for {
		var o map[string]any // nested maps decode as map[string]any too
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("decode rendered manifests: %v", err)
		}
		if o != nil {
			objs = append(objs, object(o))
		}
	}
	return objs
}

func find(t *testing.T, objs []object, kind, name string) object {
	t.Helper()
	for _, o := range objs {
		if o.kind() == kind && o.name() == name {
			return o
		}
	}
	t.Fatalf("no %s %s in the rendered chart", kind, name)
	return nil
}

// TestChartLint: helm lint --strict passes with the test values.
func TestChartLint(t *testing.T) {
	out, err := runHelm(t, "lint", "--strict", "./isthmus", "-f", testValues)
	if err != nil {
		t.Fatalf("helm lint: %v\n%s", err, out)
	}
}

// TestChartRequiresPeers: without the route reflectors' addresses (or the
// default network's subnets) the chart refuses to render, naming the
// missing value, instead of installing reflectors nobody peers with.
func TestChartRequiresPeers(t *testing.T) {
	_, err := runHelm(t, "template", "isthmus", "./isthmus")
	if err == nil || !strings.Contains(err.Error(), "routeReflector.addresses is empty") {
		t.Fatalf("render without routeReflector.addresses: %v", err)
	}
	_, err = runHelm(t, "template", "isthmus", "./isthmus", "-f", testValues, "--set", "network.defaultNetwork.subnets=null")
	if err == nil || !strings.Contains(err.Error(), "network.defaultNetwork.subnets is empty") {
		t.Fatalf("render without the default network's subnets: %v", err)
	}
	_, err = runHelm(t, "template", "isthmus", "./isthmus", "-f", testValues, "--set", "network.default=Default")
	if err == nil || !strings.Contains(err.Error(), `network.default is "default"`) {
		t.Fatalf("render with the pod network named default: %v", err)
	}
	_, err = runHelm(t, "template", "isthmus", "./isthmus", "-f", testValues, "--set", "gnmi.tls.secretName=", "--set", "gnmi.tls.clientSecretName=")
	if err == nil || !strings.Contains(err.Error(), "skipVerify") {
		t.Fatalf("render with self-signed certificates and verification on: %v", err)
	}
}

// TestChartDefaultNetwork: with the chart's defaults the pod network,
// and the controller's --default-network, are not named "default" (which
// would become a VRF isthmusd refuses, so no node would be configured).
func TestChartDefaultNetwork(t *testing.T) {
	objs := render(t)
	var vn object
	for _, o := range objs {
		if o.kind() == "VirtualNetwork" {
			vn = o
		}
	}
	if vn == nil || strings.EqualFold(vn.name(), "default") {
		t.Fatalf("the chart's default VirtualNetwork is %v, want one not named default", vn.name())
	}
	out, err := runHelm(t, "template", "isthmus", "./isthmus", "--namespace", "isthmus-system", "-f", testValues)
	if err != nil {
		t.Fatal(err)
	}
	if want := "--default-network=" + vn.name(); !strings.Contains(out, want) {
		t.Errorf("the controller is not given %s", want)
	}
}

// TestChartNode: the isthmusd DaemonSet runs on the host network,
// privileged, with the bpffs mount shared with the host, its data dir on
// the host, and an init container that installs the plugin and conflist.
func TestChartNode(t *testing.T) {
	objs := render(t)
	ds := find(t, objs, "DaemonSet", "isthmus-node")
	spec := ds.get("spec", "template", "spec").(map[string]any)
	if spec["hostNetwork"] != true {
		t.Errorf("DaemonSet: hostNetwork %v", spec["hostNetwork"])
	}
	c := object(ds.get("spec", "template", "spec", "containers", 0).(map[string]any))
	if c.get("securityContext", "privileged") != true {
		t.Errorf("isthmusd is not privileged")
	}
	mounts := map[string]map[string]any{}
	for _, m := range c.get("volumeMounts").([]any) {
		m := m.(map[string]any)
		mounts[m["mountPath"].(string)] = m
	}
	if m := mounts["/sys/fs/bpf"]; m == nil || m["mountPropagation"] != "Bidirectional" {
		t.Errorf("bpffs mount: %v", m)
	}
	if mounts["/var/lib/isthmus"] == nil || mounts["/run/isthmus"] == nil {
		t.Errorf("data dir or CNI socket dir not mounted: %v", mounts)
	}
	ic := object(ds.get("spec", "template", "spec", "initContainers", 0).(map[string]any))
	if cmd := ic.get("command"); !strings.Contains(strings.Join(strs(cmd), " "), "install-cni") {
		t.Errorf("init container command %v, want isthmusd install-cni", cmd)
	}
	if r := c.get("resources", "requests"); r == nil {
		t.Errorf("isthmusd has no resource requests")
	}
	if find(t, objs, "ServiceAccount", "isthmus-node")["automountServiceAccountToken"] != false {
		t.Errorf("isthmusd's service account mounts an API token it never uses")
	}
}

// TestChartControllerRBAC: the controller's ClusterRole only reads
// Kubernetes objects and writes only VirtualNetworks (with their status and
// finalizers), the Nodes' status (its condition) and Events (created); the
// Lease is in a namespaced Role; there is no wildcard.
func TestChartControllerRBAC(t *testing.T) {
	objs := render(t)
	for _, o := range objs {
		if (o.kind() == "ClusterRole" || o.kind() == "Role") && strings.Contains(flatten(o.get("rules")), "*") {
			t.Errorf("%s %s has a wildcard: %v", o.kind(), o.name(), o.get("rules"))
		}
	}
	cr := find(t, objs, "ClusterRole", "isthmus-controller")
	for _, r := range cr.get("rules").([]any) {
		r := object(r.(map[string]any))
		groups, verbs := strs(r.get("apiGroups")), strs(r.get("verbs"))
		if len(groups) == 1 && groups[0] == "isthmus.dev" {
			continue
		}
		if res := strs(r.get("resources")); len(groups) == 1 && groups[0] == "" && slices.Equal(res, []string{"nodes/status"}) && slices.Equal(verbs, []string{"patch"}) {
			continue
		}
		// Warning Events on Services a node refuses (kube/README.md, Services).
		if res := strs(r.get("resources")); len(groups) == 1 && groups[0] == "" && slices.Equal(res, []string{"events"}) && slices.Equal(verbs, []string{"create"}) {
			continue
		}
		for _, v := range verbs {
			if v != "get" && v != "list" && v != "watch" {
				t.Errorf("ClusterRole rule %v grants %s outside isthmus.dev", r, v)
			}
		}
	}
	role := find(t, objs, "Role", "isthmus-controller")
	if got := flatten(role.get("rules")); !strings.Contains(got, "leases") || strings.Contains(got, "delete") {
		t.Errorf("Role rules %s: want leases without delete", got)
	}
	dep := find(t, objs, "Deployment", "isthmus-controller")
	if r := dep.get("spec", "replicas"); r != 2 {
		t.Errorf("controller replicas %v, want 2", r)
	}
}

// TestChartDaemonConfigs: every isthmusd configuration the chart renders
// (node and route reflector) passes isthmusd check-config, which parses it
// as the daemon does and commits its startup-config into a scratch store.
func TestChartDaemonConfigs(t *testing.T) {
	objs := render(t)
	bin := filepath.Join(t.TempDir(), "isthmusd")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/isthmusd").CombinedOutput(); err != nil {
		t.Fatalf("build isthmusd: %v\n%s", err, out)
	}
	env := append(os.Environ(), "NODE_NAME=node1", "NODE_IP=10.0.0.3", "ISTHMUS_GNMI_USERNAME=isthmus",
		"ISTHMUS_GNMI_PASSWORD_HASH=$2a$10$0123456789012345678901uO9Q3nXd2mHq1U3bQk8w0v0Zb1mXcW2",
		"ISTHMUS_BGP_PASSWORD_192_0_2_1=gateway-secret")
	for _, name := range []string{"isthmus-node", "isthmus-route-reflector"} {
		cm := find(t, objs, "ConfigMap", name)
		conf, _ := cm.get("data", "isthmusd.yaml").(string)
		p := filepath.Join(t.TempDir(), "isthmusd.yaml")
		if err := os.WriteFile(p, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "check-config", "--config", p)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s: isthmusd check-config: %v\n%s\n%s", name, err, out, conf)
		}
	}
}

// TestChartInstallCNI: the DaemonSet's init container, run as rendered
// (its mounts mapped to directories of the test, the ConfigMap's keys as
// files), installs the plugin and a conflist that calls isthmus-cni on
// isthmusd's socket.
func TestChartInstallCNI(t *testing.T) {
	objs := render(t)
	ds := find(t, objs, "DaemonSet", "isthmus-node")
	ic := object(ds.get("spec", "template", "spec", "initContainers", 0).(map[string]any))
	root := t.TempDir()
	mounts := map[string]string{} // mount path in the container → directory here
	for _, m := range ic.get("volumeMounts").([]any) {
		m := m.(map[string]any)
		d := filepath.Join(root, m["name"].(string))
		os.MkdirAll(d, 0o755)
		mounts[m["mountPath"].(string)] = d
	}
	for k, v := range find(t, objs, "ConfigMap", "isthmus-node").get("data").(map[string]any) {
		os.WriteFile(filepath.Join(mounts["/etc/isthmus"], k), []byte(v.(string)), 0o644)
	}
	bin := filepath.Join(root, "isthmusd")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/isthmusd").CombinedOutput(); err != nil {
		t.Fatalf("build isthmusd: %v\n%s", err, out)
	}
	plugin := filepath.Join(root, "isthmus-cni")
	os.WriteFile(plugin, []byte("plugin"), 0o755)
	image := map[string]string{"/usr/local/bin/isthmusd": bin, "/usr/local/bin/isthmus-cni": plugin}
	var args []string
	for _, a := range strs(ic.get("command")) {
		if p, ok := image[a]; ok {
			a = p
		}
		for mp, d := range mounts {
			if a == mp || strings.HasPrefix(a, mp+"/") {
				a = d + strings.TrimPrefix(a, mp)
			}
		}
		args = append(args, a)
	}
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("init container %v: %v\n%s", args, err, out)
	}
	if st, err := os.Stat(filepath.Join(mounts["/host/cni/bin"], "isthmus-cni")); err != nil || st.Mode()&0o111 == 0 {
		t.Errorf("plugin not installed executable: %v %v", st, err)
	}
	conf, err := os.ReadFile(filepath.Join(mounts["/host/cni/net.d"], "10-isthmus.conflist"))
	if err != nil {
		t.Fatalf("conflist not installed: %v", err)
	}
	var cl struct {
		Name    string           `json:"name"`
		Plugins []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(conf, &cl); err != nil || cl.Name != "isthmus" || len(cl.Plugins) != 1 ||
		cl.Plugins[0]["type"] != "isthmus-cni" || cl.Plugins[0]["socket"] != "/run/isthmus/cni.sock" {
		t.Errorf("installed conflist %s (%v)", conf, err)
	}
}

func strs(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

func flatten(v any) string {
	b, err := yaml.Marshal(v)
	if err != nil {
		return ""
	}
	return string(b)
}
