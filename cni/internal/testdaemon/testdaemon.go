// Package testdaemon runs the daemon side of the CNI API inside a test: a
// real core (nos) with its store in a temporary directory and the API served
// on a temporary unix socket. A test can stop and restart it on the same
// store to check what survives a daemon restart.
package testdaemon

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/cni/daemon"
	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// Daemon is a running test daemon.
type Daemon struct {
	// Dir is the store's directory; it outlives restarts.
	Dir string
	// Socket is the API's unix socket.
	Socket string
	// Config is the CNI configuration the server runs with.
	Config daemon.Config
	// Core is the running core.
	Core *nos.Core
	// Server is the running CNI API server.
	Server *daemon.Server
	// Reconcilers are registered with the core at every start.
	Reconcilers []nos.Reconciler

	t      testing.TB
	store  *nos.Store
	cancel context.CancelFunc
	done   chan error
}

// Start starts a daemon with cfg (its Socket is replaced by a temporary
// one) and stops it when the test ends.
func Start(t testing.TB, cfg daemon.Config, recs ...nos.Reconciler) *Daemon {
	t.Helper()
	// Socket paths are limited to 108 bytes; t.TempDir can be longer.
	sockDir, err := os.MkdirTemp("", "isthmus-cni-")
	if err != nil {
		t.Fatalf("create socket dir: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	cfg.Socket = filepath.Join(sockDir, "cni.sock")
	d := &Daemon{Dir: t.TempDir(), Socket: cfg.Socket, Config: cfg, Reconcilers: recs, t: t}
	d.start()
	t.Cleanup(d.Stop)
	return d
}

func (d *Daemon) start() {
	t := d.t
	t.Helper()
	store, err := nos.OpenStore(d.Dir)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	log := slog.New(slog.DiscardHandler)
	if os.Getenv("ISTHMUS_TEST_LOG") != "" {
		log = slog.Default()
	}
	core, err := nos.New(store, nos.WithLogger(log), nos.WithReconcilers(d.Reconcilers...))
	if err != nil {
		t.Fatalf("new core: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := core.Start(ctx); err != nil {
		cancel()
		t.Fatalf("start core: %v", err)
	}
	srv, err := daemon.New(d.Config, core, store.DB(), daemon.WithLogger(log))
	if err != nil {
		cancel()
		t.Fatalf("new cni server: %v", err)
	}
	d.store, d.Core, d.Server, d.cancel = store, core, srv, cancel
	d.done = make(chan error, 1)
	go func() { d.done <- srv.Serve(ctx) }()
	waitForSocket(t, d.Socket)
}

// Stop stops the daemon; stopping twice is fine.
func (d *Daemon) Stop() {
	if d.cancel == nil {
		return
	}
	d.cancel()
	if err := <-d.done; err != nil {
		d.t.Errorf("serve: %v", err)
	}
	if err := d.Core.Stop(context.Background()); err != nil {
		d.t.Errorf("stop core: %v", err)
	}
	if err := d.store.Close(); err != nil {
		d.t.Errorf("close store: %v", err)
	}
	d.cancel = nil
}

// Restart stops the daemon and starts it again on the same store.
func (d *Daemon) Restart() {
	d.t.Helper()
	d.Stop()
	d.start()
}

// AddVRF commits an L3VRF with the given route distinguisher and pools.
func (d *Daemon) AddVRF(name, rd string, pools ...string) {
	d.t.Helper()
	_, err := d.Core.Commit(context.Background(), "test", func(c *gen.Device) error {
		ni := c.GetOrCreateNetworkInstances().GetOrCreateNetworkInstance(name)
		cfg := ni.GetOrCreateConfig()
		cfg.Name = ygot.String(name)
		cfg.Type = gen.IsthmusTypes_NetworkInstanceType_L3VRF
		cfg.RouteDistinguisher = ygot.String(rd)
		cfg.ImportRouteTarget = []string{rd}
		cfg.ExportRouteTarget = []string{rd}
		for _, p := range pools {
			ap := ni.GetOrCreateAddressPools().GetOrCreateAddressPool(p)
			ap.GetOrCreateConfig().Prefix = ygot.String(p)
		}
		return nil
	})
	if err != nil {
		d.t.Fatalf("add vrf %s: %v", name, err)
	}
}

// AddUnderlay commits an UNDERLAY interface with an MTU.
func (d *Daemon) AddUnderlay(name string, mtu uint16) {
	d.t.Helper()
	_, err := d.Core.Commit(context.Background(), "test", func(c *gen.Device) error {
		cfg := c.GetOrCreateInterfaces().GetOrCreateInterface(name).GetOrCreateConfig()
		cfg.Name = ygot.String(name)
		cfg.Type = gen.IsthmusTypes_InterfaceType_UNDERLAY
		cfg.Mtu = ygot.Uint16(mtu)
		return nil
	})
	if err != nil {
		d.t.Fatalf("add underlay %s: %v", name, err)
	}
}

// Interface returns the configured interface, or nil.
func (d *Daemon) Interface(name string) *gen.IsthmusInterfaces_Interfaces_Interface {
	return d.Core.Config().GetInterfaces().GetInterface(name)
}

func waitForSocket(t testing.TB, path string) {
	t.Helper()
	for range 500 {
		if _, err := os.Stat(path); err == nil {
			return
		} else if !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("stat socket: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("socket %s did not appear", path)
}
