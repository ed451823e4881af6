package server

import (
	"context"
	"errors"
	"regexp"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/isthmus-net/isthmus/nos"
)

// toStatus turns an error from the core into a gRPC status error. It is
// the one place where errors become statuses; the message is the error's
// own text, which for a *nos.PathError starts with the offending path.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codeOf(err), nestedStatus.ReplaceAllString(err.Error(), ""))
}

// nestedStatus matches the rendering of a gRPC status that a library
// wrapped into a plain error; the outer status says it better.
var nestedStatus = regexp.MustCompile(`rpc error: code = \w+ desc = `)

// codeOf picks the status code for err.
func codeOf(err error) codes.Code {
	switch {
	case errors.Is(err, nos.ErrNotStarted):
		return codes.Unavailable
	case errors.Is(err, nos.ErrInvalid):
		return codes.InvalidArgument
	case errors.Is(err, nos.ErrNotFound):
		return codes.NotFound
	case errors.Is(err, nos.ErrPrecondition):
		return codes.FailedPrecondition
	case errors.Is(err, nos.ErrReconcile):
		return codes.Aborted
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	default:
		return codes.Internal
	}
}
