package server

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"

	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Roles a user can hold.
const (
	// RoleAdmin may read and write configuration.
	RoleAdmin = "admin"
	// RoleViewer may only read: Get, Subscribe and Capabilities.
	RoleViewer = "viewer"
)

// Metadata keys that carry credentials, as gnmic and the openconfig
// tooling send them.
const (
	mdUsername = "username"
	mdPassword = "password"
)

// User is one account of the gNMI service, as written in the daemon's
// YAML configuration file.
type User struct {
	// Name is the username the client sends in the "username" metadata.
	Name string `yaml:"name"`
	// PasswordHash is the bcrypt hash of the password (see HashPassword).
	PasswordHash string `yaml:"password-hash"`
	// Role is RoleAdmin or RoleViewer.
	Role string `yaml:"role"`
}

// SecurityConfig is the security section of the daemon's configuration:
// transport security and the users allowed to connect.
type SecurityConfig struct {
	// TLSCert and TLSKey are PEM files of the server certificate and key.
	// When both are empty a self-signed certificate is created in the data
	// directory on first start and reused afterwards.
	TLSCert string `yaml:"tls-cert"`
	TLSKey  string `yaml:"tls-key"`
	// ClientCA is a PEM bundle; when set, clients must present a
	// certificate signed by it (mutual TLS).
	ClientCA string `yaml:"client-ca"`
	// Users are the accounts allowed to connect. With no users and
	// Insecure set, authentication is disabled.
	Users []User `yaml:"users"`
	// Insecure serves gNMI without TLS. For labs only.
	Insecure bool `yaml:"insecure"`
}

// HashPassword returns the bcrypt hash of pw for User.PasswordHash.
func HashPassword(pw string) (string, error) {
	if pw == "" {
		return "", errors.New("hash password: empty password")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// validateUsers checks the user list of a security configuration.
func validateUsers(users []User) (map[string]User, error) {
	m := make(map[string]User, len(users))
	for i, u := range users {
		if u.Name == "" {
			return nil, fmt.Errorf("user %d: empty name", i)
		}
		if _, dup := m[u.Name]; dup {
			return nil, fmt.Errorf("user %q: defined twice", u.Name)
		}
		if u.Role != RoleAdmin && u.Role != RoleViewer {
			return nil, fmt.Errorf("user %q: role %q is neither %q nor %q", u.Name, u.Role, RoleAdmin, RoleViewer)
		}
		if _, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil {
			return nil, fmt.Errorf("user %q: password-hash is not a bcrypt hash: %w", u.Name, err)
		}
		m[u.Name] = u
	}
	return m, nil
}

// dummyHash is compared against when the user does not exist, so a wrong
// username costs as much time as a wrong password.
var dummyHash = func() []byte {
	h, err := bcrypt.GenerateFromPassword([]byte("isthmus-no-such-user"), bcrypt.MinCost)
	if err != nil {
		panic(fmt.Sprintf("hash dummy password: %v", err))
	}
	return h
}()

// authorize checks the credentials in ctx's metadata and, for write, that
// the user may change configuration. It returns the username, or "" when
// authentication is disabled (insecure mode without users). Errors are
// gRPC status errors: Unauthenticated or PermissionDenied.
func (s *Server) authorize(ctx context.Context, write bool) (string, error) {
	if s.authDisabled() {
		return "", nil
	}
	if name, ok := ctx.Value(userKey{}).(string); ok {
		// An interceptor has checked the password already.
		if write && s.users[name].Role != RoleAdmin {
			return name, status.Errorf(codes.PermissionDenied, "user %q has role %q and may not change configuration", name, s.users[name].Role)
		}
		return name, nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	name, pw := first(md, mdUsername), first(md, mdPassword)
	if name == "" {
		return "", status.Error(codes.Unauthenticated, "no credentials: send username and password metadata")
	}
	u, ok := s.users[name]
	hash := dummyHash
	if ok {
		hash = []byte(u.PasswordHash)
	}
	if err := s.checkPassword(hash, pw); err != nil || !ok {
		s.log.Warn("gnmi authentication failed", "user", name)
		return "", status.Errorf(codes.Unauthenticated, "invalid username or password for %q", name)
	}
	if write && u.Role != RoleAdmin {
		return name, status.Errorf(codes.PermissionDenied, "user %q has role %q and may not change configuration", name, u.Role)
	}
	return name, nil
}

// checkPassword compares pw with a bcrypt hash, remembering successful
// checks so that a client sending credentials on every RPC does not pay
// bcrypt's cost each time.
func (s *Server) checkPassword(hash []byte, pw string) error {
	// The cache keeps a digest, never the password itself.
	key := sha256.Sum256([]byte(string(hash) + "\x00" + pw))
	s.authMu.Lock()
	ok := s.verified[key]
	s.authMu.Unlock()
	if ok {
		return nil
	}
	if err := bcrypt.CompareHashAndPassword(hash, []byte(pw)); err != nil {
		return err
	}
	s.authMu.Lock()
	if len(s.verified) > 1024 {
		clear(s.verified)
	}
	s.verified[key] = true
	s.authMu.Unlock()
	return nil
}

// authDisabled reports whether requests are accepted without credentials:
// only in insecure mode with no users configured.
func (s *Server) authDisabled() bool { return s.sec.Insecure && len(s.users) == 0 }

// first returns the first value of key in md, or "".
func first(md metadata.MD, key string) string {
	if v := md.Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

// unaryAuth authenticates every unary RPC; Set additionally requires a
// role that may write. The username is kept in the context for the
// handler.
func (s *Server) unaryAuth(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	write := info.FullMethod == "/gnmi.gNMI/Set"
	user, err := s.authorize(ctx, write)
	if err != nil {
		return nil, err
	}
	return handler(withUser(ctx, user), req)
}

// streamAuth authenticates every streaming RPC (Subscribe) for reading;
// the handler's stream context carries the username.
func (s *Server) streamAuth(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	user, err := s.authorize(ss.Context(), false)
	if err != nil {
		return err
	}
	return handler(srv, &ctxStream{ServerStream: ss, ctx: withUser(ss.Context(), user)})
}

// ctxStream is a server stream with a derived context.
type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

// Context returns the derived context.
func (c *ctxStream) Context() context.Context { return c.ctx }

type userKey struct{}

func withUser(ctx context.Context, user string) context.Context {
	return context.WithValue(ctx, userKey{}, user)
}

// userFrom returns the authenticated username in ctx, or "".
func userFrom(ctx context.Context) string {
	u, _ := ctx.Value(userKey{}).(string)
	return u
}
