package k8s

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/isthmus-net/isthmus/testbed"
)

// netnsDir is where named network namespaces live.
const netnsDir = "/run/netns"

// HTTPGet fetches url from inside the testbed pod p and returns the body.
// A status other than 200 is an error carrying the body.
func HTTPGet(ctx context.Context, p *testbed.Pod, url string) (string, error) {
	path := filepath.Join(netnsDir, p.Netns)
	tr := &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := ns.WithNetNSPath(path, func(ns.NetNS) error {
			var d net.Dialer
			var err error
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", fmt.Errorf("get %s from %s: %w", url, p.Name, err)
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return "", fmt.Errorf("get %s from %s/%s/%s: %w", url, p.Host, p.Tenant, p.Name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return "", fmt.Errorf("get %s from %s: %w", url, p.Name, err)
	}
	body := strings.TrimSpace(string(b))
	if resp.StatusCode != http.StatusOK {
		return body, fmt.Errorf("get %s from %s/%s/%s: %s: %s", url, p.Host, p.Tenant, p.Name, resp.Status, body)
	}
	return body, nil
}

// poll calls cond every 250 ms until it reports done, returns an error, or
// ctx ends; the last error seen is in the timeout's message.
func poll(ctx context.Context, what string, cond func() (bool, error)) error {
	var last error
	for {
		done, err := cond()
		if done {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("%s: %w (last: %v)", what, ctx.Err(), last)
			}
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func mustAddr(s string) netip.Addr {
	a, _ := netip.ParseAddr(s) // an unparsable pod IP is the zero Addr, in no pool
	return a
}
