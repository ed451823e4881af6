package nos

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/isthmus-net/isthmus/gen"
)

// The store keeps the running configuration one key per top-level entry
// (bucketConfig: "ni/red", "if/pod1", "tunnel" → the entry's RFC 7951
// JSON), and each revision as the entries it changed, with their values
// before and after. A commit writes what it changed and nothing else; an
// older revision is rebuilt from the running entries by undoing the
// revisions after it. Revisions stored before this format hold the
// whole configuration; opening such a store copies the head revision
// into bucketConfig once (migrate), and those revisions stay readable.

var (
	bucketConfig  = []byte("config")                 // entry key → RFC 7951 JSON of the running entry
	formatKey     = []byte("format")                 // in bucketMeta: the layout of the store
	formatEntries = []byte("entries")                // one key per entry, revisions as changes
	formatCur     = []byte("entries/acl-entry-keys") // the same, and one key per ACL entry (store_acl.go)
)

// storedRecord is a revision as stored: who and when, and either the
// entries it changed or (stored before the per-entry format) the whole
// configuration.
type storedRecord struct {
	CommitInfo
	Config  json.RawMessage `json:"config,omitempty"`
	Changes []entryChange   `json:"changes,omitempty"`
}

// entryChange is one entry a revision changed.
type entryChange struct {
	Key string          `json:"key"`
	Old json.RawMessage `json:"old,omitempty"` // absent: the revision added the entry
	New json.RawMessage `json:"new,omitempty"` // absent: the revision removed it
	// wholeSet marks an ACL set written whole or removed: the store
	// removes every entry of it that changes does not name.
	wholeSet bool
}

// entryChanges encodes the entries of cand that ch says changed, and
// names the removed ones. Old values are filled in by the store.
func entryChanges(cand *gen.Device, ch delta) ([]entryChange, error) {
	var out []entryChange
	for i, l := range topLists {
		if i == listACL {
			for _, k := range ch.changed[i] {
				cs, err := aclSetChanges(l.entry(cand, k).(*aclSetT), k, ch.acl[k])
				if err != nil {
					return nil, err
				}
				out = append(out, cs...)
			}
			for _, k := range ch.removed[i] {
				out = append(out, entryChange{Key: l.kind + "/" + k, wholeSet: true})
			}
			continue
		}
		for _, k := range ch.changed[i] {
			b, err := encodeEntry(l.entry(cand, k))
			if err != nil {
				return nil, fmt.Errorf("encode %s %q: %w", l.path[len(l.path)-1], k, err)
			}
			out = append(out, entryChange{Key: l.kind + "/" + k, New: b})
		}
		for _, k := range ch.removed[i] {
			out = append(out, entryChange{Key: l.kind + "/" + k})
		}
	}
	if ch.tunnel {
		c := entryChange{Key: tunnelKey}
		if cand.Tunnel != nil {
			b, err := encodeEntry(cand.Tunnel)
			if err != nil {
				return nil, fmt.Errorf("encode tunnel: %w", err)
			}
			c.New = b
		}
		out = append(out, c)
	}
	return out, nil
}

// aclSetChanges encodes what changed in ACL set name (s, as it is now):
// its own leaves and each entry under keys of their own (store_acl.go);
// with g, only what g names, else the whole set.
func aclSetChanges(s *aclSetT, name string, g *aclChange) ([]entryChange, error) {
	var out []entryChange
	if g == nil || g.set {
		b, err := encodeEntry(withoutEntries(s))
		if err != nil {
			return nil, fmt.Errorf("encode acl-set %q: %w", name, err)
		}
		out = append(out, entryChange{Key: topLists[listACL].kind + "/" + name, New: b, wholeSet: g == nil})
	}
	entries := aclEntryMap(s)
	var seqs []uint32
	if g != nil {
		seqs = g.changed
	} else {
		seqs = slices.Sorted(maps.Keys(entries))
	}
	for _, seq := range seqs {
		b, err := encodeEntry(entries[seq])
		if err != nil {
			return nil, fmt.Errorf("encode acl-entry %d of acl-set %q: %w", seq, name, err)
		}
		out = append(out, entryChange{Key: aclEntryKey(name, seq), New: b})
	}
	if g != nil {
		for _, seq := range g.removed {
			out = append(out, entryChange{Key: aclEntryKey(name, seq)})
		}
	}
	return out, nil
}

// commit persists changes as the next revision and makes it the head: the
// changed entries are written, the removed ones deleted, and the record
// keeps each entry's previous value. also writes what else belongs to
// the commit (the labels it allocated) in the same transaction, and so
// does after, once the revision is written (a confirmed commit's pending
// record, confirm_entries.go); either's error aborts the commit.
func (s *Store) commit(who string, changes []entryChange, also func(*bolt.Tx) error, after commitTxHook) (CommitInfo, error) {
	var ci CommitInfo
	err := s.db.Update(func(tx *bolt.Tx) error {
		if also != nil {
			if err := also(tx); err != nil {
				return err
			}
		}
		cfg := tx.Bucket(bucketConfig)
		changes = withStaleEntries(cfg, changes)
		for i := range changes {
			ch := &changes[i]
			if old := cfg.Get([]byte(ch.Key)); old != nil {
				ch.Old = bytes.Clone(old)
			}
			var err error
			if ch.New != nil {
				err = cfg.Put([]byte(ch.Key), ch.New)
			} else {
				err = cfg.Delete([]byte(ch.Key))
			}
			if err != nil {
				return fmt.Errorf("write %s: %w", ch.Key, err)
			}
		}
		b := tx.Bucket(bucketCommits)
		rev, err := b.NextSequence()
		if err != nil {
			return err
		}
		ci = CommitInfo{Revision: rev, Time: time.Now().UTC(), User: who}
		v, err := json.Marshal(storedRecord{CommitInfo: ci, Changes: changes})
		if err != nil {
			return err
		}
		if err := b.Put(revKey(rev), v); err != nil {
			return err
		}
		if rev > HistoryLimit {
			if err := b.Delete(revKey(rev - HistoryLimit)); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketMeta).Put([]byte("head"), revKey(rev)); err != nil {
			return err
		}
		if after != nil {
			return after(tx, ci, changes)
		}
		return nil
	})
	if err != nil {
		return CommitInfo{}, fmt.Errorf("store revision: %w", err)
	}
	return ci, nil
}

// head returns the record of the running revision, or ErrNoRevision.
func (s *Store) head() (*commitRecord, error) {
	var rec *commitRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		h := tx.Bucket(bucketMeta).Get([]byte("head"))
		if h == nil {
			return ErrNoRevision
		}
		var err error
		rec, err = rebuild(tx, binaryRev(h))
		return err
	})
	return rec, err
}

// revision returns the record of rev, its configuration rebuilt.
func (s *Store) revision(rev uint64) (*commitRecord, error) {
	var rec *commitRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		rec, err = rebuild(tx, rev)
		return err
	})
	return rec, err
}

// rebuild returns revision rev with its whole configuration: stored so,
// or the running entries with every later revision undone.
func rebuild(tx *bolt.Tx, rev uint64) (*commitRecord, error) {
	r, err := readStored(tx, rev)
	if err != nil {
		return nil, err
	}
	if r.Config != nil {
		return &commitRecord{CommitInfo: r.CommitInfo, Config: r.Config}, nil
	}
	entries := map[string][]byte{}
	err = tx.Bucket(bucketConfig).ForEach(func(k, v []byte) error {
		entries[string(k)] = v
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	head := binaryRev(tx.Bucket(bucketMeta).Get([]byte("head")))
	for r := head; r > rev; r-- {
		later, err := readStored(tx, r)
		if err != nil {
			return nil, fmt.Errorf("undo revision %d: %w", r, err)
		}
		if later.Config != nil {
			return nil, fmt.Errorf("undo revision %d: it holds a whole configuration, not changes", r)
		}
		for _, ch := range later.Changes {
			if err := undoChange(entries, ch); err != nil {
				return nil, fmt.Errorf("undo revision %d: %w", r, err)
			}
		}
	}
	doc, err := assembleConfig(entries)
	if err != nil {
		return nil, fmt.Errorf("rebuild revision %d: %w", rev, err)
	}
	return &commitRecord{CommitInfo: r.CommitInfo, Config: doc}, nil
}

func readStored(tx *bolt.Tx, rev uint64) (*storedRecord, error) {
	v := tx.Bucket(bucketCommits).Get(revKey(rev))
	if v == nil {
		return nil, ErrNoRevision
	}
	r := &storedRecord{}
	if err := json.Unmarshal(v, r); err != nil {
		return nil, fmt.Errorf("read revision %d: %w", rev, err)
	}
	return r, nil
}

// binaryRev reads a revision key (revKey); anything else is revision 0.
func binaryRev(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// assembleConfig puts entries (store key → RFC 7951 JSON) together into
// one RFC 7951 document of the whole configuration.
func assembleConfig(entries map[string][]byte) ([]byte, error) {
	entries, err := attachACLEntries(entries)
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(entries))
	for k := range entries {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	root := map[string]any{}
	for _, k := range keys {
		if k == tunnelKey {
			root[qualified("tunnel")] = json.RawMessage(entries[k])
			continue
		}
		kind, _, _ := strings.Cut(k, "/")
		l, ok := listByKind(kind)
		if !ok {
			return nil, fmt.Errorf("unknown entry %q in the store", k)
		}
		obj := root
		for i, seg := range l.path[:len(l.path)-1] {
			if i == 0 {
				seg = qualified(seg)
			}
			child, ok := obj[seg].(map[string]any)
			if !ok {
				child = map[string]any{}
				obj[seg] = child
			}
			obj = child
		}
		last := l.path[len(l.path)-1]
		list, _ := obj[last].([]json.RawMessage)
		obj[last] = append(list, json.RawMessage(entries[k]))
	}
	return json.Marshal(root)
}

// qualified returns the RFC 7951 member name of a top-level container:
// its module, a colon, its name.
func qualified(top string) string {
	t := reflect.TypeOf(gen.Device{})
	for i := 0; i < t.NumField(); i++ {
		if f := t.Field(i); f.Tag.Get("path") == top {
			return f.Tag.Get("module") + ":" + top
		}
	}
	return top
}

func listByKind(kind string) (topList, bool) {
	for _, l := range topLists {
		if l.kind == kind {
			return l, true
		}
	}
	return topList{}, false
}

// migrate brings a store written before the per-entry format to it: the
// head revision's configuration is written one key per entry. Older
// revisions keep their whole configuration and stay readable. A store
// of the per-entry format from before ACL entries had keys of their own
// has its ACL sets split (store_acl.go); its revisions stay readable too.
func (s *Store) migrate() error {
	return s.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		format := meta.Get(formatKey)
		if bytes.Equal(format, formatCur) {
			return nil
		}
		cfgBucket, err := tx.CreateBucketIfNotExists(bucketConfig)
		if err != nil {
			return err
		}
		if bytes.Equal(format, formatEntries) {
			if err := splitStoredSets(cfgBucket); err != nil {
				return fmt.Errorf("split ACL sets into entries: %w", err)
			}
		} else if h := meta.Get([]byte("head")); h != nil {
			r, err := readStored(tx, binaryRev(h))
			if err != nil {
				return fmt.Errorf("read head revision: %w", err)
			}
			if r.Config == nil {
				return errors.New("head revision holds no configuration")
			}
			d, err := decodeConfig(r.Config)
			if err != nil {
				return fmt.Errorf("head revision %d: %w", r.Revision, err)
			}
			var all delta
			for i, l := range topLists {
				all.changed[i] = l.keys(d)
			}
			all.tunnel = d.Tunnel != nil
			changes, err := entryChanges(d, all)
			if err != nil {
				return err
			}
			for _, ch := range changes {
				if err := cfgBucket.Put([]byte(ch.Key), ch.New); err != nil {
					return err
				}
			}
		}
		return meta.Put(formatKey, formatCur)
	})
}
