package k8s

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/isthmus-net/isthmus/testbed"
)

// Node is a Kubernetes node of the cluster: containerd and a kubelet in a
// testbed host's network namespace, with state directories, sockets and a
// cgroup root of their own.
type Node struct {
	// Name is the testbed host and the Kubernetes Node's name.
	Name string
	// Dir holds everything the node writes (containerd's root and state,
	// the kubelet's root, CNI bin and conf dirs, pod logs).
	Dir string
	// Socket is containerd's gRPC socket.
	Socket string
	// CgroupRoot is the kubelet's cgroup root (cgroupfs driver), the same
	// path under every cgroup v1 hierarchy.
	CgroupRoot string
	// IP is the node's InternalIP (its underlay address).
	IP string

	containerd, kubelet *testbed.Process
	mountNS             *testbed.Process // holds the node's mount namespace (OwnMounts)
	containerIDs        []string         // seen at teardown, for their shim sockets
}

// hostMounts runs a process in a node's network namespace but the
// caller's mount namespace, so containerd, the kubelet and the CNI plugin
// share one view of the node's directories and mounts.
var hostMounts = testbed.StartOptions{HostMounts: true}

// startNode sets up and starts containerd and the kubelet on host, imports
// the images and installs the CNI plugin with its conflist.
func (c *Cluster) startNode(ctx context.Context, name string) (*Node, error) {
	ip, err := c.tb.Topology().UnderlayAddr(name)
	if err != nil {
		return nil, fmt.Errorf("start node %s: %w", name, err)
	}
	dir := filepath.Join(c.Dir, "nodes", name)
	n := &Node{Name: name, Dir: dir, Socket: filepath.Join(dir, "containerd.sock"),
		CgroupRoot: "/" + c.tb.Namespace(name), IP: ip.String()}
	c.Nodes[name] = n
	for _, d := range []string{"containerd/root", "containerd/state", "runc", "cni/bin", "cni/net.d", "kubelet/root", "kubelet/certs", "pod-logs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("start node %s: %w", name, err)
		}
	}
	if err := makeCgroupRoot(n.CgroupRoot); err != nil {
		return nil, fmt.Errorf("start node %s: %w", name, err)
	}
	cniBin, cniConf := filepath.Join(dir, "cni", "bin"), filepath.Join(dir, "cni", "net.d")
	if c.ownMounts {
		// The chart's init container installs isthmus-cni and its conflist.
		if err := c.startMountNS(ctx, n); err != nil {
			return nil, err
		}
		if err := n.installLoopback(c); err != nil {
			return nil, err
		}
		cniBin, cniConf, _ = c.hostView()
	} else if err := n.installCNI(ctx, c); err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "containerd", "config.toml")
	if err := os.WriteFile(conf, []byte(n.containerdConfig(cniBin, cniConf)), 0o644); err != nil {
		return nil, fmt.Errorf("start node %s: %w", name, err)
	}
	n.containerd, err = c.tb.StartWith(ctx, name, "containerd", hostMounts, n.enter("containerd", "--config", conf)...)
	if err != nil {
		return nil, err
	}
	if err := n.waitContainerd(ctx); err != nil {
		return nil, err
	}
	for _, img := range []string{"pause.tar", "podserver.tar"} {
		if _, err := n.ctr(ctx, "images", "import", filepath.Join(c.images, img)); err != nil {
			return nil, fmt.Errorf("start node %s: %w", name, err)
		}
	}
	kcfg := filepath.Join(dir, "kubelet", "config.yaml")
	if err := os.WriteFile(kcfg, []byte(n.kubeletConfig()), 0o644); err != nil {
		return nil, fmt.Errorf("start node %s: %w", name, err)
	}
	kubeconfigPath := filepath.Join(c.Dir, "control-plane", "kubelet-"+name+".kubeconfig")
	n.kubelet, err = c.tb.StartWith(ctx, name, "kubelet", hostMounts, n.enter(filepath.Join(c.bins, "kubelet"),
		"--config", kcfg,
		"--kubeconfig", kubeconfigPath,
		"--root-dir", filepath.Join(dir, "kubelet", "root"),
		"--cert-dir", filepath.Join(dir, "kubelet", "certs"),
		"--hostname-override", name,
		"--node-ip", n.IP,
		"--node-labels", "isthmus.dev/testbed=true",
		"--v=1")...)
	if err != nil {
		return nil, err
	}
	return n, nil
}

// installCNI runs `isthmusd install-cni`, as the chart's init container
// does, with a conflist that calls isthmus-cni on the node's isthmusd, and
// puts the loopback plugin (containerd brings up each pod's lo with it)
// next to it.
func (n *Node) installCNI(ctx context.Context, c *Cluster) error {
	b := c.tb.Binaries()
	if b.Isthmusd == "" || b.CNI == "" {
		return fmt.Errorf("install cni on %s: %w: no isthmusd or isthmus-cni binary", n.Name, testbed.ErrNotAvailable)
	}
	// CNI 1.0.0: Debian's containerd 1.6 (libcni 1.1) refuses a 1.1.0
	// result ("unsupported CNI result version").
	conflist, err := json.Marshal(map[string]any{
		"cniVersion": "1.0.0", "name": CNINetwork,
		"plugins": []any{map[string]any{"type": "isthmus-cni", "socket": c.tb.CNISocket(n.Name)}},
	})
	if err != nil {
		return fmt.Errorf("install cni on %s: %w", n.Name, err)
	}
	src := filepath.Join(n.Dir, "10-"+CNINetwork+".conflist")
	if err := os.WriteFile(src, conflist, 0o644); err != nil {
		return fmt.Errorf("install cni on %s: %w", n.Name, err)
	}
	out, err := exec.CommandContext(ctx, b.Isthmusd, "install-cni", "--plugin", b.CNI,
		"--bin-dir", filepath.Join(n.Dir, "cni", "bin"), "--conf-dir", filepath.Join(n.Dir, "cni", "net.d"),
		"--conflist", src).CombinedOutput()
	if err != nil {
		return fmt.Errorf("install cni on %s: %w: %s", n.Name, err, out)
	}
	return n.installLoopback(c)
}

// installLoopback puts the CNI loopback plugin in the node's CNI bin dir.
func (n *Node) installLoopback(c *Cluster) error {
	lo, err := os.ReadFile(filepath.Join(c.bins, "loopback"))
	if err != nil {
		return fmt.Errorf("install cni on %s: %w", n.Name, err)
	}
	if err := os.WriteFile(filepath.Join(n.Dir, "cni", "bin", "loopback"), lo, 0o755); err != nil {
		return fmt.Errorf("install cni on %s: %w", n.Name, err)
	}
	return nil
}

// CNINetwork is the name of the conflist every node gets.
const CNINetwork = "isthmus"

func (n *Node) containerdConfig(cniBin, cniConf string) string {
	p := func(s string) string { return filepath.Join(n.Dir, s) }
	return fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]

[grpc]
  address = %q

[ttrpc]
  address = %q

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # This machine withholds CAP_SYS_RESOURCE even from root, so runc cannot
  # lower a process's oom_score_adj (the kubelet asks -998 for sandboxes):
  # keep it at containerd's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %q
`, p("containerd/root"), p("containerd/state"), n.Socket, n.Socket+".ttrpc", PauseImage,
		cniBin, cniConf, p("runc"))
}

func (n *Node) kubeletConfig() string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
cgroupRoot: %s
cgroupsPerQOS: true
failCgroupV1: false
failSwapOn: false
enforceNodeAllocatable: []
containerRuntimeEndpoint: unix://%s
imageServiceEndpoint: unix://%s
podLogsDir: %s
resolvConf: ""
maxPods: 30
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "1Mi", nodefs.available: "1%%", nodefs.inodesFree: "1%%", imagefs.available: "1%%"}
nodeStatusUpdateFrequency: 2s
syncFrequency: 10s
shutdownGracePeriod: 0s
`, n.IP, n.CgroupRoot, n.Socket, n.Socket, filepath.Join(n.Dir, "pod-logs"))
}

// ctr runs ctr against the node's containerd in the k8s.io namespace.
func (n *Node) ctr(ctx context.Context, args ...string) ([]byte, error) {
	out, err := exec.CommandContext(ctx, "ctr", append([]string{"--address", n.Socket, "-n", "k8s.io"}, args...)...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("ctr %s on %s: %w: %s", strings.Join(args, " "), n.Name, err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

func (n *Node) waitContainerd(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := n.ctr(ctx, "version"); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("containerd on %s not serving after 30s: %w; log:\n%s", n.Name, err, n.containerd.Tail(20))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for containerd on %s: %w", n.Name, ctx.Err())
		case <-n.containerd.Done():
			return fmt.Errorf("containerd on %s exited: %v; log:\n%s", n.Name, n.containerd.Err(), n.containerd.Tail(20))
		case <-time.After(100 * time.Millisecond):
		}
	}
}
