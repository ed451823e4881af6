package daemon

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/isthmus-net/isthmus/cni/api"
)

// Mode says how pods are mapped to VRFs.
type Mode string

const (
	// ModeNetwork puts every pod of a network in one VRF: the VRF the
	// network maps to in Config.Networks, else Config.VRF, else the VRF named
	// like the network. It is the default.
	ModeNetwork Mode = "network"
	// ModeNamespaceIsolation puts each Kubernetes namespace in its own VRF,
	// named Config.VRFPrefix + the namespace.
	ModeNamespaceIsolation Mode = "namespace-isolation"
)

// Defaults for Config fields left empty.
const (
	DefaultGateway       = "169.254.1.1"
	DefaultEncapOverhead = 50
	DefaultUnderlayMTU   = 1500
)

// Config is the CNI section of isthmusd's configuration file (`cni:`).
type Config struct {
	// Socket is the path of the unix socket the API is served on
	// (default api.DefaultSocket).
	Socket string `yaml:"socket" json:"socket,omitempty"`
	// Mode is "network" (default) or "namespace-isolation".
	Mode Mode `yaml:"mode" json:"mode,omitempty"`
	// VRF, in network mode, is the VRF of every network not in Networks.
	// Empty means each network's own name.
	VRF string `yaml:"vrf" json:"vrf,omitempty"`
	// Networks maps CNI network names to VRFs, in network mode.
	Networks map[string]string `yaml:"networks" json:"networks,omitempty"`
	// Namespaces maps Kubernetes namespaces to VRFs; it overrides Mode.
	Namespaces map[string]string `yaml:"namespaces" json:"namespaces,omitempty"`
	// VRFPrefix, in namespace-isolation mode, is put before the namespace to
	// name its VRF ("tenant-" turns namespace "shop" into VRF "tenant-shop").
	VRFPrefix string `yaml:"vrf-prefix" json:"vrfPrefix,omitempty"`
	// Gateway is the link-local address pods route through
	// (default 169.254.1.1). It never appears on the wire: the pod's
	// neighbor entry for it is permanent.
	Gateway string `yaml:"gateway" json:"gateway,omitempty"`
	// MTU of pod interfaces. 0 means the MTU of the first UNDERLAY
	// interface in the configuration tree (else 1500) minus EncapOverhead.
	MTU int `yaml:"mtu" json:"mtu,omitempty"`
	// EncapOverhead is what encapsulation adds to a packet
	// (default 50: outer IPv4, UDP and labels, with room to spare).
	EncapOverhead int `yaml:"encap-overhead" json:"encapOverhead,omitempty"`
}

// WithDefaults returns c with every empty field set to its default.
func (c Config) WithDefaults() Config {
	if c.Socket == "" {
		c.Socket = api.DefaultSocket
	}
	if c.Mode == "" {
		c.Mode = ModeNetwork
	}
	if c.Gateway == "" {
		c.Gateway = DefaultGateway
	}
	if c.EncapOverhead == 0 {
		c.EncapOverhead = DefaultEncapOverhead
	}
	return c
}

// Validate checks c after WithDefaults.
func (c Config) Validate() error {
	switch c.Mode {
	case ModeNetwork, ModeNamespaceIsolation:
	default:
		return fmt.Errorf("cni mode %q: want %q or %q", c.Mode, ModeNetwork, ModeNamespaceIsolation)
	}
	gw, err := netip.ParseAddr(c.Gateway)
	if err != nil {
		return fmt.Errorf("cni gateway: %w", err)
	}
	if !gw.Is4() || !gw.IsLinkLocalUnicast() {
		return fmt.Errorf("cni gateway %s: want an IPv4 link-local address", gw)
	}
	if c.MTU != 0 && (c.MTU < 576 || c.MTU > 9216) {
		return fmt.Errorf("cni mtu %d: want 576 to 9216", c.MTU)
	}
	if c.EncapOverhead < 0 || c.EncapOverhead > 200 {
		return fmt.Errorf("cni encap-overhead %d: want 0 to 200", c.EncapOverhead)
	}
	return nil
}

// ChooseVRF returns the VRF a pod joins by the static configuration c, from
// the network the CNI configuration names and the pod's Kubernetes identity
// (empty outside Kubernetes). It does not check that the VRF exists. The
// daemon consults the committed /cni/namespaces mapping before it.
func ChooseVRF(c Config, network string, pod api.Pod) (string, error) {
	if network == "" {
		return "", fmt.Errorf("%w: network name is empty", api.ErrInvalid)
	}
	if vrf, ok := c.Namespaces[pod.Namespace]; ok && pod.Namespace != "" {
		return vrf, nil
	}
	switch c.Mode {
	case ModeNamespaceIsolation:
		if pod.Namespace == "" {
			return "", fmt.Errorf("%w: namespace-isolation needs K8S_POD_NAMESPACE in CNI_ARGS", api.ErrInvalid)
		}
		return c.VRFPrefix + pod.Namespace, nil
	case ModeNetwork, "":
		if vrf, ok := c.Networks[network]; ok {
			return vrf, nil
		}
		if c.VRF != "" {
			return c.VRF, nil
		}
		return network, nil
	}
	return "", errors.New("choose vrf: unknown mode " + string(c.Mode))
}
