package gen

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestGeneratedCodeIsFresh regenerates the structs from yang/ and fails when
// the committed isthmus.go differs: run `make gen` and commit the result.
func TestGeneratedCodeIsFresh(t *testing.T) {
	out := filepath.Join(t.TempDir(), "isthmus.go")
	cmd := exec.Command("./generate.sh", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("run generate.sh: %v\n%s", err, b)
	}
	want, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("isthmus.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("gen/isthmus.go is stale: run `make gen` and commit the result")
	}
}
