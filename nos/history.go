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
