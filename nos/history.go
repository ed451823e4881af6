package nos

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/openconfig/ygot/ygot"
	bolt "go.etcd.io/bbolt"

	"github.com/isthmus-net/isthmus/gen"
)

// HistoryLimit is how many revisions the store keeps; older ones are pruned.
const HistoryLimit = 1000

// CommitInfo describes one revision in the commit history.
type CommitInfo struct {
	Revision uint64    `json:"revision"`
	Time     time.Time `json:"time"`
	User     string    `json:"user"`
}

// commitRecord is how a revision is stored.
type commitRecord struct {
	CommitInfo
	Config json.RawMessage `json:"config"` // RFC 7951 JSON of the configuration
}

func encodeConfig(d *gen.Device) ([]byte, error) {
	s, err := ygot.EmitJSON(d, &ygot.EmitJSONConfig{Format: ygot.RFC7951, SkipValidation: true})
	if err != nil {
		return nil, fmt.Errorf("encode configuration: %w", err)
	}
	return []byte(s), nil
}

func decodeConfig(b []byte) (*gen.Device, error) {
	d := &gen.Device{}
	if err := gen.Unmarshal(b, d); err != nil {
		return nil, fmt.Errorf("decode configuration: %w", err)
	}
	return d, nil
}

// append persists raw, the RFC 7951 JSON of a configuration, as the next
// revision and makes it the head.
func (s *Store) append(who string, raw []byte) (CommitInfo, error) {
	var ci CommitInfo
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCommits)
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		rev := seq
		ci = CommitInfo{Revision: rev, Time: time.Now().UTC(), User: who}
		rec := commitRecord{CommitInfo: ci, Config: raw}
		v, err := json.Marshal(rec)
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
		return tx.Bucket(bucketMeta).Put([]byte("head"), revKey(rev))
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
		rec, err = readRecord(tx, h)
		return err
	})
	return rec, err
}

// revision returns the record of rev.
func (s *Store) revision(rev uint64) (*commitRecord, error) {
	var rec *commitRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		rec, err = readRecord(tx, revKey(rev))
		return err
	})
	return rec, err
}

func readRecord(tx *bolt.Tx, key []byte) (*commitRecord, error) {
	v := tx.Bucket(bucketCommits).Get(key)
	if v == nil {
		return nil, ErrNoRevision
	}
	rec := &commitRecord{}
	if err := json.Unmarshal(v, rec); err != nil {
		return nil, fmt.Errorf("read revision: %w", err)
	}
	return rec, nil
}

// History returns up to limit revisions, newest first.
func (c *Core) History(limit int) ([]CommitInfo, error) {
	var out []CommitInfo
	err := c.store.db.View(func(tx *bolt.Tx) error {
		cur := tx.Bucket(bucketCommits).Cursor()
		for k, v := cur.Last(); k != nil && len(out) < limit; k, v = cur.Prev() {
			var rec commitRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("read revision: %w", err)
			}
			out = append(out, rec.CommitInfo)
		}
		return nil
	})
	return out, err
}

// Rollback commits the configuration of revision rev again, as a new
// revision, through the same validation and reconcilers as any commit.
func (c *Core) Rollback(ctx context.Context, who string, rev uint64) (uint64, error) {
	rec, err := c.store.revision(rev)
	if err != nil {
		return 0, fmt.Errorf("roll back to revision %d: %w", rev, err)
	}
	cfg, err := decodeConfig(rec.Config)
	if err != nil {
		return 0, fmt.Errorf("roll back to revision %d: %w", rev, err)
	}
	return c.Commit(ctx, who, func(cand *gen.Device) error {
		*cand = *cfg
		return nil
	})
}
