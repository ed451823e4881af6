package k8s

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ChartNamespace is the namespace the chart is installed in.
const ChartNamespace = "isthmus-system"

// chartValues are the values the testbed installs deploy/isthmus with.
// With OwnMounts the DaemonSet runs isthmusd on c1 and c2 (each node's
// host paths its own), the route reflector on c1 peers with dcgw (iBGP, AS
// 65000 as the data center), and the controller configures both. Without,
// each node's isthmusd is the testbed's process, so the DaemonSet is pinned
// to a label no node has and the reflector takes BGP port 1179 (the node's
// own isthmusd holds 179); see testbed/README.md, "Kubernetes".
func (c *Cluster) chartValues() string {
	if !c.ownMounts {
		return `routeReflector:
  replicas: 1
  addresses: [10.10.0.11]
  bgpPort: 1179
node:
  nodeSelector: {isthmus.dev/daemonset: "not-in-this-testbed"}
controller:
  logLevel: debug
`
	}
	cniBin, cniConf, data := c.hostView()
	return fmt.Sprintf(`bgp: {as: 65000}
routeReflector:
  replicas: 1
  addresses: [10.10.0.11]
  gateways: [{address: 10.20.0.1, as: 65000}]
node:
  dataDir: %s
  cni: {binDir: %s, confDir: %s}
controller:
  logLevel: debug
`, data, cniBin, cniConf)
}

// InstallChart installs Isthmus from its Helm chart the way a user does:
// the images of `make images` (imagesDir/{isthmusd,isthmus-controller}.tar)
// imported on every node, the gNMI credentials Secret, c1 labelled for the
// route reflector, then `helm template` (CRDs first) applied with kubectl.
// It returns once the controller and the route reflector are rolled out.
func (c *Cluster) InstallChart(ctx context.Context, helm, imagesDir string) error {
	for _, n := range c.nodeNames {
		for _, img := range []string{"isthmusd.tar", "isthmus-controller.tar"} {
			if _, err := c.Nodes[n].ctr(ctx, "images", "import", filepath.Join(imagesDir, img)); err != nil {
				return fmt.Errorf("install chart: %w", err)
			}
		}
	}
	dir := filepath.Join(c.Dir, "chart")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("install chart: %w", err)
	}
	password, err := randomHex()
	if err != nil {
		return err
	}
	hash, err := hashPassword(ctx, c.tb.Binaries().Isthmusd, password)
	if err != nil {
		return err
	}
	chart := filepath.Join(RepoRoot(), "deploy", "isthmus")
	values := filepath.Join(dir, "values.yaml")
	if err := os.WriteFile(values, []byte(c.chartValues()), 0o644); err != nil {
		return fmt.Errorf("install chart: %w", err)
	}
	crds, err := exec.CommandContext(ctx, helm, "show", "crds", chart).Output()
	if err != nil {
		return fmt.Errorf("helm show crds: %w", err)
	}
	rendered, err := exec.CommandContext(ctx, helm, "template", "isthmus", chart, "-n", ChartNamespace, "-f", values).Output()
	if err != nil {
		return fmt.Errorf("helm template: %w", exitDetail(err))
	}
	crdFile, manifest := filepath.Join(dir, "crds.yaml"), filepath.Join(dir, "isthmus.yaml")
	if err := os.WriteFile(crdFile, crds, 0o644); err != nil {
		return fmt.Errorf("install chart: %w", err)
	}
	if err := os.WriteFile(manifest, rendered, 0o644); err != nil {
		return fmt.Errorf("install chart: %w", err)
	}
	steps := [][]string{
		{"create", "namespace", ChartNamespace},
		{"-n", ChartNamespace, "create", "secret", "generic", "isthmus-gnmi",
			"--from-literal=username=isthmus", "--from-literal=password=" + password, "--from-literal=password-hash=" + hash},
		{"label", "node", "c1", "isthmus.dev/route-reflector=true"},
		{"apply", "--server-side", "-f", crdFile},
		{"wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"},
		{"apply", "--server-side", "-f", manifest},
		{"-n", ChartNamespace, "rollout", "status", "deployment/isthmus-route-reflector", "--timeout=120s"},
		{"-n", ChartNamespace, "rollout", "status", "daemonset/isthmus-node", "--timeout=120s"},
		{"-n", ChartNamespace, "rollout", "status", "deployment/isthmus-controller", "--timeout=120s"},
	}
	for _, args := range steps {
		if _, err := c.Kubectl(ctx, args...); err != nil {
			return fmt.Errorf("install chart: %w", err)
		}
	}
	c.gnmiPassword = password
	return nil
}

// GNMIPassword is the password of user "isthmus" in the chart's Secret.
func (c *Cluster) GNMIPassword() string { return c.gnmiPassword }

func hashPassword(ctx context.Context, isthmusd, password string) (string, error) {
	cmd := exec.CommandContext(ctx, isthmusd, "hash-password")
	cmd.Stdin = strings.NewReader(password + "\n")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("isthmusd hash-password: %w", exitDetail(err))
	}
	return strings.TrimSpace(string(out)), nil
}

func exitDetail(err error) error {
	if ee, ok := err.(*exec.ExitError); ok && len(ee.Stderr) > 0 {
		return fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
	}
	return err
}
