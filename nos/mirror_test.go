package nos

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
)

// lockedBuffer is a log destination safe for the core's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// mirrorFailures reads /system/state/mirror-failures from the state tree,
// and whether it is there.
func mirrorFailures(c *Core) (uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.state.GetSystem().GetState()
	if st == nil || st.MirrorFailures == nil {
		return 0, false
	}
	return *st.MirrorFailures, true
}

// TestMirrorFailuresCounted: a config leaf the core cannot write under its
// state sibling is not dropped silently: it is logged at warning level
// with its state path and counted in /system/state/mirror-failures, which
// is zero (and in telemetry) from the start; the other leaves of the diff
// are mirrored all the same.
//
// The schema gives every state sibling the type of its config leaf (the
// server's TestStateMirrorsConfig mirrors all of them through Set), so no
// valid commit fails to mirror: the test hands the mirror a diff whose
// udp-port is a string, as a diff out of step with the schema would.
func TestMirrorFailuresCounted(t *testing.T) {
	logs := &lockedBuffer{}
	st, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c, err := New(st, WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if n, ok := mirrorFailures(c); !ok || n != 0 {
		t.Fatalf("after start, mirror-failures = %d (present %v), want 0", n, ok)
	}
	if cacheLeaves(t, c, "system", "state", "mirror-failures") != 1 {
		t.Errorf("mirror-failures is not in telemetry after start")
	}

	diff := &gpb.Notification{Update: []*gpb.Update{
		{Path: mustPath(t, "/tunnel/config/udp-port"), Val: &gpb.TypedValue{Value: &gpb.TypedValue_StringVal{StringVal: "not a port"}}},
		{Path: mustPath(t, "/tunnel/config/mtu"), Val: &gpb.TypedValue{Value: &gpb.TypedValue_UintVal{UintVal: 9000}}},
	}}
	c.pubMu.Lock()
	c.mirrorConfig(diff)
	c.pubMu.Unlock()

	if n, _ := mirrorFailures(c); n != 1 {
		t.Errorf("mirror-failures = %d, want 1", n)
	}
	published := map[string]*gpb.TypedValue{}
	for _, u := range diff.GetUpdate() {
		published[pathString(u.GetPath())] = u.GetVal()
	}
	if v := published["/system/state/mirror-failures"]; v.GetUintVal() != 1 {
		t.Errorf("the diff's telemetry carries mirror-failures %v, want 1", v)
	}
	if _, ok := published["/tunnel/state/udp-port"]; ok {
		t.Errorf("the leaf that failed was published under state")
	}
	if v := published["/tunnel/state/mtu"]; v.GetUintVal() != 9000 {
		t.Errorf("the other leaf was not mirrored: /tunnel/state/mtu = %v", v)
	}
	c.mu.Lock()
	mtu := c.state.GetTunnel().GetState().GetMtu()
	c.mu.Unlock()
	if mtu != 9000 {
		t.Errorf("state tree /tunnel/state/mtu = %d, want 9000", mtu)
	}
	var warned bool
	for _, line := range strings.Split(logs.String(), "\n") {
		warned = warned || (strings.Contains(line, "level=WARN") && strings.Contains(line, "path=/tunnel/state/udp-port"))
	}
	if !warned {
		t.Errorf("no warning naming /tunnel/state/udp-port in the log:\n%s", logs)
	}

	// A commit that mirrors cleanly keeps the count and does not publish it again.
	if _, err := c.Set(ctx, "a", &gpb.SetRequest{Update: []*gpb.Update{
		jsonUpdate(t, "/tunnel/config", `{"source-address":"192.0.2.1","udp-port":6635}`),
	}}); err != nil {
		t.Fatal(err)
	}
	if n, _ := mirrorFailures(c); n != 1 {
		t.Errorf("after a clean commit, mirror-failures = %d, want 1", n)
	}
	c.mu.Lock()
	port := c.state.GetTunnel().GetState().GetUdpPort()
	c.mu.Unlock()
	if port != 6635 {
		t.Errorf("after a clean commit, /tunnel/state/udp-port = %d, want 6635", port)
	}
}
