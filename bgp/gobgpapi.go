package bgp

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// GoBGP's own gRPC API (Config.GRPCAddress) listens on one or more
// addresses, comma-separated, each host:port or unix://path. GoBGP opens
// them on a goroutine of its own and only logs a failure, so the speaker
// checks them itself: free before the start, listening after it, free
// again after the stop.

// apiListenTimeout bounds how long the speaker waits for GoBGP's gRPC
// listeners to open, or to close.
const apiListenTimeout = 5 * time.Second

type apiAddr struct{ network, address string }

func apiAddrs(s string) []apiAddr {
	var out []apiAddr
	for _, h := range strings.Split(s, ",") {
		if p, ok := strings.CutPrefix(h, "unix://"); ok {
			out = append(out, apiAddr{"unix", p})
			continue
		}
		out = append(out, apiAddr{"tcp", h})
	}
	return out
}

// dialable returns where to connect to reach a listener on a: the
// loopback address for a wildcard host.
func (a apiAddr) dialable() string {
	if a.network != "tcp" {
		return a.address
	}
	host, port, err := net.SplitHostPort(a.address)
	if err != nil {
		return a.address
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	return net.JoinHostPort(host, port)
}

// checkAPIFree fails when an address of the gRPC API is taken.
func checkAPIFree(s string) error {
	for _, a := range apiAddrs(s) {
		if a.network == "unix" {
			if _, err := os.Stat(a.address); err == nil {
				return fmt.Errorf("gobgp grpc api on %s: socket file exists", a.address)
			}
			continue
		}
		l, err := net.Listen(a.network, a.address)
		if err != nil {
			return fmt.Errorf("gobgp grpc api: %w", err)
		}
		if err := l.Close(); err != nil {
			return fmt.Errorf("gobgp grpc api: close probe %s: %w", a.address, err)
		}
	}
	return nil
}

// waitAPI waits until every address of the gRPC API accepts connections
// (listening) or none does (not listening).
func waitAPI(ctx context.Context, s string, listening bool) error {
	deadline := time.Now().Add(apiListenTimeout)
	for _, a := range apiAddrs(s) {
		for {
			var d net.Dialer
			dctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			c, err := d.DialContext(dctx, a.network, a.dialable())
			cancel()
			if err == nil {
				c.Close()
			}
			if (err == nil) == listening {
				break
			}
			if time.Now().After(deadline) {
				state := "open"
				if !listening {
					state = "close"
				}
				return fmt.Errorf("gobgp grpc api on %s: did not %s within %s", a.address, state, apiListenTimeout)
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("wait for gobgp grpc api on %s: %w", a.address, ctx.Err())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return nil
}
