package server

import (
	"strings"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
)

// TestGnmicUpdatesOnly drives gnmic's --updates-only: the stream starts
// with sync_response and no current values, then carries the changes.
func TestGnmicUpdatesOnly(t *testing.T) {
	if testing.Short() {
		t.Skip("builds gnmic")
	}
	e := newTestEnv(t)
	g := newGnmic(t, e)
	e.addVRF(t, "red", "65000:1", "10.1.0.0/24")
	descr := vrfPath("red") + "/config/description"
	if _, err := e.cli.Set(admin(), &gpb.SetRequest{Update: []*gpb.Update{upd(t, descr, str("before"))}}); err != nil {
		t.Fatal(err)
	}

	// ONCE: only sync_response, so gnmic prints no value.
	if out := g.mustRun(t, nil, "subscribe", "--mode", "once", "--updates-only", "--path", descr); strings.Contains(out, "before") {
		t.Fatalf("once with --updates-only printed the current value:\n%s", out)
	}

	out := g.start(t, "subscribe", "--format", "prototext", "--mode", "stream", "--stream-mode", "on-change", "--updates-only", "--path", vrfPath("red")+"/config")
	waitFor(t, out, "sync_response:")
	if _, err := e.cli.Set(admin(), &gpb.SetRequest{Update: []*gpb.Update{upd(t, descr, str("after"))}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, out, "after")
	if s := out.String(); strings.Contains(s, "before") || strings.Contains(s, "65000:1") {
		t.Fatalf("stream with --updates-only printed current values:\n%s", s)
	}
}
