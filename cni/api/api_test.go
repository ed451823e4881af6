package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
)

func TestErrorsSurviveTheWire(t *testing.T) {
	for _, sentinel := range []error{ErrUnknownNetwork, ErrPoolExhausted, ErrInvalid, ErrUnavailable, ErrNoAttachment} {
		wire := toStatus(fmt.Errorf("add pod: %w: vrf red", sentinel))
		back := fromStatus("Add", wire)
		if !errors.Is(back, sentinel) {
			t.Errorf("%v came back as %v", sentinel, back)
		}
		for _, other := range []error{ErrUnknownNetwork, ErrPoolExhausted, ErrInvalid, ErrUnavailable, ErrNoAttachment} {
			if other != sentinel && errors.Is(back, other) {
				t.Errorf("%v came back as %v too", sentinel, other)
			}
		}
	}
	if back := fromStatus("Add", toStatus(errors.New("disk on fire"))); errors.Is(back, ErrInvalid) || back == nil {
		t.Errorf("an internal error came back as %v", back)
	}
	if back := fromStatus("Add", toStatus(context.DeadlineExceeded)); back == nil {
		t.Error("deadline exceeded was lost")
	}
}

func TestCodecRoundTrip(t *testing.T) {
	in := &AddResponse{Attachment: Attachment{
		AttachmentID: AttachmentID{ContainerID: "c1", IfName: "eth0"},
		VRF:          "red",
		Address:      netip.MustParsePrefix("10.1.0.7/32"),
		Gateway:      netip.MustParseAddr("169.254.1.1"),
		MTU:          1450,
	}, Revision: 9}
	b, err := Codec{}.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	out := new(AddResponse)
	if err := (Codec{}).Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
	if *out != *in {
		t.Fatalf("round trip = %+v, want %+v", out, in)
	}
	if err := (Codec{}).Unmarshal([]byte("{"), out); err == nil {
		t.Fatal("garbage decoded")
	}
}

// echoServer answers Status and fails everything else with one error.
type echoServer struct{ err error }

func (s echoServer) Add(context.Context, *AddRequest) (*AddResponse, error) { return nil, s.err }
func (s echoServer) Del(context.Context, *DelRequest) (*DelResponse, error) { return nil, s.err }
func (s echoServer) Get(context.Context, *GetRequest) (*GetResponse, error) { return nil, s.err }
func (s echoServer) GC(context.Context, *GCRequest) (*GCResponse, error)    { return nil, s.err }
func (s echoServer) Status(_ context.Context, r *StatusRequest) (*StatusResponse, error) {
	return &StatusResponse{Ready: r.Network == "red", Reason: "asked for " + r.Network}, nil
}

func TestClientServerOverUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewGRPCServer(echoServer{err: fmt.Errorf("%w: 10.1.0.0/30", ErrPoolExhausted)})
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	c, err := NewClient(sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx := context.Background()
	st, err := c.Status(ctx, &StatusRequest{Network: "red"})
	if err != nil || !st.Ready || st.Reason != "asked for red" {
		t.Fatalf("status = %+v, %v", st, err)
	}
	if _, err := c.Add(ctx, &AddRequest{}); !errors.Is(err, ErrPoolExhausted) {
		t.Fatalf("add: err = %v, want pool exhausted", err)
	}
}
