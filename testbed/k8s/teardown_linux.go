package k8s

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Down removes the cluster completely: the workloads (pods deleted through
// the API, so each kubelet stops its containers and CNI DEL runs), the
// kubelets, every container process left in a node's cgroup root,
// containerd and its shims, the mounts under Dir, the pod network
// namespaces, the cgroup roots, the control plane, and Dir itself.
// Leftovers then reports nothing.
func (c *Cluster) Down(ctx context.Context) error {
	var errs []error
	c.stopProc(ctx, "kube-controller-manager", &errs)
	c.stopProc(ctx, "kube-scheduler", &errs)
	if c.Client != nil && c.kubeletsRunning() {
		if err := c.deleteAllPods(ctx, 90*time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	for _, n := range c.Nodes {
		c.netns = append(c.netns, n.sandboxNetns(ctx)...)
		if n.kubelet != nil {
			if err := n.kubelet.Stop(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		killCgroup(n.CgroupRoot)
		n.removeContainers(ctx)
		if n.containerd != nil {
			if err := n.containerd.Stop(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		for _, pid := range processesMentioning(n.Socket) {
			_ = syscall.Kill(pid, syscall.SIGKILL) // a shim of this node; gone already is fine
		}
		for _, sock := range n.shimSockets() {
			if err := os.Remove(sock); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("remove shim socket: %w", err))
			}
		}
		if n.mountNS != nil {
			// Its mounts (bpffs, binds, the kubelet's volumes) go with it.
			if err := n.mountNS.Stop(ctx); err != nil {
				errs = append(errs, err)
			}
		}
	}
	errs = append(errs, c.removeHostView(), c.removeContainerLogLinks())
	for _, d := range c.madeHostDirs {
		errs = append(errs, removeMadeDir(d))
	}
	errs = append(errs, unmountUnder(c.Dir))
	for _, p := range c.netns {
		_ = syscall.Unmount(p, syscall.MNT_DETACH) // not mounted: containerd removed it
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove pod netns %s: %w", p, err))
		}
	}
	for _, n := range c.Nodes {
		errs = append(errs, removeCgroup(n.CgroupRoot))
	}
	c.stopProc(ctx, "kube-apiserver", &errs)
	c.stopProc(ctx, "etcd", &errs)
	if err := os.RemoveAll(c.Dir); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", c.Dir, err))
	}
	return errors.Join(errs...)
}

// Leftovers lists what of the cluster is still on the machine by what it
// recorded: mounts under Dir, Dir itself, pod network namespaces, cgroups
// and processes of its nodes, host directories it made. Empty after Down.
// MachineSnapshot compares the machine itself.
func (c *Cluster) Leftovers() []string {
	var left []string
	for _, m := range mountsUnder(c.Dir) {
		left = append(left, "mount "+m)
	}
	if exists(c.Dir) {
		left = append(left, "directory "+c.Dir)
	}
	if c.madeRunIsthmus && exists(runIsthmus) {
		left = append(left, "directory "+runIsthmus)
	}
	for _, d := range c.madeHostDirs {
		if exists(d) {
			left = append(left, "directory "+d)
		}
	}
	for _, p := range c.netns {
		if exists(p) {
			left = append(left, "pod netns "+p)
		}
	}
	for _, n := range c.Nodes {
		for _, h := range cgroupHierarchies() {
			if d := filepath.Join(h, n.CgroupRoot); exists(d) {
				left = append(left, "cgroup "+d)
			}
		}
		for _, pid := range processesMentioning(n.Socket) {
			left = append(left, fmt.Sprintf("process %d of %s's containerd", pid, n.Name))
		}
		for _, sock := range n.shimSockets() {
			if exists(sock) {
				left = append(left, "shim socket "+sock)
			}
		}
	}
	return left
}

func (c *Cluster) stopProc(ctx context.Context, name string, errs *[]error) {
	if p := c.procs[name]; p != nil {
		if err := p.Stop(ctx); err != nil {
			*errs = append(*errs, err)
		}
	}
}

func (c *Cluster) kubeletsRunning() bool {
	for _, n := range c.Nodes {
		if n.kubelet != nil {
			select {
			case <-n.kubelet.Done():
			default:
				return true
			}
		}
	}
	return false
}

// deleteAllPods deletes every pod with a 1 s grace period and waits until
// the kubelets have confirmed them gone: the workloads first, then the
// chart's (its isthmusd serves the workloads' CNI DEL).
func (c *Cluster) deleteAllPods(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	nss, err := c.Client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("delete pods: %w", err)
	}
	for _, last := range []bool{false, true} {
		for _, ns := range nss.Items {
			if (ns.Name == ChartNamespace) != last {
				continue
			}
			if err := c.deletePods(ctx, ns.Name); err != nil {
				return err
			}
		}
	}
	return nil
}

// deletePods deletes the pods of ns and waits until they are gone.
func (c *Cluster) deletePods(ctx context.Context, ns string) error {
	grace := int64(1)
	if err := c.Client.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &grace}, metav1.ListOptions{}); err != nil {
		return fmt.Errorf("delete pods of %s: %w", ns, err)
	}
	return poll(ctx, "pods of "+ns+" gone", func() (bool, error) {
		pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		if n := len(pods.Items); n > 0 {
			return false, fmt.Errorf("%d left", n)
		}
		return true, nil
	})
}

// sandboxNetns returns the network namespace paths of the node's pod
// sandboxes, from their runtime specs.
func (n *Node) sandboxNetns(ctx context.Context) []string {
	if n.containerd == nil {
		return nil
	}
	return n.sandboxNetnsAny(ctx)
}

// sandboxNetnsAny is sandboxNetns for a containerd this program may not
// have started.
func (n *Node) sandboxNetnsAny(ctx context.Context) []string {
	ids, err := n.ctr(ctx, "containers", "ls", "-q")
	if err != nil {
		return nil
	}
	var paths []string
	for _, id := range strings.Fields(string(ids)) {
		out, err := n.ctr(ctx, "containers", "info", id)
		if err != nil {
			continue
		}
		var info struct {
			Spec struct {
				Linux struct {
					Namespaces []struct{ Type, Path string } `json:"namespaces"`
				} `json:"linux"`
			} `json:"Spec"`
		}
		if json.Unmarshal(out, &info) != nil {
			continue
		}
		for _, ns := range info.Spec.Linux.Namespaces {
			if ns.Type == "network" && strings.HasPrefix(ns.Path, "/var/run/netns/") {
				paths = append(paths, ns.Path)
			}
		}
	}
	return paths
}

// killCgroup SIGKILLs every process in root's cgroups (the node's pods),
// a few rounds, for processes forked meanwhile.
func killCgroup(root string) {
	for range 5 {
		pids := cgroupPids(root)
		if len(pids) == 0 {
			return
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL) // already gone is fine
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func cgroupPids(root string) []int {
	seen := map[int]bool{}
	for _, h := range cgroupHierarchies() {
		_ = filepath.WalkDir(filepath.Join(h, root), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
				return nil
			}
			b, _ := os.ReadFile(p)
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil {
					seen[pid] = true
				}
			}
			return nil
		})
	}
	pids := make([]int, 0, len(seen))
	for p := range seen {
		pids = append(pids, p)
	}
	return pids
}

// removeCgroup removes root and every cgroup below it, deepest first, in
// every hierarchy.
func removeCgroup(root string) error {
	var errs []error
	for _, h := range cgroupHierarchies() {
		top := filepath.Join(h, root)
		var dirs []string
		_ = filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			var err error
			for range 20 { // a killed process leaves its cgroup a moment later
				if err = syscall.Rmdir(d); err == nil || errors.Is(err, syscall.ENOENT) {
					err = nil
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
			}
		}
	}
	return errors.Join(errs...)
}

// mountsUnder lists the mount points at or below dir, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var ms []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			ms = append(ms, mp)
		}
	}
	sort.Slice(ms, func(i, j int) bool { return len(ms[i]) > len(ms[j]) })
	return ms
}

func unescapeMount(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// unmountUnder detaches every mount at or below dir, deepest first.
func unmountUnder(dir string) error {
	var errs []error
	for range 3 {
		ms := mountsUnder(dir)
		if len(ms) == 0 {
			return nil
		}
		for _, m := range ms {
			if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
			}
		}
	}
	if ms := mountsUnder(dir); len(ms) > 0 {
		errs = append(errs, fmt.Errorf("still mounted under %s: %v", dir, ms))
	}
	return errors.Join(errs...)
}

// processesMentioning returns the pids whose command line contains s (a
// node's containerd socket path: its shims are started with it).
func processesMentioning(s string) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for _, arg := range strings.Split(string(b), "\x00") {
			if arg == s || strings.HasPrefix(arg, s) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// removeContainers deletes every task and container of the node's
// containerd (the kubelet is stopped by then), so that their shims exit
// and remove their sockets; it remembers the ids for shimSockets.
func (n *Node) removeContainers(ctx context.Context) {
	out, err := n.ctr(ctx, "containers", "ls", "-q")
	if err != nil {
		return // containerd gone: Down kills the shims by their arguments
	}
	for _, id := range strings.Fields(string(out)) {
		if !slices.Contains(n.containerIDs, id) {
			n.containerIDs = append(n.containerIDs, id)
		}
		_, _ = n.ctr(ctx, "tasks", "delete", "-f", id) // no task is fine
		_, _ = n.ctr(ctx, "containers", "delete", id)  // reported by Leftovers through its shim socket
	}
}

// shimSockets are the sockets containerd 1.6 gives the shims of the node's
// containers: /run/containerd/s/<sha256(<containerd socket>/k8s.io/<id>)>.
func (n *Node) shimSockets() []string {
	var socks []string
	for _, id := range n.containerIDs {
		h := sha256.Sum256([]byte(filepath.Join(n.Socket, "k8s.io", id)))
		socks = append(socks, filepath.Join("/run/containerd/s", hex.EncodeToString(h[:])))
	}
	return socks
}
