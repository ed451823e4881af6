package kube

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"
)

// Config is what the controller needs besides a Kubernetes client. Every
// field has a flag of the same meaning in cmd/isthmus-controller.
type Config struct {
	// Logger receives the controller's log; required.
	Logger *slog.Logger

	// LeaderElect runs leader election on a coordination Lease: only the
	// holder configures nodes and writes status. Off only for a single
	// replica.
	LeaderElect bool
	// LeaseNamespace and LeaseName name the Lease.
	LeaseNamespace, LeaseName string
	// Identity is this replica's name in the Lease (the pod name).
	Identity string
	// LeaseDuration, RenewDeadline and RetryPeriod are client-go's leader
	// election timings.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration

	// GNMI is how the controller reaches each node's isthmusd.
	GNMI GNMIConfig

	// BGPAS is the AS of the cluster's nodes and route reflectors (iBGP).
	BGPAS uint32
	// RouteReflectors are the addresses every node peers with (VPNv4).
	RouteReflectors []netip.Addr
	// ReflectorSelector is a label selector of the route reflector pods
	// (isthmusd --role=rr on the host network) in ReflectorNamespace: the
	// controller gives each a passive route-reflector-client neighbor per
	// cluster node, at its host's address and ReflectorGNMIPort. Empty:
	// the reflectors are not configured by the controller.
	ReflectorSelector string
	// ReflectorNamespace is where the reflector pods run.
	ReflectorNamespace string
	// ReflectorGNMIPort is the reflectors' gNMI port (default 9340).
	ReflectorGNMIPort int

	// DefaultNetwork is the VirtualNetwork of namespaces that name none
	// (no isthmus.dev/network label); empty: they get no network.
	DefaultNetwork string
	// NamespaceIsolation gives every namespace without a label a network
	// of its own, named IsolationPrefix + namespace, made from the default
	// network's subnets, block size and encapsulation, with its own RD
	// number and route target BGPAS:number.
	NamespaceIsolation bool
	// IsolationPrefix starts the names of per-namespace networks (and so of
	// their VRFs); it must match isthmusd's cni.vrf-prefix.
	IsolationPrefix string
	// ExcludedNamespaces never join any network and are never attached
	// to: no NetworkPolicy isolates their pods (a policy there gets a
	// Warning Event instead). Their pods that do have an interface on a
	// node (CoreDNS is not host-network) remain peers that other
	// namespaces' policies select.
	ExcludedNamespaces []string

	// ResyncPeriod is how often every node is compared with its intent
	// even when nothing changed (catches hand-made changes).
	ResyncPeriod time.Duration
}

// GNMIConfig is the client side of isthmusd's gNMI service.
type GNMIConfig struct {
	// Port is isthmusd's gNMI port on each Node's InternalIP.
	Port int
	// Username and Password authenticate every RPC (an isthmusd user with
	// role admin).
	Username, Password string
	// CAFile verifies the nodes' certificates; empty with SkipVerify
	// accepts any (isthmusd's self-signed default).
	CAFile string
	// CertFile and KeyFile are the client certificate (mTLS).
	CertFile, KeyFile string
	// SkipVerify does not verify the nodes' certificates.
	SkipVerify bool
	// Plaintext speaks gRPC without TLS (isthmusd --insecure; labs only).
	Plaintext bool
	// Timeout bounds one RPC.
	Timeout time.Duration
}

// withDefaults fills the zero fields.
func (c Config) withDefaults() Config {
	if c.LeaseName == "" {
		c.LeaseName = "isthmus-controller"
	}
	if c.LeaseNamespace == "" {
		c.LeaseNamespace = "kube-system"
	}
	if c.LeaseDuration == 0 {
		c.LeaseDuration = 15 * time.Second
	}
	if c.RenewDeadline == 0 {
		c.RenewDeadline = 10 * time.Second
	}
	if c.RetryPeriod == 0 {
		c.RetryPeriod = 2 * time.Second
	}
	if c.GNMI.Port == 0 {
		c.GNMI.Port = 9339
	}
	if c.GNMI.Timeout == 0 {
		c.GNMI.Timeout = 10 * time.Second
	}
	if c.IsolationPrefix == "" {
		c.IsolationPrefix = "k8s-"
	}
	if c.ReflectorGNMIPort == 0 {
		c.ReflectorGNMIPort = defaultReflectorGNMIPort
	}
	if c.ResyncPeriod == 0 {
		c.ResyncPeriod = 5 * time.Minute
	}
	return c
}

// validate checks c after withDefaults.
func (c Config) validate() error {
	if c.Logger == nil {
		return errors.New("config: a logger is required")
	}
	if c.LeaderElect && c.Identity == "" {
		return errors.New("config: leader election needs an identity")
	}
	if len(c.RouteReflectors) > 0 && c.BGPAS == 0 {
		return errors.New("config: route reflectors need the BGP AS (--bgp-as)")
	}
	for _, rr := range c.RouteReflectors {
		if !rr.Is4() {
			return fmt.Errorf("config: route reflector %s is not IPv4", rr)
		}
	}
	if c.ReflectorSelector != "" {
		if _, err := c.reflectorSelector(); err != nil {
			return err
		}
		if c.ReflectorNamespace == "" || c.BGPAS == 0 {
			return errors.New("config: route reflector discovery needs their namespace (--reflector-namespace) and the BGP AS (--bgp-as)")
		}
	}
	if c.ReflectorGNMIPort <= 0 || c.ReflectorGNMIPort > 65535 {
		return fmt.Errorf("config: route reflector gnmi port %d out of range", c.ReflectorGNMIPort)
	}
	if c.NamespaceIsolation && (c.DefaultNetwork == "" || c.BGPAS == 0) {
		return errors.New("config: namespace isolation needs --default-network (the template of per-namespace networks) and --bgp-as (their route targets)")
	}
	if c.GNMI.Plaintext && (c.GNMI.CAFile != "" || c.GNMI.CertFile != "") {
		return errors.New("config: gnmi plaintext excludes TLS files")
	}
	if (c.GNMI.CertFile == "") != (c.GNMI.KeyFile == "") {
		return errors.New("config: gnmi client certificate and key go together")
	}
	if c.GNMI.Port <= 0 || c.GNMI.Port > 65535 {
		return fmt.Errorf("config: gnmi port %d out of range", c.GNMI.Port)
	}
	return nil
}
