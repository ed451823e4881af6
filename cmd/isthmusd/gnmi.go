package main

import (
	"context"
	"fmt"
	"net"

	"github.com/isthmus-net/isthmus/server"
)

// serveGNMI listens on the configured address and serves gNMI until ctx is
// done.
func serveGNMI(ctx context.Context, srv *server.Server, cfg config) error {
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", cfg.GNMI.Address)
	if err != nil {
		return fmt.Errorf("listen for gnmi on %s: %w", cfg.GNMI.Address, err)
	}
	return srv.Serve(ctx, lis)
}
