package dataplane

import "testing"

func TestOpenLoadsAndAdopts(t *testing.T) {
	isolate(t)
	d := openTest(t)
	if d.Adopted() {
		t.Fatal("first open adopted programs")
	}
	d2, err := Open(Config{BPFFS: d.Dir()})
	if err != nil {
		t.Fatalf("second open: %v", err)
	}
	defer d2.Close()
	if !d2.Adopted() {
		t.Fatal("second open did not adopt pinned programs")
	}
}
