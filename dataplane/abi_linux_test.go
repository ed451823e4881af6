package dataplane

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// TestOpenRefusesOtherABI checks that maps pinned by a forwarder of another
// ABI are refused before they are loaded, with an error that says which ABI
// they have and what to do, rather than the library's map-compatibility
// error.
func TestOpenRefusesOtherABI(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	if err := ensureBPFFS(dir); err != nil {
		t.Fatal(err)
	}
	// A pinned map of the same name and a different layout stands for the
	// whole set of an older forwarder: it cannot be loaded into this spec.
	old, err := ebpf.NewMap(&ebpf.MapSpec{Name: "abi", Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := old.Put(uint32(0), uint32(abiVersion-1)); err != nil {
		t.Fatal(err)
	}
	if err := old.Pin(filepath.Join(dir, "abi")); err != nil {
		t.Fatal(err)
	}
	d, err := Open(Config{BPFFS: dir})
	if err == nil {
		d.Destroy()
		t.Fatal("open with maps of another abi succeeded")
	}
	want := fmt.Sprintf("have abi %d, want %d", abiVersion-1, abiVersion)
	if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "remove that directory") {
		t.Fatalf("error %q does not name the pinned abi and the remedy", err)
	}
}
