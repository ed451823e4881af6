package testbed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// FRR binaries, as Debian installs them.
const (
	frrZebra = "/usr/lib/frr/zebra"
	frrBGPd  = "/usr/lib/frr/bgpd"
	vtyshBin = "vtysh"
)

// FRR is a running zebra + bgpd pair in one node. Its sockets, pid files
// and configs live in a directory of its own, so several FRR instances run
// side by side and vtysh reaches each with --vty_socket.
type FRR struct {
	// Node is the node FRR runs in.
	Node string
	// Dir holds the vty sockets, zserv socket, configs and pid files.
	Dir string

	zebra, bgpd *Process
}

// StartFRR starts FRR in a bgp-router node with the bgpd configuration
// FRRConfig renders from the topology.
func (tb *Testbed) StartFRR(ctx context.Context, node string) (*FRR, error) {
	conf, err := FRRConfig(tb.topo, node)
	if err != nil {
		return nil, err
	}
	return tb.StartFRRConfig(ctx, node, conf)
}

// StartFRRConfig starts zebra and bgpd in node with the given bgpd
// configuration and waits until bgpd answers vtysh.
func (tb *Testbed) StartFRRConfig(ctx context.Context, node, bgpdConf string) (*FRR, error) {
	dir := filepath.Join(tb.dir, "frr", node)
	f := &FRR{Node: node, Dir: dir}
	if err := prepareFRRDir(dir, bgpdConf); err != nil {
		return nil, fmt.Errorf("start frr in %s: %w", node, err)
	}
	common := []string{"-z", filepath.Join(dir, "zserv.api"), "--vty_socket", dir, "-P", "0"}
	var err error
	f.zebra, err = tb.Start(ctx, node, "zebra", append([]string{frrZebra,
		"-i", filepath.Join(dir, "zebra.pid"), "-f", filepath.Join(dir, "zebra.conf")}, common...)...)
	if err != nil {
		return nil, fmt.Errorf("start frr in %s: %w", node, err)
	}
	if err := waitFile(ctx, f.zebra, filepath.Join(dir, "zserv.api")); err != nil {
		return nil, errors.Join(fmt.Errorf("start frr in %s: %w", node, err), f.Stop(ctx))
	}
	f.bgpd, err = tb.Start(ctx, node, "bgpd", append([]string{frrBGPd,
		"-i", filepath.Join(dir, "bgpd.pid"), "-f", filepath.Join(dir, "bgpd.conf")}, common...)...)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("start frr in %s: %w", node, err), f.Stop(ctx))
	}
	if err := waitFile(ctx, f.bgpd, filepath.Join(dir, "bgpd.vty")); err != nil {
		return nil, errors.Join(fmt.Errorf("start frr in %s: %w", node, err), f.Stop(ctx))
	}
	if _, err := f.Vtysh(ctx, "show bgp summary json"); err != nil {
		return nil, errors.Join(fmt.Errorf("start frr in %s: %w", node, err), f.Stop(ctx))
	}
	return f, nil
}

// prepareFRRDir writes the configs into dir and hands dir to the frr user,
// which the daemons drop privileges to.
func prepareFRRDir(dir, bgpdConf string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create frr dir: %w", err)
	}
	files := map[string]string{"bgpd.conf": bgpdConf, "zebra.conf": zebraConfig}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	u, err := user.Lookup("frr")
	if err != nil {
		return fmt.Errorf("look up frr user: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid) // numeric on Linux
	gid, _ := strconv.Atoi(u.Gid)
	for _, p := range []string{dir, filepath.Join(dir, "bgpd.conf"), filepath.Join(dir, "zebra.conf")} {
		if err := os.Chown(p, uid, gid); err != nil {
			return fmt.Errorf("chown %s: %w", p, err)
		}
	}
	return nil
}

// waitFile waits until path exists, failing early when p exits.
func waitFile(ctx context.Context, p *Process, path string) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		select {
		case <-p.Done():
			return fmt.Errorf("%s exited (%v) before creating %s: %s", p.Name, p.Err(), filepath.Base(path), p.Tail(10))
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", filepath.Base(path), ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Vtysh runs vtysh commands against this FRR instance and returns the output.
func (f *FRR) Vtysh(ctx context.Context, cmds ...string) ([]byte, error) {
	args := []string{"--vty_socket", f.Dir}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out, err := exec.CommandContext(ctx, vtyshBin, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("vtysh %q in %s: %w: %s", strings.Join(cmds, "; "), f.Node, err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// Stop stops bgpd, then zebra.
func (f *FRR) Stop(ctx context.Context) error {
	var errs []error
	for _, p := range []*Process{f.bgpd, f.zebra} {
		if p != nil {
			errs = append(errs, p.Stop(ctx))
		}
	}
	return errors.Join(errs...)
}

// Peers returns the state of every VPNv4 neighbor by peer address
// ("Established", "Active", ...).
func (f *FRR) Peers(ctx context.Context) (map[string]string, error) {
	out, err := f.Vtysh(ctx, "show bgp ipv4 vpn summary json")
	if err != nil {
		return nil, err
	}
	var sum struct {
		Peers map[string]struct {
			State string `json:"state"`
		} `json:"peers"`
	}
	if err := json.Unmarshal(out, &sum); err != nil {
		return nil, fmt.Errorf("decode bgp summary of %s: %w", f.Node, err)
	}
	peers := map[string]string{}
	for addr, p := range sum.Peers {
		peers[addr] = p.State
	}
	return peers, nil
}

// WaitEstablished polls until every given peer is Established.
func (f *FRR) WaitEstablished(ctx context.Context, peers ...string) error {
	var last map[string]string
	err := poll(ctx, func() (bool, error) {
		var err error
		last, err = f.Peers(ctx)
		if err != nil {
			return false, err
		}
		for _, p := range peers {
			if last[p] != "Established" {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("wait for bgp sessions of %s (now %v): %w", f.Node, last, err)
	}
	return nil
}

// VPNRoute is one path of a VPNv4 route as FRR shows it.
type VPNRoute struct {
	// RD is the route distinguisher.
	RD string
	// Prefix is the IPv4 prefix.
	Prefix string
	// Nexthop is the BGP next hop.
	Nexthop string
	// Valid and Best are FRR's flags for the path.
	Valid, Best bool
}

// VPNRoutes returns every VPNv4 path in bgpd's table, sorted by RD and prefix.
func (f *FRR) VPNRoutes(ctx context.Context) ([]VPNRoute, error) {
	out, err := f.Vtysh(ctx, "show bgp ipv4 vpn json")
	if err != nil {
		return nil, err
	}
	var table struct {
		Routes struct {
			RDs map[string]json.RawMessage `json:"routeDistinguishers"`
		} `json:"routes"`
	}
	if err := json.Unmarshal(out, &table); err != nil {
		return nil, fmt.Errorf("decode vpn table of %s: %w", f.Node, err)
	}
	var routes []VPNRoute
	for rd, raw := range table.Routes.RDs {
		var prefixes map[string][]struct {
			Valid    bool `json:"valid"`
			Best     bool `json:"bestpath"`
			Nexthops []struct {
				IP string `json:"ip"`
			} `json:"nexthops"`
		}
		if err := json.Unmarshal(raw, &prefixes); err != nil {
			return nil, fmt.Errorf("decode vpn routes of rd %s in %s: %w", rd, f.Node, err)
		}
		for prefix, paths := range prefixes {
			for _, p := range paths {
				r := VPNRoute{RD: rd, Prefix: prefix, Valid: p.Valid, Best: p.Best}
				if len(p.Nexthops) > 0 {
					r.Nexthop = p.Nexthops[0].IP
				}
				routes = append(routes, r)
			}
		}
	}
	slices.SortFunc(routes, func(a, b VPNRoute) int {
		return strings.Compare(a.RD+" "+a.Prefix+" "+a.Nexthop, b.RD+" "+b.Prefix+" "+b.Nexthop)
	})
	return routes, nil
}

// WaitVPNRoute polls until bgpd holds a path for prefix with rd, and returns it.
func (f *FRR) WaitVPNRoute(ctx context.Context, rd, prefix string) (VPNRoute, error) {
	var found VPNRoute
	err := poll(ctx, func() (bool, error) {
		routes, err := f.VPNRoutes(ctx)
		if err != nil {
			return false, err
		}
		for _, r := range routes {
			if r.RD == rd && r.Prefix == prefix {
				found = r
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return VPNRoute{}, fmt.Errorf("wait for vpn route %s %s in %s: %w", rd, prefix, f.Node, err)
	}
	return found, nil
}

// poll calls cond every 250ms until it is true, fails, or ctx ends; a
// failing cond is retried until ctx ends, since daemons come up late.
func poll(ctx context.Context, cond func() (bool, error)) error {
	var lastErr error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), lastErr)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// FRRAt returns a handle on the FRR instance of node, for vtysh; it can
// also reach an instance another program started for the same run.
func (tb *Testbed) FRRAt(node string) *FRR {
	return &FRR{Node: node, Dir: filepath.Join(tb.dir, "frr", node)}
}

// RouteDetail is what FRR holds for one VPNv4 route, over all its paths.
type RouteDetail struct {
	// RTs are the route targets ("65000:100").
	RTs []string
	// Labels are the VPN labels received with the paths.
	Labels []uint32
}

// RouteDetail returns the route targets and labels FRR holds for one
// VPNv4 route.
func (f *FRR) RouteDetail(ctx context.Context, rd, prefix string) (RouteDetail, error) {
	out, err := f.Vtysh(ctx, fmt.Sprintf("show bgp ipv4 vpn rd %s %s json", rd, prefix))
	if err != nil {
		return RouteDetail{}, err
	}
	var detail map[string]struct {
		Paths []struct {
			RemoteLabel  *uint32 `json:"remoteLabel"`
			ExtCommunity struct {
				String string `json:"string"`
			} `json:"extendedCommunity"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(out, &detail); err != nil {
		return RouteDetail{}, fmt.Errorf("decode route %s %s in %s: %w", rd, prefix, f.Node, err)
	}
	var d RouteDetail
	for _, p := range detail[rd].Paths {
		for _, c := range strings.Fields(p.ExtCommunity.String) {
			if rt, ok := strings.CutPrefix(c, "RT:"); ok && !slices.Contains(d.RTs, rt) {
				d.RTs = append(d.RTs, rt)
			}
		}
		if p.RemoteLabel != nil {
			d.Labels = append(d.Labels, *p.RemoteLabel)
		}
	}
	return d, nil
}

// WaitNoVPNRoute polls until bgpd holds no path for prefix, in any RD.
func (f *FRR) WaitNoVPNRoute(ctx context.Context, prefix string) error {
	err := poll(ctx, func() (bool, error) {
		routes, err := f.VPNRoutes(ctx)
		if err != nil {
			return false, err
		}
		return !slices.ContainsFunc(routes, func(r VPNRoute) bool { return r.Prefix == prefix }), nil
	})
	if err != nil {
		return fmt.Errorf("wait for %s to be withdrawn in %s: %w", prefix, f.Node, err)
	}
	return nil
}
