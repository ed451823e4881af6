package testbed

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
)

// SetBinaries records the programs the run uses, so that a later `run`
// against the same run directory finds them.
func (tb *Testbed) SetBinaries(b Binaries) error {
	for _, p := range []string{b.Isthmusd, b.CNI, b.Gnmic} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("set binaries: %w", err)
		}
	}
	return tb.state.setBinaries(b)
}

// Binaries returns the programs the run uses.
func (tb *Testbed) Binaries() Binaries { return tb.state.snapshot().Binaries }

// GNMIAddr returns the address:port of isthmusd's gNMI service on host.
func (tb *Testbed) GNMIAddr(host string) (string, error) {
	addr, err := tb.topo.UnderlayAddr(host)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(addr.String(), fmt.Sprint(GNMIPort)), nil
}

// CNISocket returns the path of isthmusd's CNI socket on host.
func (tb *Testbed) CNISocket(host string) string {
	return filepath.Join(tb.dir, "isthmusd", host, "cni.sock")
}

func (tb *Testbed) needGnmic() (string, error) {
	g := tb.Binaries().Gnmic
	if g == "" {
		return "", fmt.Errorf("%w: no gnmic binary (build tools/gnmic)", ErrNotAvailable)
	}
	return g, nil
}

// ConfigureHost configures isthmusd on host in one gNMI Set, sent with
// gnmic from inside the host: underlay, tunnel, BGP sessions and the
// tenants' VRFs (see HostSetRequest).
func (tb *Testbed) ConfigureHost(ctx context.Context, host string) error {
	gnmic, err := tb.needGnmic()
	if err != nil {
		return err
	}
	req, err := HostSetRequest(tb.topo, host)
	if err != nil {
		return err
	}
	dir := filepath.Join(tb.dir, "isthmusd", host)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("configure %s: %w", host, err)
	}
	file := filepath.Join(dir, "set-request.yaml")
	if err := os.WriteFile(file, req, 0o644); err != nil {
		return fmt.Errorf("configure %s: %w", host, err)
	}
	target, err := tb.GNMIAddr(host)
	if err != nil {
		return err
	}
	if _, err := tb.Gnmic(ctx, gnmic, host, target, "set", "--request-file", file); err != nil {
		return fmt.Errorf("configure %s: %w", host, err)
	}
	return nil
}

// GnmiGet reads path from isthmusd on host as JSON (json_ietf encoding),
// with gnmic run from inside the host.
func (tb *Testbed) GnmiGet(ctx context.Context, host, path string) ([]byte, error) {
	gnmic, err := tb.needGnmic()
	if err != nil {
		return nil, err
	}
	target, err := tb.GNMIAddr(host)
	if err != nil {
		return nil, err
	}
	return tb.Gnmic(ctx, gnmic, host, target, "get", "--path", path, "-e", "json_ietf", "--format", "flat")
}
