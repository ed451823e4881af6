package dataplane

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/isthmus-net/isthmus/internal/testenv"
)

// TestGeneratedUpToDate recompiles bpf/ with the exact //go:generate
// command into a temporary directory and fails when the committed
// forwarder_bpfel.{go,o} differ: run `go generate ./dataplane` (or
// `make gen`) after editing the C sources.
func TestGeneratedUpToDate(t *testing.T) {
	src, err := os.ReadFile("generate.go")
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, line := range strings.Split(string(src), "\n") {
		if rest, ok := strings.CutPrefix(line, "//go:generate go tool bpf2go "); ok {
			args = strings.Fields(rest)
		}
	}
	if len(args) == 0 {
		t.Fatal("no //go:generate bpf2go line in generate.go")
	}
	for i, a := range args {
		if a == "-cc" && i+1 < len(args) {
			if _, err := exec.LookPath(args[i+1]); err != nil {
				testenv.Unavailable(t, fmt.Sprintf("compiler %s not installed: %v", args[i+1], err))
			}
		}
	}
	out := t.TempDir()
	cmd := exec.Command("go", append([]string{"tool", "bpf2go", "-output-dir", out}, args...)...)
	cmd.Env = append(os.Environ(), "GOPACKAGE=dataplane")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bpf2go: %v\n%s", err, b)
	}
	for _, f := range []string{"forwarder_bpfel.go", "forwarder_bpfel.o"} {
		want, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run go generate ./dataplane", f)
		}
	}
}
