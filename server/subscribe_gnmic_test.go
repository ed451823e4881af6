package server

import (
	"context"
	"os/exec"
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

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out lockedBuffer
	cmd := exec.CommandContext(ctx, g.bin, g.args(adminUser, adminPass, []string{
		"subscribe", "--format", "prototext", "--mode", "stream", "--stream-mode", "on-change", "--updates-only", "--path", vrfPath("red") + "/config",
	})...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		_ = cmd.Wait() // killed by cancel: its exit status says nothing
	}()
	waitFor(t, &out, "sync_response:")
	if _, err := e.cli.Set(admin(), &gpb.SetRequest{Update: []*gpb.Update{upd(t, descr, str("after"))}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, &out, "after")
	if s := out.String(); strings.Contains(s, "before") || strings.Contains(s, "65000:1") {
		t.Fatalf("stream with --updates-only printed current values:\n%s", s)
	}
}
