package testbed

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The helpers the mission scenarios share: what must run before they can,
// and the reads and waits they are built from.

// requireDaemons returns ErrNotAvailable unless the run has its binaries
// and isthmusd answers on every host.
func (tb *Testbed) requireDaemons(ctx context.Context) error {
	b := tb.Binaries()
	switch {
	case b.Isthmusd == "":
		return fmt.Errorf("%w: no isthmusd binary", ErrNotAvailable)
	case b.CNI == "":
		return fmt.Errorf("%w: no isthmus-cni binary", ErrNotAvailable)
	case b.Gnmic == "":
		return fmt.Errorf("%w: no gnmic binary", ErrNotAvailable)
	}
	for _, h := range tb.topo.NodesWithRole(RoleHost) {
		addr, err := tb.GNMIAddr(h)
		if err != nil {
			return err
		}
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		c, err := tb.Dial(dctx, h, "tcp", addr)
		cancel()
		if err != nil {
			return fmt.Errorf("%w: isthmusd does not answer on %s: %v", ErrNotAvailable, h, err)
		}
		_ = c.Close() // only reachability mattered
	}
	return nil
}

// requireDataplane returns ErrNotAvailable unless isthmusd on each host
// has pinned an eBPF forwarder in its bpffs.
func (tb *Testbed) requireDataplane(hosts ...string) error {
	for _, h := range hosts {
		entries, err := os.ReadDir(filepath.Join(tb.dir, "bpf", h))
		if err == nil && slices.ContainsFunc(entries, func(e os.DirEntry) bool { return !strings.HasSuffix(e.Name(), ".debug") }) {
			continue
		}
		return fmt.Errorf("%w: isthmusd on %s programs no eBPF forwarder yet (nothing pinned in its bpffs)", ErrNotAvailable, h)
	}
	return nil
}

// TenantRD returns the route distinguisher HostSetRequest gives tenant on host.
func (tb *Testbed) TenantRD(host, tenant string) (string, error) {
	addr, err := tb.topo.UnderlayAddr(host)
	if err != nil {
		return "", err
	}
	for i, tn := range tb.topo.Tenants {
		if tn.Name == tenant {
			return fmt.Sprintf("%s:%d", addr, i+1), nil
		}
	}
	return "", fmt.Errorf("unknown tenant %q", tenant)
}

// GnmiFlat reads path from isthmusd on host and returns leaf → value, with
// module prefixes and the leading slash (gnmic writes one from v0.45 on)
// dropped from the leaf paths.
func (tb *Testbed) GnmiFlat(ctx context.Context, host, path string) (map[string]string, error) {
	out, err := tb.GnmiGet(ctx, host, path)
	if err != nil {
		return nil, err
	}
	leaves := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ": ")
		if !ok {
			continue
		}
		elems := strings.Split(strings.TrimPrefix(k, "/"), "/")
		for i, e := range elems {
			if j := strings.IndexByte(e, ':'); j >= 0 && (strings.IndexByte(e, '[') < 0 || j < strings.IndexByte(e, '[')) {
				elems[i] = e[j+1:]
			}
		}
		leaves[strings.Join(elems, "/")] = strings.TrimSpace(v)
	}
	return leaves, nil
}

// gatewayFRR returns the FRR instance of the topology's bgp-router.
func (tb *Testbed) gatewayFRR() (*FRR, error) {
	routers := tb.topo.NodesWithRole(RoleBGPRouter)
	if len(routers) == 0 {
		return nil, fmt.Errorf("%w: the topology has no bgp-router", ErrNotAvailable)
	}
	return tb.FRRAt(routers[0]), nil
}

// waitPodRoutes waits until the gateway holds every pod's /32.
func (tb *Testbed) waitPodRoutes(ctx context.Context, pods ...*Pod) error {
	frr, err := tb.gatewayFRR()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, p := range pods {
		rd, err := tb.TenantRD(p.Host, p.Tenant)
		if err != nil {
			return err
		}
		if _, err := frr.WaitVPNRoute(ctx, rd, p.Address.String()+"/32"); err != nil {
			return err
		}
	}
	return nil
}

// waitPodReach pings from pod p until addr answers once, for up to 30s.
func (tb *Testbed) waitPodReach(ctx context.Context, p *Pod, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := poll(ctx, func() (bool, error) {
		st, err := tb.PodPing(ctx, p, PingOptions{To: addr, Count: 1, Timeout: 500 * time.Millisecond})
		return err == nil && st.Received == 1, err
	})
	if err != nil {
		return fmt.Errorf("%s/%s/%s never reached %s: %w", p.Host, p.Tenant, p.Name, addr, err)
	}
	return nil
}

// addPods adds pods given as "host/tenant/name" and returns them in order,
// with a cleanup that deletes them all.
func (tb *Testbed) addPods(ctx context.Context, specs ...string) ([]*Pod, func(), error) {
	var pods []*Pod
	cleanup := func() {
		for _, p := range pods {
			if err := tb.DelPod(context.WithoutCancel(ctx), p); err != nil {
				tb.log.Warn("delete pod", "pod", p.Name, "host", p.Host, "err", err)
			}
		}
	}
	for _, s := range specs {
		parts := strings.Split(s, "/")
		if len(parts) != 3 {
			cleanup()
			return nil, nil, fmt.Errorf("pod spec %q: want host/tenant/name", s)
		}
		p, err := tb.AddPod(ctx, parts[0], parts[2], parts[1])
		if err != nil {
			cleanup()
			return nil, nil, err
		}
		pods = append(pods, p)
	}
	return pods, cleanup, nil
}

// RestartIsthmusd stops isthmusd on host (SIGTERM, as an operator or a
// package upgrade would) and starts it again with the run's binary and the
// same state directory. It works from the state file, so also for daemons
// another program started.
func (tb *Testbed) RestartIsthmusd(ctx context.Context, host string) (*Isthmusd, error) {
	for _, rec := range tb.State().Processes {
		if rec.Node == host && rec.Name == "isthmusd" {
			if err := killRecord(ctx, rec); err != nil {
				return nil, fmt.Errorf("restart isthmusd on %s: %w", host, err)
			}
			if err := tb.state.removeProcess(rec.PID); err != nil {
				return nil, fmt.Errorf("restart isthmusd on %s: %w", host, err)
			}
		}
	}
	return tb.StartIsthmusd(ctx, host, IsthmusdOptions{})
}
