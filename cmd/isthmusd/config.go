package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/isthmus-net/isthmus/cni/daemon"
	"github.com/isthmus-net/isthmus/server"
)

// config is isthmusd's YAML configuration file. Flags override it.
type config struct {
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
	} `yaml:"bgp"`
	// CNI is the local API the CNI plugin talks to.
	CNI daemon.Config `yaml:"cni"`
}

func defaultConfig() config {
	var c config
	c.DataDir = "/var/lib/isthmus"
	c.LogLevel = "info"
	c.GNMI.Address = ":9339"
	c.Dataplane.BPFFS = "/sys/fs/bpf/isthmus"
	if h, err := os.Hostname(); err == nil {
		c.Target = h
	}
	return c
}

// loadConfig reads path (if not empty) over the defaults. Unknown keys are
// an error, so a typo does not silently fall back to a default.
func loadConfig(path string) (config, error) {
	c := defaultConfig()
	if path == "" {
		return c, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return c, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("parse config %s: %w", path, err)
	}
	return c, nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(s))); err != nil {
		return l, fmt.Errorf("log level %q: want debug, info, warn or error", s)
	}
	return l, nil
}
