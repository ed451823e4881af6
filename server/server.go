// Package server is the gNMI service of isthmusd: Capabilities, Get, Set
// and Subscribe over gRPC, with TLS, username/password authentication and
// role-based authorization. It is a protocol adapter only: configuration
// changes go through nos.Core transactions, reads come from the core's
// trees, and subscriptions are served from the core's telemetry cache.
package server

import (
	"log/slog"

	gpb "github.com/openconfig/gnmi/proto/gnmi"

	"github.com/isthmus-net/isthmus/nos"
)

// Server implements gpb.GNMIServer on top of a nos.Core.
type Server struct {
	gpb.UnimplementedGNMIServer

	core *nos.Core
	log  *slog.Logger
}

// Option configures a Server.
type Option func(*Server)

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.log = l } }

// New returns a gNMI server for core.
func New(core *nos.Core, opts ...Option) *Server {
	s := &Server{core: core, log: slog.Default()}
	for _, o := range opts {
		o(s)
	}
	return s
}
