package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/isthmus-net/isthmus/cni/api"
	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// stopGrace is how long Serve lets calls in flight finish after ctx is done.
const stopGrace = 5 * time.Second

// Serve serves the CNI API on the configured unix socket until ctx is
// done. The socket is created mode 0600 in a directory that only root can
// enter when Serve creates it, and connections from any user other than
// root or the daemon's own are refused.
func (s *Server) Serve(ctx context.Context) error {
	lis, err := listen(s.cfg.Socket)
	if err != nil {
		return err
	}
	// State is not persisted: after a restart, report the pools again.
	var vrfs []string
	if err := s.core.Read(func(cfg, _ *gen.Device) error {
		for name := range nos.NetworkInstances(cfg) {
			vrfs = append(vrfs, name)
		}
		return nil
	}); err != nil {
		lis.Close()
		return err
	}
	if err := s.publishPoolState(vrfs...); err != nil {
		s.log.Warn("pool state not published", "err", err)
	}
	g := api.NewGRPCServer(s)
	done := make(chan error, 1)
	go func() { done <- g.Serve(peerCheckListener{Listener: lis, log: s.log}) }()
	s.log.Info("cni api serving", "socket", s.cfg.Socket)
	select {
	case err := <-done:
		return fmt.Errorf("serve cni api on %q: %w", s.cfg.Socket, err)
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() { g.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(stopGrace):
		g.Stop()
	}
	<-done
	if err := os.Remove(s.cfg.Socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove socket %q: %w", s.cfg.Socket, err)
	}
	return nil
}

// listen binds the unix socket, replacing a stale one left by a daemon
// that did not stop cleanly.
func listen(socket string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(socket), 0o700); err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	if fi, err := os.Lstat(socket); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("listen on %q: exists and is not a socket", socket)
		}
		if c, err := net.DialTimeout("unix", socket, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("listen on %q: another daemon is serving it", socket)
		}
		if err := os.Remove(socket); err != nil {
			return nil, fmt.Errorf("remove stale socket %q: %w", socket, err)
		}
	}
	lis, err := net.Listen("unix", socket)
	if err != nil {
		return nil, fmt.Errorf("listen on %q: %w", socket, err)
	}
	if err := os.Chmod(socket, 0o600); err != nil {
		lis.Close()
		return nil, fmt.Errorf("restrict socket %q: %w", socket, err)
	}
	return lis, nil
}

// peerCheckListener refuses connections whose peer is not allowed.
type peerCheckListener struct {
	net.Listener
	log *slog.Logger
}

// Accept returns the next connection from an allowed peer.
func (l peerCheckListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if err := checkPeer(c); err != nil {
			l.log.Warn("cni api connection refused", "err", err)
			c.Close()
			continue
		}
		return c, nil
	}
}
