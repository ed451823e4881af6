package server

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/isthmus-net/isthmus/nos"
)

// TestSetBeforeStartIsUnavailable: a core that has not started (or whose
// start failed) takes no commit, and the client hears why.
func TestSetBeforeStartIsUnavailable(t *testing.T) {
	st, err := nos.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	core, err := nos.New(st, nos.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	srv := New(core, WithSecurity(SecurityConfig{Insecure: true}))
	_, err = srv.Set(context.Background(), &gpb.SetRequest{Update: []*gpb.Update{upd(t, vrfPath("red"), ietf(vrfJSON("red", "65000:1", "10.1.0.0/24")))}})
	if status.Code(err) != codes.Unavailable || !strings.Contains(status.Convert(err).Message(), "not running") {
		t.Fatalf("set before start: %v, want Unavailable saying the core is not running", err)
	}
	if core.Revision() != 0 {
		t.Fatal("a refused Set was committed")
	}
}
