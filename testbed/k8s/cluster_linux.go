package k8s

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/isthmus-net/isthmus/testbed"
)

// Options tune Up.
type Options struct {
	// Log receives progress; nil discards.
	Log *slog.Logger
	// Bins holds the programs of tools/kube (Programs); empty means BinDir.
	Bins string
	// Images holds pause.tar and podserver.tar (BuildImages).
	Images string
	// Nodes are the testbed hosts that become nodes; empty means c1 and c2.
	Nodes []string
	// OwnMounts gives each node a mount namespace of its own in which the
	// chart's host paths are the node's (CNI dirs, isthmusd's data dir,
	// /run/isthmus, a bpffs), so isthmusd can run as the chart's DaemonSet
	// pod on every node; the node's isthmusd must then not run as a
	// process, and the CNI plugin is the chart's to install.
	OwnMounts bool
}

// Cluster is a Kubernetes cluster in a testbed: its control plane in
// ControlPlaneNode and a node per host.
type Cluster struct {
	// Dir holds the cluster's files: control-plane/ (certificates, tokens,
	// kubeconfigs, etcd) and nodes/<name>/.
	Dir string
	// Server is the API server's URL, reachable from the topology's nodes.
	Server string
	// Kubeconfig is an admin kubeconfig (system:masters) for kubectl run in
	// a topology node (Kubectl does that).
	Kubeconfig string
	// Config reaches the API server from the caller's namespace (it dials
	// from inside the control-plane node).
	Config *rest.Config
	// Client is a clientset on Config.
	Client kubernetes.Interface
	// Nodes are the cluster's nodes by name.
	Nodes map[string]*Node

	tb        *testbed.Testbed
	log       *slog.Logger
	bins      string
	images    string
	nodeNames []string
	tokens    map[string]string           // by identity: admin, kube-scheduler, kubelet-<node>, ...
	procs     map[string]*testbed.Process // the control plane's, by name
	netns     []string                    // pod sandboxes' network namespaces seen at Down
	// gnmiPassword is user isthmus's in the chart's Secret (InstallChart).
	gnmiPassword   string
	ownMounts      bool     // Options.OwnMounts
	madeRunIsthmus bool     // /run/isthmus was made for the nodes' mount namespaces
	madeHostDirs   []string // kubeletHostDirs and shimHostDirs absent before the cluster
}

// kubeletHostDirs are paths the kubelet uses whatever its root dir is.
var kubeletHostDirs = []string{"/var/lib/kubelet", "/var/log/containers"}

// shimHostDirs are where containerd 1.6's shims put their sockets whatever
// containerd's state directory is (shimSockets), innermost first. On a
// machine without them the first container makes them; Down removes them
// only when they are empty, since a containerd of the machine started
// meanwhile may use them too.
var shimHostDirs = []string{"/run/containerd/s", "/run/containerd"}

// Up starts the control plane in tb's ControlPlaneNode (the topology must
// be Topology()) and makes each host a node; it returns once every node is
// Ready (registered, with OwnMounts: the chart then makes them Ready). isthmusd must already run on each host (its CNI socket serves the
// pods). On error it tears down what it started.
func Up(ctx context.Context, tb *testbed.Testbed, o Options) (*Cluster, error) {
	if _, ok := tb.Topology().Node(ControlPlaneNode); !ok {
		return nil, fmt.Errorf("start cluster: the topology has no %q node (use k8s.Topology())", ControlPlaneNode)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Bins == "" {
		d, err := BinDir(RepoRoot())
		if err != nil {
			return nil, fmt.Errorf("start cluster: %w", err)
		}
		o.Bins = d
	}
	if err := CheckBinaries(o.Bins); err != nil {
		return nil, fmt.Errorf("start cluster: %w: %w", testbed.ErrNotAvailable, err)
	}
	if len(o.Nodes) == 0 {
		o.Nodes = []string{"c1", "c2"}
	}
	c := &Cluster{
		Dir:    filepath.Join(tb.Dir(), "k8s"),
		Server: "https://" + net.JoinHostPort(ControlPlaneAddr.String(), strconv.Itoa(APIServerPort)),
		Nodes:  map[string]*Node{}, procs: map[string]*testbed.Process{},
		tb: tb, log: o.Log, bins: o.Bins, images: o.Images, nodeNames: o.Nodes, ownMounts: o.OwnMounts,
	}
	// The kubelet makes these whatever its flags say (device plugin socket,
	// container log links); Down removes them when they were not there.
	for _, d := range slices.Concat(kubeletHostDirs, shimHostDirs) {
		if !exists(d) {
			c.madeHostDirs = append(c.madeHostDirs, d)
		}
	}
	if err := c.saveMadeDirs(); err != nil {
		return nil, err
	}
	if err := c.up(ctx); err != nil {
		return nil, errors.Join(err, c.Down(context.WithoutCancel(ctx)))
	}
	return c, nil
}

func (c *Cluster) up(ctx context.Context) error {
	start := time.Now()
	if err := c.controlPlane(ctx); err != nil {
		return err
	}
	c.Config = &rest.Config{
		Host: c.Server, BearerToken: c.tokens["admin"],
		TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return c.tb.Dial(ctx, ControlPlaneNode, network, addr)
		},
		QPS: 50, Burst: 100,
	}
	kc, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return fmt.Errorf("start cluster: %w", err)
	}
	c.Client = kc
	c.log.Info("control plane ready", "server", c.Server, "took", time.Since(start).Round(time.Millisecond))
	for _, n := range c.nodeNames {
		if _, err := c.startNode(ctx, n); err != nil {
			return err
		}
	}
	for _, n := range c.nodeNames {
		if c.ownMounts {
			// Not Ready before the chart's DaemonSet installs the CNI plugin.
			if err := c.waitNodeRegistered(ctx, n, time.Minute); err != nil {
				return err
			}
			continue
		}
		if err := c.WaitNodeReady(ctx, n, 2*time.Minute); err != nil {
			return err
		}
	}
	c.log.Info("cluster up", "nodes", c.nodeNames, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// WaitNodeReady waits until Node name reports Ready.
func (c *Cluster) WaitNodeReady(ctx context.Context, name string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	for {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			last = "no Ready condition"
			for _, cond := range n.Status.Conditions {
				if cond.Type == corev1.NodeReady {
					if cond.Status == corev1.ConditionTrue {
						return nil
					}
					last = cond.Reason + ": " + cond.Message
				}
			}
		} else {
			last = err.Error()
		}
		var exited <-chan struct{}
		tail := ""
		if nd := c.Nodes[name]; nd != nil && nd.kubelet != nil {
			exited = nd.kubelet.Done()
			tail = nd.kubelet.Tail(15)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s not Ready after %s: %s; kubelet log:\n%s", name, timeout, last, tail)
		case <-exited:
			return fmt.Errorf("kubelet on %s exited: %s; log:\n%s", name, last, c.Nodes[name].kubelet.Tail(15))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// waitNodeRegistered waits until the kubelet has registered Node name.
func (c *Cluster) waitNodeRegistered(ctx context.Context, name string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return poll(ctx, "node "+name+" registered", func() (bool, error) {
		_, err := c.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		return err == nil, err
	})
}

// Kubectl runs kubectl (v1.37.2, from the tools/kube cache) as the admin
// from inside the control-plane node, and returns its combined output.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) ([]byte, error) {
	argv := append([]string{filepath.Join(c.bins, "kubectl"), "--kubeconfig", c.Kubeconfig}, args...)
	out, err := c.tb.Exec(ctx, ControlPlaneNode, argv...)
	if err != nil {
		return out, fmt.Errorf("kubectl %v: %w", args, err)
	}
	return out, nil
}

// KubectlCommand is the command line that runs kubectl on this cluster
// from a shell on the machine (for the demo's "poke at it" hints).
func (c *Cluster) KubectlCommand() string {
	return fmt.Sprintf("ip netns exec %s %s --kubeconfig %s", c.tb.Namespace(ControlPlaneNode), filepath.Join(c.bins, "kubectl"), c.Kubeconfig)
}

// makeCgroupRoot creates root under every cgroup v1 hierarchy the kubelet
// uses; a cpuset child starts with the parent's cpus and mems.
func makeCgroupRoot(root string) error {
	for _, h := range cgroupHierarchies() {
		d := filepath.Join(h, root)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("make cgroup %s: %w", d, err)
		}
		if filepath.Base(h) == "cpuset" {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				b, err := os.ReadFile(filepath.Join(h, f))
				if err != nil {
					return fmt.Errorf("read %s: %w", f, err)
				}
				if err := os.WriteFile(filepath.Join(d, f), b, 0o644); err != nil {
					return fmt.Errorf("write %s of %s: %w", f, d, err)
				}
			}
		}
	}
	return nil
}

// cgroupHierarchies are the cgroup hierarchies mounted under
// /sys/fs/cgroup: every v1 controller's and the named systemd one, all of
// which the kubelet checks for its cgroup root, and the v2 one mounted
// beside them ("unified", where runc puts every container too).
func cgroupHierarchies() []string {
	var hs []string
	for _, name := range []string{"unified", "systemd", "blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "hugetlb", "memory", "net_cls", "net_prio", "perf_event", "pids"} {
		p := filepath.Join("/sys/fs/cgroup", name)
		real, err := filepath.EvalSymlinks(p)
		if err != nil || slices.Contains(hs, real) {
			continue
		}
		if fi, err := os.Stat(real); err == nil && fi.IsDir() {
			hs = append(hs, real)
		}
	}
	return hs
}

// exists reports whether path exists.
func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
