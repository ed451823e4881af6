package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// stopGrace is how long Serve waits for RPCs in flight after ctx is done
// before it cuts the remaining streams.
const stopGrace = 5 * time.Second

// Listen listens on addr (DefaultAddr when empty) and serves until ctx is
// done; see Serve.
func (s *Server) Listen(ctx context.Context, addr string) error {
	if addr == "" {
		addr = DefaultAddr
	}
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("listen gnmi: %w", err)
	}
	return s.Serve(ctx, lis)
}

// Serve serves gNMI on lis until ctx is done, then stops gracefully,
// giving RPCs in flight a few seconds. It returns nil after a stop asked
// for by ctx, or the error that ended serving.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	gs, err := s.grpcServer()
	if err != nil {
		lis.Close()
		return err
	}
	done := make(chan error, 1)
	go func() { done <- gs.Serve(lis) }()
	s.log.Info("gnmi serving", "addr", lis.Addr().String(), "tls", !s.sec.Insecure, "mtls", s.sec.ClientCA != "", "users", len(s.users))
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("serve gnmi: %w", err)
		}
		return nil
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(stopped)
	}()
	t := time.NewTimer(stopGrace)
	defer t.Stop()
	select {
	case <-stopped:
	case <-t.C:
		s.log.Warn("gnmi graceful stop timed out; closing remaining streams")
		gs.Stop()
		<-stopped
	}
	if err := <-done; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serve gnmi: %w", err)
	}
	return nil
}

// grpcServer builds the gRPC server with transport credentials and the
// authentication interceptors, and registers the gNMI service.
func (s *Server) grpcServer() (*grpc.Server, error) {
	if s.usersErr != nil {
		return nil, fmt.Errorf("gnmi users: %w", s.usersErr)
	}
	var creds credentials.TransportCredentials
	if s.sec.Insecure {
		creds = insecure.NewCredentials()
		if s.authDisabled() {
			s.log.Warn("INSECURE: gNMI is served WITHOUT TLS and WITHOUT AUTHENTICATION; anyone who reaches the port can change the configuration; use this in labs only")
		} else {
			s.log.Warn("INSECURE: gNMI is served WITHOUT TLS; passwords cross the network in clear text; use this in labs only")
		}
	} else {
		cfg, err := tlsConfig(s.sec, s.dataDir)
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(cfg)
		if len(s.users) == 0 {
			s.log.Warn("no gnmi users configured: every request will be refused; add users to the security section of the configuration")
		}
	}
	gs := grpc.NewServer(
		grpc.Creds(creds),
		grpc.ChainUnaryInterceptor(s.unaryAuth),
		grpc.ChainStreamInterceptor(s.streamAuth),
	)
	gpb.RegisterGNMIServer(gs, s)
	return gs, nil
}
