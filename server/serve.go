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
	"google.golang.org/grpc/status"
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
	streams, endStreams := context.WithCancel(context.Background())
	defer endStreams()
	gs, err := s.grpcServer(streams)
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
	// Subscriptions never finish on their own: end them, then let unary
	// RPCs in flight complete.
	endStreams()
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
// authentication interceptors, and registers the gNMI service. Streams
// end when streams is done.
func (s *Server) grpcServer(streams context.Context) (*grpc.Server, error) {
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
		grpc.ChainStreamInterceptor(endWith(streams), s.streamAuth),
	)
	gpb.RegisterGNMIServer(gs, s)
	return gs, nil
}

// endWith returns a stream interceptor that cancels each stream's context
// when done is done.
func endWith(done context.Context) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, cancel := context.WithCancel(ss.Context())
		defer cancel()
		stop := context.AfterFunc(done, cancel)
		defer stop()
		return handler(srv, &endingStream{ServerStream: ss, ctx: ctx})
	}
}

// endingStream is a server stream whose context can end before the RPC
// does; a receive blocked at that moment returns, so a handler waiting
// for its reader ends too.
type endingStream struct {
	grpc.ServerStream
	ctx context.Context
}

// Context returns the stream's context, done at shutdown.
func (e *endingStream) Context() context.Context { return e.ctx }

// RecvMsg receives the next message, or returns when the context ends.
// In the latter case the receive continues in the background until gRPC
// closes the stream, which it does once the handler returns; m must not
// be used after such an early return.
func (e *endingStream) RecvMsg(m any) error {
	if err := e.ctx.Err(); err != nil {
		return status.FromContextError(err).Err()
	}
	done := make(chan error, 1)
	go func() { done <- e.ServerStream.RecvMsg(m) }()
	select {
	case err := <-done:
		return err
	case <-e.ctx.Done():
		return status.FromContextError(e.ctx.Err()).Err()
	}
}
