package api

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Errors the daemon returns and the client hands back, checked with
// errors.Is. Each travels as its own gRPC code.
var (
	// ErrUnknownNetwork: the network or the VRF it maps to does not exist.
	ErrUnknownNetwork = errors.New("unknown network")
	// ErrPoolExhausted: the VRF has no free address left in its pools.
	ErrPoolExhausted = errors.New("address pool exhausted")
	// ErrInvalid: the request is malformed.
	ErrInvalid = errors.New("invalid request")
	// ErrUnavailable: isthmusd is not running, or not ready.
	ErrUnavailable = errors.New("isthmusd unavailable")
	// ErrNoAttachment: there is no such attachment.
	ErrNoAttachment = errors.New("no such attachment")
)

// sentinel pairs each error with its gRPC code.
var sentinels = []struct {
	err  error
	code codes.Code
}{
	{ErrUnknownNetwork, codes.NotFound},
	{ErrPoolExhausted, codes.ResourceExhausted},
	{ErrInvalid, codes.InvalidArgument},
	{ErrUnavailable, codes.Unavailable},
	{ErrNoAttachment, codes.FailedPrecondition},
}

// toStatus turns a server error into a gRPC status error once, at the edge.
func toStatus(err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			return status.Error(s.code, err.Error())
		}
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

// fromStatus turns a gRPC status error back into an error wrapping this
// package's sentinel, so the client side can use errors.Is.
func fromStatus(method string, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("call %s: %w", method, err)
	}
	for _, s := range sentinels {
		if st.Code() == s.code {
			return fmt.Errorf("call %s: %w (%s)", method, s.err, st.Message())
		}
	}
	return fmt.Errorf("call %s: %s: %s", method, st.Code(), st.Message())
}
