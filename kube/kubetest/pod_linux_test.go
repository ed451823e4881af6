package kubetest

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/isthmus-net/isthmus/internal/testenv"
)

// TestProbeOutOfTimeIsNoAnswer: a probe whose time has run out before its
// datagram or connection goes out (hundreds of probes at once on a slow
// machine, or under the race detector) is a probe without answer, as one
// whose reply does not come in time is, not an error; with time, the same
// probes are answered.
func TestProbeOutOfTimeIsNoAnswer(t *testing.T) {
	testenv.Privileged(t)
	name := fmt.Sprintf("kubetest-probe-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("add netns: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v: %s", err, out)
	}
	h, err := ns.GetNS(filepath.Join("/run/netns", name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	p := &Pod{Namespace: "x", Name: "a", Addr: netip.MustParseAddr("127.0.0.1"), netns: h}
	p.Serve(t, 8080)
	for _, proto := range []string{"udp", "tcp"} {
		if got, err := p.Probe(t.Context(), proto, p.Addr, 8080, time.Nanosecond); !errors.Is(err, ErrNoAnswer) {
			t.Errorf("%s probe out of time = %q, %v; want %v", proto, got, err, ErrNoAnswer)
		}
		if got, err := p.Probe(t.Context(), proto, p.Addr, 8080, 5*time.Second); err != nil || got != "x/a" {
			t.Errorf("%s probe = %q, %v; want x/a", proto, got, err)
		}
	}
}
