package bgp

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// The heartbeat file tells a starting daemon whether it is restarting: it
// is touched while BGP runs and when it stops. A start within
// restartWindow of the last touch is a graceful restart, and the speaker
// then sets the Restart State bit so peers keep our routes until we have
// re-sent them (RFC 4724).
const (
	heartbeatFile     = "bgp.heartbeat"
	heartbeatInterval = 5 * time.Second
	restartWindow     = 2 * time.Minute
)

// restartPending reports whether the previous run's heartbeat is recent.
func restartPending(dir string) bool {
	if dir == "" {
		return false
	}
	fi, err := os.Stat(filepath.Join(dir, heartbeatFile))
	if err != nil {
		return false
	}
	return time.Since(fi.ModTime()) < restartWindow
}

// touchHeartbeat records that BGP is (or was just) running.
func touchHeartbeat(dir string) error {
	if dir == "" {
		return nil
	}
	p := filepath.Join(dir, heartbeatFile)
	now := time.Now()
	if err := os.Chtimes(p, now, now); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create bgp state dir %s: %w", dir, err)
	}
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		return fmt.Errorf("write bgp heartbeat %s: %w", p, err)
	}
	return nil
}

// heartbeatLoop touches the heartbeat file until ctx is done.
func (r *Reconciler) heartbeatLoop(ctx context.Context) {
	if r.cfg.StateDir == "" {
		return
	}
	t := time.NewTicker(heartbeatInterval)
	defer t.Stop()
	for {
		if err := touchHeartbeat(r.cfg.StateDir); err != nil {
			r.log.Warn("bgp heartbeat", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
