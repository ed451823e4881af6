package api

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Client calls isthmusd's CNI API over its unix socket.
type Client struct {
	conn *grpc.ClientConn
}

// NewClient returns a client for the daemon listening on socket. It does
// not connect until the first call; a call to a daemon that is not running
// fails at once with ErrUnavailable.
func NewClient(socket string) (*Client, error) {
	conn, err := grpc.NewClient("unix://"+socket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(Codec{})),
	)
	if err != nil {
		return nil, fmt.Errorf("create client for %q: %w", socket, err)
	}
	return &Client{conn: conn}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

func invoke[Resp any](ctx context.Context, c *Client, method string, req any) (*Resp, error) {
	resp := new(Resp)
	if err := c.conn.Invoke(ctx, "/"+ServiceName+"/"+method, req, resp); err != nil {
		return nil, fromStatus(method, err)
	}
	return resp, nil
}

// Add calls Server.Add.
func (c *Client) Add(ctx context.Context, req *AddRequest) (*AddResponse, error) {
	return invoke[AddResponse](ctx, c, "Add", req)
}

// Del calls Server.Del.
func (c *Client) Del(ctx context.Context, req *DelRequest) (*DelResponse, error) {
	return invoke[DelResponse](ctx, c, "Del", req)
}

// Get calls Server.Get.
func (c *Client) Get(ctx context.Context, req *GetRequest) (*GetResponse, error) {
	return invoke[GetResponse](ctx, c, "Get", req)
}

// GC calls Server.GC.
func (c *Client) GC(ctx context.Context, req *GCRequest) (*GCResponse, error) {
	return invoke[GCResponse](ctx, c, "GC", req)
}

// Status calls Server.Status.
func (c *Client) Status(ctx context.Context, req *StatusRequest) (*StatusResponse, error) {
	return invoke[StatusResponse](ctx, c, "Status", req)
}
