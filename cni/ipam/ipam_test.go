package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func openDB(t *testing.T, path string) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatalf("open db: %v", err)
	}
	if err := db.Update(Init); err != nil {
		t.Fatalf("init: %v", err)
	}
	return db
}

func newDB(t *testing.T) *bolt.DB {
	db := openDB(t, filepath.Join(t.TempDir(), "ipam.db"))
	t.Cleanup(func() { db.Close() })
	return db
}

func alloc(t *testing.T, db *bolt.DB, vrf string, pools []netip.Prefix, owner string) (netip.Addr, error) {
	t.Helper()
	var a netip.Addr
	err := db.Update(func(tx *bolt.Tx) error {
		var err error
		a, err = Allocate(tx, vrf, pools, owner)
		return err
	})
	return a, err
}

func release(t *testing.T, db *bolt.DB, vrf, owner string) {
	t.Helper()
	if err := db.Update(func(tx *bolt.Tx) error { _, _, err := Release(tx, vrf, owner); return err }); err != nil {
		t.Fatalf("release %s: %v", owner, err)
	}
}

func pfx(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, x := range s {
		out = append(out, netip.MustParsePrefix(x))
	}
	return out
}

func TestAllocateSequenceAndExhaustion(t *testing.T) {
	db := newDB(t)
	pools := pfx("10.1.0.0/29") // hosts .1 to .6
	for i := 1; i <= 6; i++ {
		a, err := alloc(t, db, "red", pools, fmt.Sprintf("pod%d", i))
		if err != nil {
			t.Fatalf("allocate %d: %v", i, err)
		}
		if want := netip.AddrFrom4([4]byte{10, 1, 0, byte(i)}); a != want {
			t.Fatalf("allocate %d = %s, want %s", i, a, want)
		}
	}
	if _, err := alloc(t, db, "red", pools, "pod7"); !errors.Is(err, ErrExhausted) {
		t.Fatalf("allocate past the end: err = %v, want ErrExhausted", err)
	}
	// Same address space in another VRF is independent.
	if a, err := alloc(t, db, "blue", pools, "pod1"); err != nil || a != netip.MustParseAddr("10.1.0.1") {
		t.Fatalf("allocate in blue = %s, %v", a, err)
	}
}

func TestAllocateIdempotentPerOwner(t *testing.T) {
	db := newDB(t)
	pools := pfx("10.1.0.0/24")
	a1, err := alloc(t, db, "red", pools, "c1/eth0")
	if err != nil {
		t.Fatal(err)
	}
	a2, err := alloc(t, db, "red", pools, "c1/eth0")
	if err != nil || a1 != a2 {
		t.Fatalf("second allocate = %s, %v; want %s", a2, err, a1)
	}
}

func TestReleaseDoesNotReuseAtOnce(t *testing.T) {
	db := newDB(t)
	pools := pfx("10.1.0.0/29")
	a1, _ := alloc(t, db, "red", pools, "a")
	release(t, db, "red", "a")
	release(t, db, "red", "a") // twice is fine
	a2, _ := alloc(t, db, "red", pools, "b")
	if a1 == a2 {
		t.Fatalf("released %s reused at once", a1)
	}
	// Fill up: the wrap-around finds the released address last.
	var last netip.Addr
	for i := 0; i < 5; i++ {
		var err error
		if last, err = alloc(t, db, "red", pools, fmt.Sprintf("fill%d", i)); err != nil {
			t.Fatalf("fill %d: %v", i, err)
		}
	}
	if last != a1 {
		t.Fatalf("last allocation = %s, want wrapped-around %s", last, a1)
	}
}

func TestPoolShapes(t *testing.T) {
	tests := []struct {
		name  string
		pools []netip.Prefix
		want  []string
	}{
		{"slash32", pfx("10.9.9.9/32"), []string{"10.9.9.9"}},
		{"slash31", pfx("10.9.9.8/31"), []string{"10.9.9.8", "10.9.9.9"}},
		{"two pools sorted", pfx("10.2.0.0/30", "10.1.0.0/30"), []string{"10.1.0.1", "10.1.0.2", "10.2.0.1", "10.2.0.2"}},
		{"overlap merged", pfx("10.1.0.0/30", "10.1.0.0/29"), []string{"10.1.0.1", "10.1.0.2", "10.1.0.3", "10.1.0.4", "10.1.0.5", "10.1.0.6"}},
		{"unmasked", pfx("10.1.0.3/30"), []string{"10.1.0.1", "10.1.0.2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := newDB(t)
			var got []string
			for i := 0; ; i++ {
				a, err := alloc(t, db, "v", tt.pools, fmt.Sprint(i))
				if errors.Is(err, ErrExhausted) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, a.String())
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("allocations = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestNoPool(t *testing.T) {
	db := newDB(t)
	if _, err := alloc(t, db, "v", nil, "a"); !errors.Is(err, ErrNoPool) {
		t.Fatalf("err = %v, want ErrNoPool", err)
	}
}

func TestConcurrentAllocationsAreDistinct(t *testing.T) {
	db := newDB(t)
	pools := pfx("10.1.0.0/24")
	const n = 50
	var wg sync.WaitGroup
	addrs := make([]netip.Addr, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			addrs[i], errs[i] = alloc(t, db, "red", pools, fmt.Sprintf("pod%d", i))
		}()
	}
	wg.Wait()
	seen := make(map[netip.Addr]int)
	for i, a := range addrs {
		if errs[i] != nil {
			t.Fatalf("pod%d: %v", i, errs[i])
		}
		if j, dup := seen[a]; dup {
			t.Fatalf("pod%d and pod%d both got %s", j, i, a)
		}
		seen[a] = i
	}
}

func TestAllocationsSurviveReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ipam.db")
	db := openDB(t, path)
	pools := pfx("10.1.0.0/24")
	want := make(map[netip.Addr]string)
	for i := range 10 {
		owner := fmt.Sprintf("pod%d", i)
		a, err := alloc(t, db, "red", pools, owner)
		if err != nil {
			t.Fatal(err)
		}
		want[a] = owner
	}
	db.Close()

	db = openDB(t, path)
	defer db.Close()
	var got map[netip.Addr]string
	if err := db.View(func(tx *bolt.Tx) (err error) { got, err = Allocated(tx, "red"); return err }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after reopen = %v, want %v", got, want)
	}
	a, err := alloc(t, db, "red", pools, "new")
	if err != nil {
		t.Fatal(err)
	}
	if _, dup := want[a]; dup {
		t.Fatalf("new allocation %s collides after reopen", a)
	}
	var held netip.Addr
	_ = db.View(func(tx *bolt.Tx) error { held, _ = Lookup(tx, "red", "pod3"); return nil })
	if want[held] != "pod3" {
		t.Fatalf("lookup pod3 = %s", held)
	}
}
