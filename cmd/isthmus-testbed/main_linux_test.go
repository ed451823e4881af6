package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/isthmus-net/isthmus/testbed"
)

func TestUpStatusRunDown(t *testing.T) {
	testbed.RequirePrivileges(t, "/usr/lib/frr/bgpd", "vtysh")
	root := filepath.Join(testbed.DefaultRoot, "cmdtest-"+strings.TrimSuffix(testbed.NewPrefix(), "-"))
	t.Cleanup(func() { _ = os.RemoveAll(root) })
	do := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(append([]string{args[0], "--root", root, "--isthmusd", "none"}, args[1:]...), &out)
		return out.String(), err
	}
	out, err := do("up")
	if err != nil {
		t.Fatalf("up: %v\n%s", err, out)
	}
	tb, err := current(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	prefix := tb.Prefix()
	t.Cleanup(func() { _ = testbed.Sweep(t.Context(), nil, prefix) })
	if !strings.Contains(out, "dcgw") || !strings.Contains(out, "bgpd[") {
		t.Errorf("up status lacks dcgw's bgpd:\n%s", out)
	}
	if _, err := do("up"); err == nil {
		t.Error("second up: want an error while a testbed is up")
	}
	if out, err := do("run", "underlay"); err != nil || !strings.Contains(out, "passed") {
		t.Errorf("run underlay: %v\n%s", err, out)
	}
	if _, err := do("run", "a"); !errors.Is(err, testbed.ErrNotAvailable) {
		t.Errorf("run a: got %v, want ErrNotAvailable", err)
	}
	if out, err := do("vtysh", "dcgw", "show bgp ipv4 vpn"); err != nil || !strings.Contains(out, "192.168.200.0/24") {
		t.Errorf("vtysh dcgw: %v\n%s", err, out)
	}
	if out, err := do("down"); err != nil {
		t.Fatalf("down: %v\n%s", err, out)
	}
	left, err := testbed.FindLeftovers(prefix)
	if err != nil || !left.Empty() {
		t.Errorf("left after down: %+v, %v", left, err)
	}
	if out, err := do("status"); err == nil {
		t.Errorf("status after down: want an error, got\n%s", out)
	}
}
