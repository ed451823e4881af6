package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/isthmus-net/isthmus/testbed"
)

const usage = `usage: isthmus-testbed COMMAND [flags]

commands:
  up [--file F] [--isthmusd P] [--cni P] [--gnmic P]
                       build the topology (default: the embedded mission
                       topology, testbed/topologies/mission.yaml), start FRR
                       on its bgp-router nodes, start isthmusd on its hosts
                       and configure them with gnmic (defaults: the binaries
                       next to this one, gnmic in ../tools/gnmic; "none"
                       leaves one out)
  down [--all]         remove the current run; --all removes every run and
                       every leftover namespace named ist-*
  status               show the current run: nodes, processes, BGP peers
  exec NODE CMD...     run a command inside a node
  vtysh NODE CMD...    run vtysh commands against a node's FRR
  run SCENARIO         run a scenario against the current run ("list" lists them)
  demo [--keep]        up, every scenario, a summary, then down (--keep: stay up)

common flags (before the command's arguments):
  --root DIR           where run directories live (default /run/isthmus-testbed)
  -v                   debug logging
`

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "isthmus-testbed:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(out, usage)
		return nil
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	root := fs.String("root", testbed.DefaultRoot, "where run directories live")
	verbose := fs.Bool("v", false, "debug logging")
	file := fs.String("file", "", "topology file (up)")
	all := fs.Bool("all", false, "remove every run and leftover (down)")
	keep := fs.Bool("keep", false, "leave the testbed up (demo)")
	isthmusd := fs.String("isthmusd", siblingBinary("isthmusd"), "isthmusd binary for the hosts, or none (up, demo)")
	cniBin := fs.String("cni", siblingBinary("isthmus-cni"), "isthmus-cni binary that attaches pods (up, demo)")
	gnmic := fs.String("gnmic", siblingBinary(filepath.Join("..", "tools", "gnmic", "gnmic")), "gnmic binary that configures the hosts (up, demo)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	level := slog.LevelInfo
	if cmd == "demo" {
		level = slog.LevelWarn // the demo's own output says what happens
	}
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	switch cmd {
	case "up":
		return up(ctx, log, out, *root, *file, binaries(*isthmusd, *cniBin, *gnmic))
	case "down":
		return down(ctx, log, out, *root, *all)
	case "status":
		tb, err := current(*root, log)
		if err != nil {
			return err
		}
		return status(ctx, out, tb)
	case "exec":
		if fs.NArg() < 2 {
			return errors.New("exec needs NODE and a command")
		}
		tb, err := current(*root, log)
		if err != nil {
			return err
		}
		res, err := tb.Exec(ctx, fs.Arg(0), fs.Args()[1:]...)
		_, _ = out.Write(res)
		return err
	case "vtysh":
		if fs.NArg() < 2 {
			return errors.New("vtysh needs NODE and a command")
		}
		tb, err := current(*root, log)
		if err != nil {
			return err
		}
		res, err := tb.FRRAt(fs.Arg(0)).Vtysh(ctx, fs.Args()[1:]...)
		_, _ = out.Write(res)
		return err
	case "demo":
		return demo(ctx, log, out, *root, *file, binaries(*isthmusd, *cniBin, *gnmic), *keep)
	case "run":
		return runScenario(ctx, log, out, *root, fs.Arg(0))
	default:
		return fmt.Errorf("unknown command %q\n%s", cmd, usage)
	}
}

// currentFile names the file in the root that holds the current run's dir.
const currentFile = "current"

func current(root string, log *slog.Logger) (*testbed.Testbed, error) {
	dir, err := os.ReadFile(filepath.Join(root, currentFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, errors.New("no testbed is up (run: isthmus-testbed up)")
	}
	if err != nil {
		return nil, fmt.Errorf("read current run: %w", err)
	}
	return testbed.Open(strings.TrimSpace(string(dir)), log)
}

// siblingBinary returns the path of name next to this executable, or
// "none" when there is none.
func siblingBinary(name string) string {
	self, err := os.Executable()
	if err != nil {
		return "none"
	}
	p := filepath.Join(filepath.Dir(self), name)
	if _, err := os.Stat(p); err != nil {
		return "none"
	}
	return p
}

// binaries turns the flags into the run's binaries; "none" is empty.
func binaries(isthmusd, cni, gnmic string) testbed.Binaries {
	clean := func(p string) string {
		if p == "none" {
			return ""
		}
		if abs, err := filepath.Abs(p); err == nil && p != "" {
			return abs
		}
		return p
	}
	return testbed.Binaries{Isthmusd: clean(isthmusd), CNI: clean(cni), Gnmic: clean(gnmic)}
}

func up(ctx context.Context, log *slog.Logger, out io.Writer, root, file string, bins testbed.Binaries) error {
	if _, err := current(root, log); err == nil {
		return errors.New("a testbed is already up; run `isthmus-testbed down` first")
	}
	topo := testbed.Mission()
	if file != "" {
		var err error
		if topo, err = testbed.Load(file); err != nil {
			return err
		}
	}
	prefix := testbed.NewPrefix()
	dir := filepath.Join(root, strings.TrimSuffix(prefix, "-"))
	tb, err := testbed.Up(ctx, topo, testbed.Options{Log: log, Dir: dir, Prefix: prefix})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, currentFile), []byte(dir+"\n"), 0o644); err != nil {
		return errors.Join(fmt.Errorf("record current run: %w", err), tb.Down(context.WithoutCancel(ctx)))
	}
	fail := func(err error) error {
		return errors.Join(err, tb.Down(context.WithoutCancel(ctx)), os.Remove(filepath.Join(root, currentFile)))
	}
	for _, node := range topo.NodesWithRole(testbed.RoleBGPRouter) {
		if _, err := tb.StartFRR(ctx, node); err != nil {
			return fail(err)
		}
	}
	if err := tb.SetBinaries(bins); err != nil {
		return fail(err)
	}
	if bins.Isthmusd != "" {
		for _, node := range topo.NodesWithRole(testbed.RoleHost) {
			if _, err := tb.StartIsthmusd(ctx, node, testbed.IsthmusdOptions{}); err != nil {
				return fail(err)
			}
			if bins.Gnmic == "" {
				continue
			}
			if err := tb.ConfigureHost(ctx, node); err != nil {
				return fail(err)
			}
		}
		if bins.Gnmic != "" {
			if err := waitSessions(ctx, tb); err != nil {
				return fail(err)
			}
		}
	}
	return status(ctx, out, tb)
}

// waitSessions waits until every bgp-router has its BGP sessions to the
// hosts up, so that what up reports is the settled topology.
func waitSessions(ctx context.Context, tb *testbed.Testbed) error {
	topo := tb.Topology()
	var hosts []string
	for _, h := range topo.NodesWithRole(testbed.RoleHost) {
		addr, err := topo.UnderlayAddr(h)
		if err != nil {
			return err
		}
		hosts = append(hosts, addr.String())
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for _, node := range topo.NodesWithRole(testbed.RoleBGPRouter) {
		if err := tb.FRRAt(node).WaitEstablished(ctx, hosts...); err != nil {
			return fmt.Errorf("bgp sessions on %s: %w", node, err)
		}
	}
	return nil
}

func down(ctx context.Context, log *slog.Logger, out io.Writer, root string, all bool) error {
	var errs []error
	if all {
		entries, err := os.ReadDir(root)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("list runs: %w", err)
		}
		var dirs []string
		for _, e := range entries {
			if e.IsDir() && strings.HasPrefix(e.Name(), testbed.PrefixBase) {
				dirs = append(dirs, filepath.Join(root, e.Name()))
				errs = append(errs, testbed.Down(ctx, log, dirs[len(dirs)-1]))
			}
		}
		// Leftovers of runs whose state is gone; mounts go before the dirs.
		errs = append(errs, testbed.Sweep(ctx, log, testbed.PrefixBase))
		for _, dir := range dirs {
			errs = append(errs, downDir(ctx, log, out, dir))
		}
	} else {
		dir, err := os.ReadFile(filepath.Join(root, currentFile))
		if errors.Is(err, os.ErrNotExist) {
			fmt.Fprintln(out, "no testbed is up")
			return nil
		}
		if err != nil {
			return fmt.Errorf("read current run: %w", err)
		}
		errs = append(errs, downDir(ctx, log, out, strings.TrimSpace(string(dir))))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(root, currentFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("forget current run: %w", err)
	}
	return nil
}

func downDir(ctx context.Context, log *slog.Logger, out io.Writer, dir string) error {
	if err := testbed.Down(ctx, log, dir); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove run dir: %w", err)
	}
	fmt.Fprintf(out, "removed %s\n", dir)
	return nil
}

func status(ctx context.Context, out io.Writer, tb *testbed.Testbed) error {
	st := tb.State()
	topo := tb.Topology()
	fmt.Fprintf(out, "topology %s, prefix %s, up since %s\nrun dir %s\n\n",
		topo.Name, st.Prefix, st.Created.Local().Format(time.DateTime), tb.Dir())
	left, err := testbed.FindLeftovers(st.Prefix)
	if err != nil {
		return err
	}
	exists := map[string]bool{}
	for _, n := range left.Namespaces {
		exists[n] = true
	}
	fmt.Fprintf(out, "%-6s %-10s %-9s %-12s %-20s %s\n", "NODE", "ROLE", "SITE", "UNDERLAY", "NAMESPACE", "PROCESSES")
	for _, n := range topo.Nodes {
		addr, _ := topo.UnderlayAddr(n.Name) // validated when the run was built
		var procs []string
		for _, p := range st.Processes {
			if p.Node == n.Name {
				procs = append(procs, fmt.Sprintf("%s[%d]", p.Name, p.PID))
			}
		}
		ns := tb.Namespace(n.Name)
		if !exists[ns] {
			ns += " (missing)"
		}
		fmt.Fprintf(out, "%-6s %-10s %-9s %-12s %-20s %s\n", n.Name, n.Role, n.Site, addr, ns, strings.Join(procs, " "))
	}
	for _, node := range topo.NodesWithRole(testbed.RoleBGPRouter) {
		frr := tb.FRRAt(node)
		peers, err := frr.Peers(ctx)
		if err != nil {
			fmt.Fprintf(out, "\n%s BGP: %v\n", node, err)
			continue
		}
		fmt.Fprintf(out, "\n%s BGP VPNv4 peers (vtysh --vty_socket %s):\n", node, frr.Dir)
		for _, nb := range topo.NodesWithRole(testbed.RoleHost) {
			addr, _ := topo.UnderlayAddr(nb)
			if s, ok := peers[addr.String()]; ok {
				fmt.Fprintf(out, "  %-3s %-12s %s\n", nb, addr, s)
			}
		}
	}
	fmt.Fprintf(out, "\nrun inside a node: isthmus-testbed exec c1 ip addr\n")
	return nil
}

func runScenario(ctx context.Context, log *slog.Logger, out io.Writer, root, name string) error {
	if name == "" || name == "list" {
		for _, s := range testbed.Scenarios() {
			fmt.Fprintf(out, "%-9s %s\n", s.Name, s.Title)
		}
		return nil
	}
	s, err := testbed.LookupScenario(name)
	if err != nil {
		return err
	}
	tb, err := current(root, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "scenario %s: %s\n", s.Name, s.Title)
	r := testbed.NewReport(out)
	start := time.Now()
	err = s.Run(ctx, tb, r)
	fmt.Fprintln(out)
	if werr := testbed.WriteSummary(out, []testbed.Outcome{{Scenario: s, Report: r, Err: err, Took: time.Since(start)}}); werr != nil {
		return errors.Join(err, werr)
	}
	if err != nil {
		return fmt.Errorf("scenario %s: %w", s.Name, err)
	}
	fmt.Fprintf(out, "\nscenario %s: passed\n", s.Name)
	return nil
}
