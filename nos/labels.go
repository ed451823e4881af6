package nos

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"strings"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// Label range the allocator hands out. Labels below 16 are reserved (RFC
// 3032); the range stays clear of what routers commonly use for their own
// dynamic labels.
const (
	FirstLabel uint32 = 100000
	LastLabel  uint32 = 1048575
)

var bucketLabels = []byte("labels") // owner key → label (big endian uint32)

// ErrLabelsExhausted is returned when no label is free.
var ErrLabelsExhausted = errors.New("label range exhausted")

// Labels allocates VPN labels and persists them in the store, so a label
// stays the same for its owner across restarts. BGP advertises the labels;
// the dataplane decapsulates them. Owners are a VRF (per-VRF mode) or a
// prefix in a VRF (per-prefix mode). It is safe for concurrent use.
type Labels struct {
	db *bolt.DB

	mu    sync.Mutex // guards byOwn, byLbl, byVRF, next, held, pending
	byOwn map[string]uint32
	byLbl map[uint32]string
	byVRF map[string]map[string]uint32 // VRF → its owners' keys → label
	next  uint32
	// While a commit is under way (hold), allocations and releases are
	// kept in pending and written in the commit's own transaction
	// (persist), so a commit that needs a new label waits for the disk
	// once, not twice. A commit that fails writes them on its own
	// (unhold): an allocation stays persistent either way.
	held    bool
	pending map[string]uint32 // owner key → label to write, 0 to delete
}

// LabelOwner describes who a label belongs to.
type LabelOwner struct {
	VRF    string
	Prefix netip.Prefix // invalid (zero) for a per-VRF label
}

func ownerKey(o LabelOwner) string {
	if !o.Prefix.IsValid() {
		return "vrf/" + o.VRF
	}
	return "prefix/" + o.VRF + "/" + o.Prefix.String()
}

func parseOwner(key string) (LabelOwner, error) {
	if vrf, ok := strings.CutPrefix(key, "vrf/"); ok {
		return LabelOwner{VRF: vrf}, nil
	}
	if rest, ok := strings.CutPrefix(key, "prefix/"); ok {
		// VRF names cannot contain '/', so the first one ends the name.
		if vrf, pfx, ok := strings.Cut(rest, "/"); ok {
			p, err := netip.ParsePrefix(pfx)
			if err != nil {
				return LabelOwner{}, fmt.Errorf("parse label owner %q: %w", key, err)
			}
			return LabelOwner{VRF: vrf, Prefix: p}, nil
		}
	}
	return LabelOwner{}, fmt.Errorf("parse label owner %q: unknown form", key)
}

func newLabels(db *bolt.DB) (*Labels, error) {
	l := &Labels{db: db, byOwn: map[string]uint32{}, byLbl: map[uint32]string{}, byVRF: map[string]map[string]uint32{}, pending: map[string]uint32{}, next: FirstLabel}
	err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketLabels)
		if err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			if len(v) != 4 {
				return fmt.Errorf("label of %q has %d bytes", k, len(v))
			}
			lbl := binary.BigEndian.Uint32(v)
			l.byOwn[string(k)] = lbl
			l.byLbl[lbl] = string(k)
			l.index(string(k), lbl)
			if lbl >= l.next {
				l.next = lbl + 1
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("load labels: %w", err)
	}
	return l, nil
}

// VRF returns the per-VRF label of vrf, allocating and persisting one if
// it has none.
func (l *Labels) VRF(vrf string) (uint32, error) {
	return l.get(LabelOwner{VRF: vrf})
}

// Prefix returns the per-prefix label of p in vrf, allocating one if needed.
func (l *Labels) Prefix(vrf string, p netip.Prefix) (uint32, error) {
	return l.get(LabelOwner{VRF: vrf, Prefix: p.Masked()})
}

func (l *Labels) get(o LabelOwner) (uint32, error) {
	key := ownerKey(o)
	l.mu.Lock()
	defer l.mu.Unlock()
	if lbl, ok := l.byOwn[key]; ok {
		return lbl, nil
	}
	lbl, err := l.free()
	if err != nil {
		return 0, fmt.Errorf("allocate label for %s: %w", key, err)
	}
	if l.held {
		l.pending[key] = lbl
	} else {
		var snap map[string]uint32
		err = l.db.Update(func(tx *bolt.Tx) error {
			if snap, err = l.write(tx); err != nil {
				return err
			}
			var v [4]byte
			binary.BigEndian.PutUint32(v[:], lbl)
			return tx.Bucket(bucketLabels).Put([]byte(key), v[:])
		})
		if err != nil {
			return 0, fmt.Errorf("persist label for %s: %w", key, err)
		}
		l.forget(snap)
	}
	l.byOwn[key] = lbl
	l.byLbl[lbl] = key
	l.index(key, lbl)
	l.next = lbl + 1
	return lbl, nil
}

// index records the label of key under its VRF; l.mu is held.
func (l *Labels) index(key string, lbl uint32) {
	o, err := parseOwner(key)
	if err != nil {
		return
	}
	m := l.byVRF[o.VRF]
	if m == nil {
		m = map[string]uint32{}
		l.byVRF[o.VRF] = m
	}
	m[key] = lbl
}

// unindex forgets key under its VRF; l.mu is held.
func (l *Labels) unindex(key string) {
	o, err := parseOwner(key)
	if err != nil {
		return
	}
	if m := l.byVRF[o.VRF]; m != nil {
		delete(m, key)
		if len(m) == 0 {
			delete(l.byVRF, o.VRF)
		}
	}
}

// OfVRF returns the labels allocated in vrf (its per-VRF label and its
// per-prefix labels) and their owners, without looking at other VRFs'.
func (l *Labels) OfVRF(vrf string) map[uint32]LabelOwner {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[uint32]LabelOwner, len(l.byVRF[vrf]))
	for k, lbl := range l.byVRF[vrf] {
		if o, err := parseOwner(k); err == nil {
			out[lbl] = o
		}
	}
	return out
}

// free returns an unused label; l.mu is held.
func (l *Labels) free() (uint32, error) {
	n := LastLabel - FirstLabel + 1
	for i := uint32(0); i < n; i++ {
		lbl := l.next + i
		if lbl > LastLabel {
			lbl = FirstLabel + (lbl - LastLabel - 1)
		}
		if _, used := l.byLbl[lbl]; !used {
			return lbl, nil
		}
	}
	return 0, ErrLabelsExhausted
}

// ReleaseVRF frees the per-VRF label of vrf and every per-prefix label in it.
func (l *Labels) ReleaseVRF(vrf string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var keys []string
	for k := range l.byVRF[vrf] {
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil
	}
	return l.release(keys)
}

// ReleasePrefix frees the per-prefix label of p in vrf.
func (l *Labels) ReleasePrefix(vrf string, p netip.Prefix) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.release([]string{ownerKey(LabelOwner{VRF: vrf, Prefix: p.Masked()})})
}

// release deletes keys; l.mu is held.
func (l *Labels) release(keys []string) error {
	if l.held {
		for _, k := range keys {
			if _, ok := l.byOwn[k]; ok {
				l.pending[k] = 0
			}
		}
	} else {
		var snap map[string]uint32
		err := l.db.Update(func(tx *bolt.Tx) error {
			var err error
			if snap, err = l.write(tx); err != nil {
				return err
			}
			b := tx.Bucket(bucketLabels)
			for _, k := range keys {
				if err := b.Delete([]byte(k)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("release labels: %w", err)
		}
		l.forget(snap)
	}
	for _, k := range keys {
		if lbl, ok := l.byOwn[k]; ok {
			delete(l.byLbl, lbl)
			delete(l.byOwn, k)
			l.unindex(k)
		}
	}
	return nil
}

// Owner returns who label belongs to.
func (l *Labels) Owner(label uint32) (LabelOwner, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k, ok := l.byLbl[label]
	if !ok {
		return LabelOwner{}, false
	}
	o, err := parseOwner(k)
	return o, err == nil
}

// All returns every allocated label and its owner.
func (l *Labels) All() map[uint32]LabelOwner {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[uint32]LabelOwner, len(l.byLbl))
	for lbl, k := range l.byLbl {
		if o, err := parseOwner(k); err == nil {
			out[lbl] = o
		}
	}
	return out
}

// hold keeps allocations and releases in memory until persist writes
// them in a commit's transaction, or unhold on its own.
func (l *Labels) hold() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.held = true
}

// unhold ends hold, writing in a transaction of its own whatever the
// commit's did not (the commit failed).
func (l *Labels) unhold() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.held = false
	if len(l.pending) == 0 {
		return nil
	}
	var snap map[string]uint32
	err := l.db.Update(func(tx *bolt.Tx) error {
		var err error
		snap, err = l.write(tx)
		return err
	})
	if err != nil {
		return fmt.Errorf("persist labels: %w", err)
	}
	l.forget(snap)
	return nil
}

// persist writes the pending allocations and releases in tx, the commit's
// transaction; they stop being pending once tx has committed.
func (l *Labels) persist(tx *bolt.Tx) error {
	l.mu.Lock()
	snap, err := l.write(tx)
	l.mu.Unlock()
	if err == nil && len(snap) > 0 {
		tx.OnCommit(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.forget(snap)
		})
	}
	return err
}

// write writes the pending allocations and releases in tx and returns
// what it wrote, for forget once tx has committed; l.mu is held.
func (l *Labels) write(tx *bolt.Tx) (map[string]uint32, error) {
	if len(l.pending) == 0 {
		return nil, nil
	}
	b := tx.Bucket(bucketLabels)
	for k, lbl := range l.pending {
		var err error
		if lbl == 0 {
			err = b.Delete([]byte(k))
		} else {
			var v [4]byte
			binary.BigEndian.PutUint32(v[:], lbl)
			err = b.Put([]byte(k), v[:])
		}
		if err != nil {
			return nil, fmt.Errorf("write label of %s: %w", k, err)
		}
	}
	return maps.Clone(l.pending), nil
}

// forget drops from pending what snap says was written, unless it
// changed since; l.mu is held.
func (l *Labels) forget(snap map[string]uint32) {
	for k, v := range snap {
		if cur, ok := l.pending[k]; ok && cur == v {
			delete(l.pending, k)
		}
	}
}
