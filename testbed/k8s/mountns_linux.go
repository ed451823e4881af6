package k8s

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The host paths the chart's DaemonSet mounts. In OwnMounts mode every
// node sees its own directory at each (a mount namespace per node), as if
// the nodes were separate machines; the paths are the same on every node,
// as a DaemonSet's must be.
const runIsthmus = "/run/isthmus" // fixed in the chart (the CNI socket's directory)

// hostView returns the paths, the same on every node, that each node's
// mount namespace binds to its own directories: CNI bin and conf dirs and
// isthmusd's data dir (chart values node.cni.binDir, node.cni.confDir,
// node.dataDir).
func (c *Cluster) hostView() (cniBin, cniConf, data string) {
	v := filepath.Join(c.Dir, "host")
	return filepath.Join(v, "opt-cni-bin"), filepath.Join(v, "etc-cni-net.d"), filepath.Join(v, "var-lib-isthmus")
}

// startMountNS starts the process that holds node n's mount namespace: a
// private copy of the caller's, with the node's own directories bound at
// hostView's paths and /run/isthmus, a bpffs of its own at /sys/fs/bpf,
// then every mount made shared (the kubelet requires it for the chart's
// Bidirectional and HostToContainer mounts). containerd and the kubelet
// enter it, and so do the containers they start.
func (c *Cluster) startMountNS(ctx context.Context, n *Node) error {
	cniBin, cniConf, data := c.hostView()
	for _, d := range []string{cniBin, cniConf, data} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("start node %s: %w", n.Name, err)
		}
	}
	if !exists(runIsthmus) {
		if err := os.MkdirAll(runIsthmus, 0o755); err != nil {
			return fmt.Errorf("start node %s: %w", n.Name, err)
		}
		c.madeRunIsthmus = true
		if err := c.saveMadeDirs(); err != nil {
			return err
		}
	}
	own := func(s string) string { return filepath.Join(n.Dir, s) }
	for _, d := range []string{"cni/bin", "cni/net.d", "isthmus-data", "run-isthmus"} {
		if err := os.MkdirAll(own(d), 0o755); err != nil {
			return fmt.Errorf("start node %s: %w", n.Name, err)
		}
	}
	ready := own("mountns.ready")
	binds := [][2]string{{own("cni/bin"), cniBin}, {own("cni/net.d"), cniConf}, {own("isthmus-data"), data}, {own("run-isthmus"), runIsthmus}}
	var script strings.Builder
	script.WriteString("set -e\n")
	for _, b := range binds {
		fmt.Fprintf(&script, "mount --bind %q %q\n", b[0], b[1])
	}
	fmt.Fprintf(&script, "mount -t bpf bpf /sys/fs/bpf\nmount --make-rshared /\ntouch %q\nexec sleep infinity\n", ready)
	p, err := c.tb.StartWith(ctx, n.Name, "mountns", hostMounts, "unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script.String())
	if err != nil {
		return err
	}
	n.mountNS = p
	deadline := time.Now().Add(10 * time.Second)
	for !exists(ready) {
		select {
		case <-p.Done():
			return fmt.Errorf("mount namespace of %s: %v; log:\n%s", n.Name, p.Err(), p.Tail(10))
		case <-ctx.Done():
			return fmt.Errorf("mount namespace of %s: %w", n.Name, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("mount namespace of %s not ready after 10s; log:\n%s", n.Name, p.Tail(10))
		}
	}
	return nil
}

// enter prefixes argv with what puts it in the node's mount namespace
// (OwnMounts), or returns it as is.
func (n *Node) enter(argv ...string) []string {
	if n.mountNS == nil {
		return argv
	}
	return append([]string{"nsenter", "--target", strconv.Itoa(n.mountNS.PID), "--mount", "--"}, argv...)
}

// removeHostView removes /run/isthmus when the cluster made it.
func (c *Cluster) removeHostView() error {
	if !c.madeRunIsthmus {
		return nil
	}
	if err := os.Remove(runIsthmus); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", runIsthmus, err)
	}
	return nil
}
