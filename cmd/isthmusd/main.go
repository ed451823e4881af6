// Command isthmusd is the Isthmus host daemon: it restores the committed
// configuration, runs the reconcilers (eBPF dataplane, BGP), serves gNMI to
// operators and collectors, and serves the local API the CNI plugin uses.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/isthmus-net/isthmus/cni/daemon"
	"github.com/isthmus-net/isthmus/nos"
	"github.com/isthmus-net/isthmus/server"
)

const usage = `isthmusd — the Isthmus host daemon

Usage:
  isthmusd [flags]            run the daemon (--role=node: a host; --role=rr:
                              a route reflector, BGP only)
  isthmusd hash-password      read a password on stdin, print its hash for the config file
  isthmusd install-cni        copy isthmus-cni and its conflist into the host's CNI
                              dirs (the DaemonSet's init container; --help for flags)
  isthmusd check-config --config FILE
                              validate a config file and its startup-config offline

isthmusd keeps its configuration as gNMI-managed YANG data. Start it, then
configure it with any gNMI client, for example:

  gnmic -a 127.0.0.1:9339 -u admin -p secret --skip-verify capabilities

A minimal config file (--config):

  role: node                  # or rr: BGP only, no dataplane, no CNI API
  data-dir: /var/lib/isthmus
  gnmi:
    address: ":9339"
    users:
      - {name: admin, role: admin, password-hash: "<isthmusd hash-password>"}
      - {name: grafana, role: viewer, password-hash: "..."}
  cni:
    socket: /run/isthmus/cni.sock
  startup-config:             # YANG config (RFC 7951 names), merged at every start
    tunnel:
      config: {source-address: "${NODE_IP}"}

Without tls-cert/tls-key a self-signed certificate is created in the data
dir on first start. ${NAME} in the file is the environment variable NAME.
startup-config leaves win over gNMI-set values at each start; every other
leaf is gNMI's. Flags override the file.

The garbage collector lets the heap grow to up to five times the live heap
(never less than twice) within GOMEMLIMIT, or 1 GiB when that is unset; a
GOGC in the environment turns this off.

Flags:
`

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "isthmusd:", err)
		os.Exit(1)
	}
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "hash-password" {
		return hashPassword(stdin, stdout)
	}
	if len(args) > 0 && args[0] == "install-cni" {
		return installCNI(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "check-config" {
		return checkConfig(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("isthmusd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	var (
		cfgPath  = fs.String("config", "", "YAML configuration file")
		role     = fs.String("role", "", "node (host: dataplane, CNI API, BGP) or rr (route reflector: BGP only) (default node)")
		dataDir  = fs.String("data-dir", "", "directory for the store and the TLS certificate (default /var/lib/isthmus)")
		addr     = fs.String("gnmi-address", "", "gNMI listen address (default :9339)")
		insecure = fs.Bool("insecure", false, "serve gNMI without TLS (labs only; logged loudly)")
		bpffs    = fs.String("bpffs", "", "bpffs directory for pinned eBPF state (default /sys/fs/bpf/isthmus)")
		socket   = fs.String("cni-socket", "", "unix socket of the CNI API (default /run/isthmus/cni.sock)")
		target   = fs.String("target", "", "gNMI target name (default: host name)")
		level    = fs.String("log-level", "", "debug, info, warn or error (default info)")
		interval = fs.Duration("state-interval", 0, "how often forwarding counters are published as gNMI state (default 5s)")
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	override := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	override(&cfg.Role, *role)
	override(&cfg.DataDir, *dataDir)
	override(&cfg.GNMI.Address, *addr)
	override(&cfg.Dataplane.BPFFS, *bpffs)
	override(&cfg.CNI.Socket, *socket)
	override(&cfg.Target, *target)
	override(&cfg.LogLevel, *level)
	if *insecure {
		cfg.GNMI.Insecure = true
	}
	if *interval > 0 {
		cfg.Dataplane.StateInterval = *interval
	}
	if err := cfg.finish(); err != nil {
		return err
	}
	startup, err := parseStartup(&cfg.StartupConfig)
	if err != nil {
		return err
	}
	lvl, err := parseLevel(cfg.LogLevel)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return serve(ctx, cfg, startup, log)
}

// serve runs the daemon until ctx is done. startup is the startup
// configuration from parseStartup (nil: none).
func serve(ctx context.Context, cfg config, startup []byte, log *slog.Logger) error {
	store, err := nos.OpenStore(cfg.DataDir)
	if err != nil {
		return err
	}
	defer store.Close()

	core, err := nos.New(store, nos.WithLogger(log), nos.WithTarget(cfg.Target), nos.WithReconcilers(reconcilers(cfg, log)...))
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	gcDone := make(chan struct{})
	go func() { defer close(gcDone); tuneGC(runCtx, log) }() // gc.go
	defer func() { cancel(); <-gcDone }()
	if err := core.Start(runCtx); err != nil {
		return err
	}
	err = startRole(runCtx, core, cfg, startup, log)
	if err != nil {
		return stopCore(core, err)
	}
	var cniSrv *daemon.Server
	if cfg.Role == roleNode {
		if cniSrv, err = daemon.New(cfg.CNI, core, store.DB(), daemon.WithLogger(log.With("component", "cni"))); err != nil {
			return stopCore(core, err)
		}
	}
	gnmiSrv := server.New(core,
		server.WithLogger(log.With("component", "gnmi")),
		server.WithSecurity(cfg.GNMI.SecurityConfig),
		server.WithDataDir(cfg.DataDir))

	g, gctx := errgroup.WithContext(runCtx)
	g.Go(func() error { return serveGNMI(gctx, gnmiSrv, cfg) })
	attrs := []any{"role", cfg.Role, "gnmi", cfg.GNMI.Address, "target", cfg.Target, "revision", core.Revision()}
	if cniSrv != nil {
		g.Go(func() error { return cniSrv.Serve(gctx) })
		attrs = append(attrs, "cni", cniSrv.Config().Socket)
	}
	log.Info("isthmusd running", attrs...)
	err = g.Wait()
	cancel()

	err = stopCore(core, err)
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
		err = nil // a signal asked us to stop
	}
	log.Info("isthmusd stopped")
	return err
}

// startRole checks that the restored configuration suits the role (a
// route reflector refuses a store that holds a node's dataplane
// configuration) and commits the startup configuration.
func startRole(ctx context.Context, core *nos.Core, cfg config, startup []byte, log *slog.Logger) error {
	if cfg.Role == roleRR {
		if err := (rrGuard{}).Validate(core.Config()); err != nil {
			return fmt.Errorf("restored configuration (data dir %s) does not suit role rr: %w", cfg.DataDir, err)
		}
	}
	return applyStartup(ctx, core, startup, log)
}

// stopCore stops the reconcilers and joins any error of theirs to err.
func stopCore(core *nos.Core, err error) error {
	stopCtx, done := context.WithTimeout(context.Background(), 10*time.Second)
	defer done()
	if serr := core.Stop(stopCtx); serr != nil {
		err = errors.Join(err, serr)
	}
	return err
}

func hashPassword(stdin io.Reader, stdout io.Writer) error {
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read password: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return errors.New("read password: empty (pipe the password on stdin)")
	}
	h, err := server.HashPassword(pw)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, h)
	return nil
}
