package crd

import (
	"bytes"
	"os"
	"testing"
)

// TestManifestCurrent fails when deploy/isthmus/crds/ was not regenerated
// after the schema changed.
func TestManifestCurrent(t *testing.T) {
	want, err := YAML()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../../deploy/isthmus/crds/isthmus.dev_virtualnetworks.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("deploy/isthmus/crds/isthmus.dev_virtualnetworks.yaml is stale: run `go generate ./kube/crd` (make gen)")
	}
}
