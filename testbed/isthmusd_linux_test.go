package testbed

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// buildIsthmusd builds cmd/isthmusd for the test. Until the daemon builds,
// the tests that need it skip (a broken build already fails `go vet`).
func buildIsthmusd(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "isthmusd")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/isthmus-net/isthmus/cmd/isthmusd").CombinedOutput()
	if err != nil {
		t.Fatalf("build isthmusd: %v: %s", err, out)
	}
	return bin
}

// TestIsthmusdInNode starts isthmusd in c1, crashes and restarts it, and
// checks that Down leaves neither the process nor its bpffs behind.
func TestIsthmusdInNode(t *testing.T) {
	RequirePrivileges(t, "nsenter")
	bin := buildIsthmusd(t)
	tb := NewTestbed(t, Mission())
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	d, err := tb.StartIsthmusd(ctx, "c1", IsthmusdOptions{Binary: bin})
	if err != nil {
		t.Fatal(err)
	}
	// gNMI answers from another node across the routers.
	c, err := tb.Dial(ctx, "d1", "tcp", d.GNMI)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Close() // only reachability matters
	if err := d.Restart(ctx, true); err != nil {
		t.Fatal(err)
	}
	if err := tb.Down(ctx); err != nil {
		t.Fatal(err)
	}
	assertNoLeftovers(t, tb.Prefix())
}
