package main

import (
	"bytes"
	"os"
	"testing"
)

// TestReferenceIsFresh fails when docs/paths.md no longer matches the models.
func TestReferenceIsFresh(t *testing.T) {
	want, err := render()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../../docs/paths.md")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("docs/paths.md is stale: run `make gen` and commit the result")
	}
}
