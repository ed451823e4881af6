// Package server is the gNMI service of isthmusd: Capabilities, Get, Set
// and Subscribe over gRPC, with TLS, username/password authentication and
// role-based authorization. It is a protocol adapter only: configuration
// changes go through nos.Core transactions, reads come from the core's
// trees, and subscriptions are served from the core's telemetry cache.
package server

import (
	"log/slog"
	"sync"

	gpb "github.com/openconfig/gnmi/proto/gnmi"

	"github.com/isthmus-net/isthmus/nos"
)

// DefaultAddr is the address gNMI listens on unless told otherwise.
const DefaultAddr = ":9339"

// Server implements gpb.GNMIServer on top of a nos.Core.
type Server struct {
	gpb.UnimplementedGNMIServer

	core    *nos.Core
	log     *slog.Logger
	sec     SecurityConfig
	dataDir string // where the self-signed certificate is kept

	users    map[string]User // by name, from sec.Users
	usersErr error           // why sec.Users is unusable; Serve returns it

	authMu   sync.Mutex        // guards verified
	verified map[[32]byte]bool // digests of hash+password pairs that bcrypt accepted

	fan *fanout // this server's STREAM subscriptions
}

// Option configures a Server.
type Option func(*Server)

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.log = l } }

// WithSecurity sets TLS and the users. Without it the server refuses
// every request that carries no valid credentials, and has no users.
func WithSecurity(c SecurityConfig) Option { return func(s *Server) { s.sec = c } }

// WithDataDir sets the directory where a self-signed certificate is
// created on first start and found on later starts.
func WithDataDir(dir string) Option { return func(s *Server) { s.dataDir = dir } }

// New returns a gNMI server for core. Problems in the security
// configuration are reported by Serve.
func New(core *nos.Core, opts ...Option) *Server {
	s := &Server{core: core, log: slog.Default(), verified: map[[32]byte]bool{}}
	for _, o := range opts {
		o(s)
	}
	s.users, s.usersErr = validateUsers(s.sec.Users)
	s.fan = newFanout(core)
	return s
}
