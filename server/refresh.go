package server

import (
	"context"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// refreshState lets the reconcilers re-read, from its source, the state a
// Get is about to return (nos.Core.RefreshOnRequest): the flows of a
// service, for one, are read from the pinned flow table at request time.
// A Get of configuration only refreshes nothing.
func (s *Server) refreshState(ctx context.Context, typ gpb.GetRequest_DataType, qs []getQuery) error {
	if typ == gpb.GetRequest_CONFIG {
		return nil
	}
	for _, q := range qs {
		for _, p := range q.paths {
			if err := s.core.RefreshState(ctx, p); err != nil {
				if ctx.Err() != nil {
					return status.FromContextError(ctx.Err()).Err()
				}
				return status.Errorf(codes.Internal, "%s: %v", pathString(q.asked), err)
			}
		}
	}
	return nil
}
