package nos

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Bucket names in the store. Subsystems that persist their own allocations
// (labels, addresses) use their own bucket through Store.DB.
var (
	bucketCommits = []byte("commits") // revision (big endian) → commitRecord JSON
	bucketMeta    = []byte("meta")    // "head" → revision of running config
)

// ErrNoRevision is returned when a revision does not exist in the store.
// It is an ErrNotFound.
var ErrNoRevision = fmt.Errorf("no such revision: %w", ErrNotFound)

// Store is the embedded, crash-safe store of committed configuration and of
// the core's persistent allocations. It wraps one bbolt file in the data dir.
type Store struct {
	db *bolt.DB
}

// OpenStore opens (creating if needed) the store in dir.
func OpenStore(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir %q: %w", dir, err)
	}
	path := filepath.Join(dir, "isthmus.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open store %q: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketCommits, bucketMeta, bucketConfig} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init store %q: %w", path, err)
	}
	st := &Store{db: db}
	if err := st.migrate(); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate store %q: %w", path, err)
	}
	return st, nil
}

// DB returns the underlying bbolt database, for subsystems that keep their
// own buckets (IPAM, labels). Bucket names must not collide with the core's.
func (s *Store) DB() *bolt.DB { return s.db }

// Close closes the store.
func (s *Store) Close() error { return s.db.Close() }

func revKey(rev uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], rev)
	return b[:]
}
