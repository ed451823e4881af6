// Command isthmus-controller is the Isthmus controller for Kubernetes: it
// watches Nodes, Namespaces, Pods, Services, EndpointSlices,
// NetworkPolicies and VirtualNetworks, renders each node's intended
// configuration and pushes it to the node's isthmusd over gNMI. It only
// wires flags to package kube.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/isthmus-net/isthmus/kube"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "isthmus-controller:", err)
		os.Exit(1)
	}
}

func run(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("isthmus-controller", flag.ContinueOnError)
	fs.SetOutput(stderr)
	host, _ := os.Hostname()
	var (
		cfg          kube.Config
		kubeconfig   = fs.String("kubeconfig", "", "kubeconfig file (default: in-cluster service account)")
		passwordFile = fs.String("gnmi-password-file", "", "file holding the gNMI password (first line)")
		rrs          = fs.String("route-reflectors", "", "comma-separated IPv4 addresses every node peers with over BGP VPNv4")
		bgpAS        = fs.Uint("bgp-as", 0, "BGP AS of the nodes and route reflectors (iBGP); route targets of per-namespace networks use it")
		excluded     = fs.String("excluded-namespaces", "kube-system,kube-public,kube-node-lease", "comma-separated namespaces that join no network and no NetworkPolicy applies in (their pods stay policy peers)")
		level        = fs.String("log-level", "info", "debug, info, warn or error")
	)
	fs.BoolVar(&cfg.LeaderElect, "leader-elect", true, "elect a leader on a coordination Lease (run 2 replicas)")
	fs.StringVar(&cfg.LeaseNamespace, "leader-election-namespace", envOr("POD_NAMESPACE", "kube-system"), "namespace of the Lease")
	fs.StringVar(&cfg.LeaseName, "leader-election-name", "isthmus-controller", "name of the Lease")
	fs.StringVar(&cfg.Identity, "leader-election-identity", envOr("POD_NAME", host), "this replica's identity in the Lease")
	fs.DurationVar(&cfg.LeaseDuration, "lease-duration", 0, "how long a lease holds without renewal (default 15s)")
	fs.DurationVar(&cfg.RenewDeadline, "renew-deadline", 0, "how long the leader retries renewing before giving up (default 10s)")
	fs.DurationVar(&cfg.RetryPeriod, "retry-period", 0, "how often candidates try to acquire or renew (default 2s)")
	fs.IntVar(&cfg.GNMI.Port, "gnmi-port", 9339, "isthmusd's gNMI port on each Node's InternalIP (the node annotation isthmus.dev/gnmi-address overrides host:port)")
	fs.StringVar(&cfg.GNMI.Username, "gnmi-username", "", "isthmusd user (role admin)")
	fs.StringVar(&cfg.GNMI.CAFile, "gnmi-ca-file", "", "CA bundle that signed the nodes' gNMI certificates")
	fs.StringVar(&cfg.GNMI.CertFile, "gnmi-cert-file", "", "client certificate for mTLS")
	fs.StringVar(&cfg.GNMI.KeyFile, "gnmi-key-file", "", "client key for mTLS")
	fs.BoolVar(&cfg.GNMI.SkipVerify, "gnmi-skip-verify", false, "accept any node certificate (isthmusd's self-signed default)")
	fs.BoolVar(&cfg.GNMI.Plaintext, "gnmi-plaintext", false, "gNMI without TLS (isthmusd --insecure; labs only)")
	fs.DurationVar(&cfg.GNMI.Timeout, "gnmi-timeout", 0, "timeout of one gNMI RPC (default 10s)")
	fs.StringVar(&cfg.DefaultNetwork, "default-network", "", "VirtualNetwork of namespaces without the isthmus.dev/network label (empty: none)")
	fs.BoolVar(&cfg.NamespaceIsolation, "namespace-isolation", false, "give each namespace without the label a network of its own, made from the default network")
	fs.StringVar(&cfg.IsolationPrefix, "isolation-prefix", "k8s-", "name prefix of per-namespace networks and their VRFs (isthmusd's cni.vrf-prefix)")
	fs.StringVar(&cfg.ReflectorSelector, "reflector-selector", "", "label selector of the route reflector pods (isthmusd --role=rr, host network): each gets every node as a route-reflector client (empty: reflectors are not configured)")
	fs.StringVar(&cfg.ReflectorNamespace, "reflector-namespace", envOr("POD_NAMESPACE", "kube-system"), "namespace of the route reflector pods")
	fs.IntVar(&cfg.ReflectorGNMIPort, "reflector-gnmi-port", 9340, "gNMI port of the route reflectors on their host's address")
	fs.DurationVar(&cfg.ResyncPeriod, "resync-period", 0, "how often every node is compared with its intent anyway (default 5m)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(strings.ToUpper(*level))); err != nil {
		return fmt.Errorf("log level %q: want debug, info, warn or error", *level)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	if *passwordFile != "" {
		b, err := os.ReadFile(*passwordFile)
		if err != nil {
			return fmt.Errorf("read gnmi password: %w", err)
		}
		cfg.GNMI.Password = strings.TrimRight(strings.SplitN(string(b), "\n", 2)[0], "\r")
	}
	if *bgpAS > 1<<32-1 {
		return fmt.Errorf("bgp-as %d out of range", *bgpAS)
	}
	cfg.BGPAS = uint32(*bgpAS)
	for _, s := range splitList(*rrs) {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("route reflector %q: %w", s, err)
		}
		cfg.RouteReflectors = append(cfg.RouteReflectors, a)
	}
	cfg.ExcludedNamespaces = splitList(*excluded)

	var rc *rest.Config
	var err error
	if *kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", *kubeconfig)
	} else {
		rc, err = rest.InClusterConfig()
	}
	if err != nil {
		return fmt.Errorf("load kubernetes client config: %w", err)
	}
	c, err := kube.New(rc, cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	err = c.Run(ctx)
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
