package api

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
)

// ServiceName is the gRPC service name of the CNI API.
const ServiceName = "isthmus.cni.v1.CNI"

// DefaultSocket is where isthmusd serves the API unless told otherwise.
const DefaultSocket = "/run/isthmus/cni.sock"

// Server is what isthmusd implements. Errors should wrap the sentinels of
// this package; Register turns them into gRPC statuses.
type Server interface {
	// Add allocates an address and commits a pod attachment. Repeating an
	// Add for an existing attachment returns the recorded one.
	Add(ctx context.Context, req *AddRequest) (*AddResponse, error)
	// Del removes an attachment and releases its address; idempotent.
	Del(ctx context.Context, req *DelRequest) (*DelResponse, error)
	// Get returns one attachment, or ErrNoAttachment.
	Get(ctx context.Context, req *GetRequest) (*GetResponse, error)
	// GC removes a network's attachments that are not in the valid list.
	GC(ctx context.Context, req *GCRequest) (*GCResponse, error)
	// Status reports whether Add would be served.
	Status(ctx context.Context, req *StatusRequest) (*StatusResponse, error)
}

// unary builds the method handler of one RPC: decode the request, run it
// through the interceptor chain, call the typed method, map its error.
func unary[Req, Resp any](name string, call func(Server, context.Context, *Req) (*Resp, error)) grpc.MethodDesc {
	return grpc.MethodDesc{
		MethodName: name,
		Handler: func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
			req := new(Req)
			if err := dec(req); err != nil {
				return nil, toStatus(fmt.Errorf("%w: decode %s request: %w", ErrInvalid, name, err))
			}
			handle := func(ctx context.Context, r any) (any, error) {
				resp, err := call(srv.(Server), ctx, r.(*Req))
				if err != nil {
					return nil, toStatus(err)
				}
				return resp, nil
			}
			if icpt == nil {
				return handle(ctx, req)
			}
			info := &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + ServiceName + "/" + name}
			return icpt(ctx, req, info, handle)
		},
	}
}

// ServiceDesc describes the CNI service for grpc.Server.RegisterService.
var ServiceDesc = grpc.ServiceDesc{
	ServiceName: ServiceName,
	HandlerType: (*Server)(nil),
	Methods: []grpc.MethodDesc{
		unary("Add", Server.Add),
		unary("Del", Server.Del),
		unary("Get", Server.Get),
		unary("GC", Server.GC),
		unary("Status", Server.Status),
	},
	Metadata: "isthmus/cni/api",
}

// NewGRPCServer returns a gRPC server that speaks this API's codec, with
// srv registered on it.
func NewGRPCServer(srv Server, opts ...grpc.ServerOption) *grpc.Server {
	opts = append([]grpc.ServerOption{grpc.ForceServerCodec(Codec{})}, opts...)
	s := grpc.NewServer(opts...)
	s.RegisterService(&ServiceDesc, srv)
	return s
}
