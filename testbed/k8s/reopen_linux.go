package k8s

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/isthmus-net/isthmus/testbed"
)

// DownKept removes a cluster that a finished program left running (`demo
// --keep`), from the testbed run in dir: it stops the kubelets, then does
// what Cluster.Down does without the API (every container process killed
// through the node's cgroups, containerd and its shims, mounts, pod
// namespaces, cgroups, the host directories the cluster made, as recorded
// in its Dir), then takes the testbed down and removes dir.
func DownKept(ctx context.Context, log *slog.Logger, dir string) error {
	tb, err := testbed.Open(dir, log)
	if err != nil {
		return err
	}
	c := &Cluster{Dir: filepath.Join(dir, "k8s"), Nodes: map[string]*Node{}, tb: tb, log: log, procs: map[string]*testbed.Process{}}
	if err := c.loadMadeDirs(); err != nil {
		return err
	}
	ents, err := os.ReadDir(filepath.Join(c.Dir, "nodes"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read nodes of %s: %w", c.Dir, err)
	}
	for _, e := range ents {
		n := e.Name()
		nd := filepath.Join(c.Dir, "nodes", n)
		c.Nodes[n] = &Node{Name: n, Dir: nd, Socket: filepath.Join(nd, "containerd.sock"), CgroupRoot: "/" + tb.Namespace(n)}
	}
	// The kubelets first, so nothing restarts the containers killed next.
	for _, rec := range tb.State().Processes {
		if rec.Name == "kubelet" {
			stopPID(rec.PID)
		}
	}
	for _, n := range c.Nodes {
		c.netns = append(c.netns, n.sandboxNetnsAny(ctx)...)
	}
	errs := []error{c.Down(ctx), tb.Down(ctx)}
	if left := c.Leftovers(); len(left) > 0 {
		errs = append(errs, fmt.Errorf("left after teardown: %v", left))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return tb.RemoveDir()
}

// stopPID sends SIGTERM to pid and waits up to 10 s for it to go, then
// SIGKILLs it.
func stopPID(pid int) {
	if syscall.Kill(pid, syscall.SIGTERM) != nil {
		return // gone already
	}
	for range 100 {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL) // gone meanwhile is fine
}
