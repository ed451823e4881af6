package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/isthmus-net/isthmus/cni/daemon"
	"github.com/isthmus-net/isthmus/server"
)

// Roles isthmusd runs in.
const (
	// roleNode is a host: dataplane, CNI API, BGP.
	roleNode = "node"
	// roleRR is a route reflector: BGP only, no dataplane, no CNI API.
	roleRR = "rr"
)

// defaultBPFFS is where a node pins its eBPF state unless told otherwise.
const defaultBPFFS = "/sys/fs/bpf/isthmus"

// config is isthmusd's YAML configuration file. Flags override it.
type config struct {
	// Role is "node" (default) or "rr" (route reflector: BGP only).
	Role string `yaml:"role"`
	// DataDir holds the store (commit history, labels, addresses) and the
	// self-signed certificate.
	DataDir string `yaml:"data-dir"`
	// Target is the gNMI target name (default: the host name).
	Target string `yaml:"target"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log-level"`
	GNMI     struct {
		// Address the gNMI service listens on.
		Address               string `yaml:"address"`
		server.SecurityConfig `yaml:",inline"`
	} `yaml:"gnmi"`
	Dataplane struct {
		// BPFFS is where eBPF maps, programs and links are pinned.
		BPFFS string `yaml:"bpffs"`
		// StateInterval is how often forwarding counters are published
		// as gNMI state (for example "1s"; default 5s).
		StateInterval time.Duration `yaml:"state-interval"`
	} `yaml:"dataplane"`
	BGP struct {
		// GRPCAddress, when set, exposes GoBGP's own gRPC API (for gobgp CLI
		// debugging). Off by default.
		GRPCAddress string `yaml:"grpc-address"`
		// ListenPort is the TCP port BGP sessions are accepted on: 0 means
		// 179, -1 means no listener (this speaker only dials its peers).
		ListenPort int32 `yaml:"listen-port"`
		// ListenAddresses restricts the listener; empty means all.
		ListenAddresses []string `yaml:"listen-addresses"`
		// PeerPort is the TCP port peers are dialled on; 0 means 179.
		PeerPort uint16 `yaml:"peer-port"`
	} `yaml:"bgp"`
	// CNI is the local API the CNI plugin talks to.
	CNI daemon.Config `yaml:"cni"`
	// StartupConfig is configuration in the YANG tree's RFC 7951 JSON
	// form (written as YAML), merged into the running configuration at
	// every start; see startup.go for the precedence with gNMI.
	StartupConfig yaml.Node `yaml:"startup-config"`
}

func defaultConfig() config {
	var c config
	c.Role = roleNode
	c.DataDir = "/var/lib/isthmus"
	c.LogLevel = "info"
	c.GNMI.Address = ":9339"
	if h, err := os.Hostname(); err == nil {
		c.Target = h
	}
	return c
}

// loadConfig reads path (if not empty) over the defaults. Unknown keys are
// an error, so a typo does not silently fall back to a default. ${NAME}
// in the file is replaced by the environment variable NAME before parsing.
func loadConfig(path string) (config, error) {
	c := defaultConfig()
	if path == "" {
		return c, nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("read config: %w", err)
	}
	raw, err = expandEnv(raw, os.LookupEnv)
	if err != nil {
		return c, fmt.Errorf("expand config %s: %w", path, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	// An empty file means the defaults.
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return c, fmt.Errorf("parse config %s: %w", path, err)
	}
	return c, nil
}

// envRef matches ${NAME}. Only the braced form is expanded, so a password
// hash such as "$2a$10$..." passes through untouched.
var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expandEnv replaces every ${NAME} in raw by the value lookup gives NAME.
// A name that is not set is an error (a DaemonSet that forgot to pass
// the node's address must not start with an empty router id).
func expandEnv(raw []byte, lookup func(string) (string, bool)) ([]byte, error) {
	var missing []string
	out := envRef.ReplaceAllFunc(raw, func(m []byte) []byte {
		name := string(envRef.FindSubmatch(m)[1])
		v, ok := lookup(name)
		if !ok {
			missing = append(missing, name)
			return m
		}
		return []byte(v)
	})
	if len(missing) > 0 {
		return nil, fmt.Errorf("environment variable %s not set", strings.Join(missing, ", "))
	}
	return out, nil
}

// finish checks the role against the settings that only one role uses and
// fills in the role's defaults. It runs after flags are applied.
func (c *config) finish() error {
	switch c.Role {
	case roleNode:
		if c.Dataplane.BPFFS == "" {
			c.Dataplane.BPFFS = defaultBPFFS
		}
	case roleRR:
		var set []string
		if c.Dataplane.BPFFS != "" {
			set = append(set, "dataplane.bpffs")
		}
		if c.Dataplane.StateInterval != 0 {
			set = append(set, "dataplane.state-interval")
		}
		if !reflect.DeepEqual(c.CNI, daemon.Config{}) {
			set = append(set, "cni")
		}
		if len(set) > 0 {
			return fmt.Errorf("role rr runs no dataplane and no CNI API: remove %s", strings.Join(set, ", "))
		}
	default:
		return fmt.Errorf("role %q: want node or rr", c.Role)
	}
	return nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(s))); err != nil {
		return l, fmt.Errorf("log level %q: want debug, info, warn or error", s)
	}
	return l, nil
}
