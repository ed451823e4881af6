package nos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	bolt "go.etcd.io/bbolt"

	"github.com/isthmus-net/isthmus/gen"
)

// ErrPrecondition marks a request that the state of the system does not
// allow right now: a confirmed commit while another one waits for its
// confirmation, a confirm when none waits. The gNMI server answers
// FailedPrecondition.
var ErrPrecondition = errors.New("failed precondition")

// DefaultRollbackDuration is how long a confirmed commit waits for its
// confirmation when the request names no duration (the gNMI commit
// confirmed extension's default).
const DefaultRollbackDuration = 10 * time.Minute

// confirmRetry is how long an expired commit whose rollback failed waits
// before the rollback is tried again.
const confirmRetry = 10 * time.Second

// bucketConfirm holds the confirmed commit waiting for its confirmation,
// if any, under keyPending, so that it survives a restart.
var (
	bucketConfirm = []byte("confirm")
	keyPending    = []byte("pending")
)

// PendingCommit describes the confirmed commit that waits for its
// confirmation.
type PendingCommit struct {
	// ID is the commit's identifier, chosen by the client.
	ID string `json:"id"`
	// User made the commit.
	User string `json:"user"`
	// Revision is the revision the commit made (equal to Before when it
	// changed nothing).
	Revision uint64 `json:"revision"`
	// Before is the revision that was running before the commit.
	Before uint64 `json:"before"`
	// Deadline is when the commit is rolled back unless confirmed.
	Deadline time.Time `json:"deadline"`
}

// pendingRecord is how a pending commit is stored: with the entries the
// commit changed, each with its value before and after (confirm_entries.go),
// so its rollback needs no revision of the history (which is pruned) and
// costs what the commit changed. Records written before hold the whole
// configurations before and after the commit instead.
type pendingRecord struct {
	PendingCommit
	Changes      []entryChange   `json:"changes,omitempty"`
	BeforeConfig json.RawMessage `json:"before-config,omitempty"`
	AfterConfig  json.RawMessage `json:"after-config,omitempty"`
}

// confirmer is the core's commit-confirmed state.
type confirmer struct {
	// mu serializes confirmed-commit operations (commit, confirm, cancel,
	// new duration, expiry) and guards the fields below. Taken before
	// commitMu.
	mu      sync.Mutex
	pending *pendingRecord
	timer   *time.Timer
	epoch   uint64          // bumped at every change, so a stale timer does nothing
	runCtx  context.Context // the core's run context (Start's), for expiries
}

// PendingCommit returns the confirmed commit waiting for confirmation,
// if any.
func (c *Core) PendingCommit() (PendingCommit, bool) {
	c.confirm.mu.Lock()
	defer c.confirm.mu.Unlock()
	if c.confirm.pending == nil {
		return PendingCommit{}, false
	}
	return c.confirm.pending.PendingCommit, true
}

// SetConfirmed applies req as Set does, as a confirmed commit named id:
// unless ConfirmCommit(id) comes within rollback (DefaultRollbackDuration
// when 0), the changes it made are rolled back. Only one confirmed commit
// waits at a time: another is refused with ErrPrecondition. The pending
// commit is stored, so a restart resumes its timer, or rolls it back at
// once if its deadline passed meanwhile.
func (c *Core) SetConfirmed(ctx context.Context, who, id string, rollback time.Duration, req *gpb.SetRequest) (uint64, error) {
	if id == "" {
		return 0, fmt.Errorf("confirmed commit: %w: the commit id is empty", ErrInvalid)
	}
	if rollback < 0 {
		return 0, fmt.Errorf("confirmed commit %q: %w: negative rollback duration %s", id, ErrInvalid, rollback)
	}
	if rollback == 0 {
		rollback = DefaultRollbackDuration
	}
	cf := &c.confirm
	cf.mu.Lock()
	defer cf.mu.Unlock()
	if p := cf.pending; p != nil {
		return 0, fmt.Errorf("confirmed commit %q: %w: commit %q waits for confirmation until %s", id, ErrPrecondition, p.ID, p.Deadline.Format(time.RFC3339))
	}
	// The pending record is written in the commit's own transaction, so
	// no crash can leave the commit applied without it.
	rec := &pendingRecord{PendingCommit: PendingCommit{ID: id, User: who, Deadline: time.Now().Add(rollback).UTC()}}
	hook := func(tx *bolt.Tx, ci CommitInfo, changes []entryChange) error {
		rec.Revision, rec.Before = ci.Revision, c.Revision()
		rec.Changes = withOwnSets(tx.Bucket(bucketConfig), changes)
		return putPending(tx, rec)
	}
	rev, err := c.Set(withCommitTxHook(ctx, hook), who, req)
	if err != nil {
		return 0, err
	}
	if rec.Revision == 0 {
		// The Set changed nothing: no revision, nothing to roll back.
		rec.Revision, rec.Before = rev, rev
		if err := c.storePending(rec); err != nil {
			return 0, fmt.Errorf("confirmed commit %q: %w", id, err)
		}
	}
	cf.arm(c, rec)
	c.log.Info("confirmed commit waits for confirmation", "id", id, "revision", rev, "deadline", rec.Deadline)
	return rev, nil
}

// ConfirmCommit makes the pending commit id permanent.
func (c *Core) ConfirmCommit(_ context.Context, who, id string) error {
	cf := &c.confirm
	cf.mu.Lock()
	defer cf.mu.Unlock()
	if err := cf.check("confirm", id); err != nil {
		return err
	}
	if err := c.deletePending(); err != nil {
		return fmt.Errorf("confirm commit %q: %w", id, err)
	}
	cf.disarm(c)
	c.log.Info("confirmed commit confirmed", "id", id, "user", who)
	return nil
}

// CancelCommit rolls the pending commit id back now.
func (c *Core) CancelCommit(ctx context.Context, who, id string) (uint64, error) {
	cf := &c.confirm
	cf.mu.Lock()
	defer cf.mu.Unlock()
	if err := cf.check("cancel", id); err != nil {
		return 0, err
	}
	rev, kept, err := c.finish(ctx, cf.pending)
	if err != nil {
		return 0, fmt.Errorf("cancel commit %q: %w", id, err)
	}
	c.log.Info("confirmed commit cancelled", "id", id, "user", who, "revision", rev)
	if len(kept) > 0 {
		return rev, fmt.Errorf("cancel commit %q: %w", id, keptError(kept))
	}
	return rev, nil
}

// SetRollbackDuration moves the deadline of the pending commit id to d
// from now.
func (c *Core) SetRollbackDuration(_ context.Context, id string, d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("set rollback duration of commit %q: %w: the duration must be positive, not %s", id, ErrInvalid, d)
	}
	cf := &c.confirm
	cf.mu.Lock()
	defer cf.mu.Unlock()
	if err := cf.check("set the rollback duration of", id); err != nil {
		return err
	}
	next := *cf.pending
	next.Deadline = time.Now().Add(d).UTC()
	if err := c.storePending(&next); err != nil {
		return fmt.Errorf("set rollback duration of commit %q: %w", id, err)
	}
	cf.arm(c, &next)
	return nil
}

// check refuses an action on commit id when none waits (ErrPrecondition)
// or another one does (ErrInvalid). mu is held.
func (cf *confirmer) check(action, id string) error {
	if cf.pending == nil {
		return fmt.Errorf("%s commit %q: %w: no confirmed commit waits for confirmation", action, id, ErrPrecondition)
	}
	if cf.pending.ID != id {
		return fmt.Errorf("%s commit %q: %w: the commit waiting for confirmation is %q", action, id, ErrInvalid, cf.pending.ID)
	}
	return nil
}

// confirmPath is where the pending commit is shown.
const confirmPath = "/system/confirmed-commit"

// arm makes rec the pending commit, (re)starts its timer and shows it
// under confirmPath. mu is held.
func (cf *confirmer) arm(c *Core, rec *pendingRecord) {
	cf.disarm(c)
	cf.pending = rec
	epoch := cf.epoch
	cf.timer = time.AfterFunc(time.Until(rec.Deadline), func() { c.expire(epoch) })
	id, user, rev, before, deadline := rec.ID, rec.User, rec.Revision, rec.Before, uint64(rec.Deadline.UnixNano())
	st := &gen.IsthmusSystem_System_ConfirmedCommit_State{Id: &id, User: &user, Revision: &rev, RollbackRevision: &before, Deadline: &deadline}
	if err := c.UpdateState(confirmPath+"/state", st); err != nil {
		c.log.Error("show pending commit", "id", id, "err", err)
	}
}

// disarm forgets the pending commit, stops its timer and removes it from
// confirmPath. mu is held.
func (cf *confirmer) disarm(c *Core) {
	if cf.timer != nil {
		cf.timer.Stop()
	}
	if cf.pending != nil {
		if err := c.DeleteState(confirmPath + "/state"); err != nil {
			c.log.Error("remove pending commit from state", "id", cf.pending.ID, "err", err)
		}
	}
	cf.pending, cf.timer = nil, nil
	cf.epoch++
}

// expire rolls back the pending commit whose timer fired, unless it was
// confirmed, cancelled or rearmed meanwhile, or the core stopped.
func (c *Core) expire(epoch uint64) {
	cf := &c.confirm
	cf.mu.Lock()
	defer cf.mu.Unlock()
	ctx := cf.runCtx
	if cf.epoch != epoch || cf.pending == nil || ctx == nil || ctx.Err() != nil {
		return
	}
	rec := cf.pending
	rev, kept, err := c.finish(ctx, rec)
	if err != nil {
		c.log.Error("roll back unconfirmed commit", "id", rec.ID, "retry-in", confirmRetry, "err", err)
		cf.timer = time.AfterFunc(confirmRetry, func() { c.expire(epoch) })
		return
	}
	if len(kept) > 0 {
		c.log.Error("unconfirmed commit rolled back in part", "id", rec.ID, "revision", rev, "err", keptError(kept))
		return
	}
	c.log.Warn("unconfirmed commit rolled back", "id", rec.ID, "revision", rev)
}

// finish rolls back rec, then forgets it; it returns the entries the
// rollback left as they were (revertEntries). mu is held.
func (c *Core) finish(ctx context.Context, rec *pendingRecord) (uint64, []notReverted, error) {
	var (
		rev  uint64
		kept []notReverted
		err  error
	)
	if rec.BeforeConfig != nil {
		// A record written before records held the changed entries.
		if rev, err = c.revertWhole(ctx, rec); err == nil {
			err = c.deletePending()
		}
	} else {
		rev, kept, err = c.revertEntries(ctx, rec)
	}
	if err != nil {
		return 0, nil, err
	}
	c.confirm.disarm(c)
	c.showRollback(rec.ID, rev, kept)
	return rev, kept, nil
}

// revertWhole commits the rollback of rec as stored before records held
// the changed entries: the changes it made are undone, leaf by leaf, on
// the running configuration; when what remains does not validate, the
// configuration from before rec is committed again as it was.
func (c *Core) revertWhole(ctx context.Context, rec *pendingRecord) (uint64, error) {
	who := "rollback of commit " + rec.ID
	before, err := decodeConfig(rec.BeforeConfig)
	if err != nil {
		return 0, err
	}
	after, err := decodeConfig(rec.AfterConfig)
	if err != nil {
		return 0, err
	}
	rev, err := c.Commit(ctx, who, func(cand *gen.Device) error {
		revertChanges(cand, before, after)
		return nil
	})
	if !errors.Is(err, ErrInvalid) {
		return rev, err
	}
	c.log.Warn("rollback of the commit's own changes does not validate; restoring the configuration before it", "id", rec.ID, "revision", rec.Before, "err", err)
	if before, err = decodeConfig(rec.BeforeConfig); err != nil {
		return 0, err
	}
	return c.Commit(ctx, who, func(cand *gen.Device) error {
		*cand = *before
		return nil
	})
}

// storePending persists rec as the pending commit.
func (c *Core) storePending(rec *pendingRecord) error {
	v, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode pending commit: %w", err)
	}
	err = c.store.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketConfirm)
		if err != nil {
			return err
		}
		return b.Put(keyPending, v)
	})
	if err != nil {
		return fmt.Errorf("store pending commit: %w", err)
	}
	return nil
}

// deletePending removes the stored pending commit.
func (c *Core) deletePending() error {
	err := c.store.db.Update(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketConfirm); b != nil {
			return b.Delete(keyPending)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("remove pending commit: %w", err)
	}
	return nil
}

// loadPending returns the stored pending commit, or nil.
func (c *Core) loadPending() (*pendingRecord, error) {
	var rec *pendingRecord
	err := c.store.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketConfirm)
		if b == nil {
			return nil
		}
		v := b.Get(keyPending)
		if v == nil {
			return nil
		}
		rec = &pendingRecord{}
		return json.Unmarshal(v, rec)
	})
	if err != nil {
		return nil, fmt.Errorf("read pending commit: %w", err)
	}
	return rec, nil
}

// resumeConfirm is called at the end of Start, which holds confirm.mu
// (taken before commitMu, as everywhere): expiries run in ctx, and a
// stored pending commit gets its timer back, or (deadline passed while
// the daemon was down) is rolled back as soon as Start returns.
func (c *Core) resumeConfirm(ctx context.Context) error {
	rec, err := c.loadPending()
	if err != nil {
		return err
	}
	cf := &c.confirm
	cf.runCtx = ctx
	if rec != nil {
		cf.arm(c, rec)
		c.log.Info("confirmed commit still waits for confirmation", "id", rec.ID, "deadline", rec.Deadline)
	}
	return nil
}
