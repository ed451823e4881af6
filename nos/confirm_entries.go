package nos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	bolt "go.etcd.io/bbolt"

	"github.com/isthmus-net/isthmus/gen"
)

// A confirmed commit is kept as the stored entries it changed, each with
// its value before and after (the revision's own changes), written in the
// bbolt transaction of the commit itself: after a crash the commit is
// either stored together with its pending record or not at all. Its
// rollback commits only those entries (CommitEntries), in a transaction
// that also removes the record, so neither costs more with a larger tree.

// commitTxHook writes in the bbolt transaction that stores a revision,
// after the revision: ci is the revision, changes the entries it changed
// with their old values. Its error aborts the commit.
type commitTxHook func(tx *bolt.Tx, ci CommitInfo, changes []entryChange) error

type commitTxHookKey struct{}

// withCommitTxHook returns a context whose commit (Set, CommitEntries)
// runs h in its transaction.
func withCommitTxHook(ctx context.Context, h commitTxHook) context.Context {
	return context.WithValue(ctx, commitTxHookKey{}, h)
}

// commitTxHookFrom returns the hook ctx carries, or nil.
func commitTxHookFrom(ctx context.Context) commitTxHook {
	h, _ := ctx.Value(commitTxHookKey{}).(commitTxHook)
	return h
}

// putPending writes rec as the pending commit in tx.
func putPending(tx *bolt.Tx, rec *pendingRecord) error {
	v, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode pending commit: %w", err)
	}
	b, err := tx.CreateBucketIfNotExists(bucketConfirm)
	if err != nil {
		return fmt.Errorf("store pending commit: %w", err)
	}
	if err := b.Put(keyPending, v); err != nil {
		return fmt.Errorf("store pending commit: %w", err)
	}
	return nil
}

// dropPending removes the pending commit in tx.
func dropPending(tx *bolt.Tx) error {
	if b := tx.Bucket(bucketConfirm); b != nil {
		if err := b.Delete(keyPending); err != nil {
			return fmt.Errorf("remove pending commit: %w", err)
		}
	}
	return nil
}

// withOwnSets returns changes and, for an ACL entry whose set is not
// among them, the set's own leaves as they are (unchanged), so that both
// sides of the change assemble into a configuration (attachACLEntries).
func withOwnSets(cfg *bolt.Bucket, changes []entryChange) []entryChange {
	named := make(map[string]bool, len(changes))
	for _, ch := range changes {
		named[ch.Key] = true
	}
	out := append([]entryChange(nil), changes...)
	for _, ch := range changes {
		set, _, ok := parseACLEntryKey(ch.Key)
		if !ok {
			continue
		}
		key := topLists[listACL].kind + "/" + set
		if named[key] {
			continue
		}
		named[key] = true
		if v := cfg.Get([]byte(key)); v != nil {
			out = append(out, entryChange{Key: key, Old: bytes.Clone(v), New: bytes.Clone(v)})
		}
	}
	return out
}

// entryGroup is what a confirmed commit changed in one top-level entry
// (a VRF, an interface, an ACL set with its entries, the tunnel).
type entryGroup struct {
	name    string // as in the store: "ni/red", "acl/in", "tunnel"
	path    *gpb.Path
	changes []entryChange
}

// groupChanges groups changes by the top-level entry they belong to,
// sorted by name.
func groupChanges(changes []entryChange) ([]entryGroup, error) {
	byName := map[string]*entryGroup{}
	for _, ch := range changes {
		name := ch.Key
		if set, _, ok := parseACLEntryKey(ch.Key); ok {
			name = topLists[listACL].kind + "/" + set
		}
		g := byName[name]
		if g == nil {
			g = &entryGroup{name: name}
			if name == tunnelKey {
				g.path = TunnelEntry()
			} else {
				kind, key, _ := strings.Cut(name, "/")
				l, ok := listByKind(kind)
				if !ok {
					return nil, fmt.Errorf("unknown entry %q in the pending commit", ch.Key)
				}
				g.path = entryPath(l, key)
			}
			byName[name] = g
		}
		g.changes = append(g.changes, ch)
	}
	out := make([]entryGroup, 0, len(byName))
	for _, g := range byName {
		out = append(out, *g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}

// sides decodes the entries of groups as they were before and after the
// confirmed commit, each side a configuration holding only them.
func sides(groups []entryGroup) (before, after *gen.Device, err error) {
	b, a := map[string][]byte{}, map[string][]byte{}
	for _, g := range groups {
		for _, ch := range g.changes {
			if ch.Old != nil {
				b[ch.Key] = ch.Old
			}
			if ch.New != nil {
				a[ch.Key] = ch.New
			}
		}
	}
	if before, err = assembleDevice(b); err != nil {
		return nil, nil, fmt.Errorf("read the entries before the commit: %w", err)
	}
	if after, err = assembleDevice(a); err != nil {
		return nil, nil, fmt.Errorf("read the entries the commit wrote: %w", err)
	}
	return before, after, nil
}

func assembleDevice(entries map[string][]byte) (*gen.Device, error) {
	doc, err := assembleConfig(entries)
	if err != nil {
		return nil, err
	}
	return decodeConfig(doc)
}

// showRollback shows, under confirmPath/last-rollback, the rollback of a
// confirmed commit that left entries as they were (kept); one that left
// none removes what an earlier one showed.
func (c *Core) showRollback(id string, rev uint64, kept []notReverted) {
	const at = confirmPath + "/last-rollback"
	if len(kept) == 0 {
		if err := c.DeleteState(at); err != nil {
			c.log.Error("remove rollback of confirmed commit from state", "err", err)
		}
		return
	}
	st := &gen.IsthmusSystem_System_ConfirmedCommit_LastRollback_State{Id: &id, Revision: &rev}
	for _, k := range kept {
		st.NotReverted = append(st.NotReverted, k.Entry)
	}
	if err := c.UpdateState(at+"/state", st); err != nil {
		c.log.Error("show rollback of confirmed commit", "id", id, "err", err)
	}
}

// notReverted is an entry the rollback of a confirmed commit left as it
// is, because its revert did not validate with what was committed since.
type notReverted struct {
	Entry string // its path
	Err   error
}

// revertEntries rolls back rec, whose Changes it has, entry by entry of
// the configuration: each entry rec changed is reverted leaf by leaf
// (revertChanges), nothing else is touched. The entries are committed
// together; if that does not validate (a later commit depends on what
// rec added: a pod attached to its VRF), each entry is committed alone,
// in passes until no more can be, and those that cannot are returned,
// left as they are. The pending record goes in the transaction of the
// last revert; when nothing needed committing it is removed on its own.
func (c *Core) revertEntries(ctx context.Context, rec *pendingRecord) (uint64, []notReverted, error) {
	who := "rollback of commit " + rec.ID
	groups, err := groupChanges(rec.Changes)
	if err != nil {
		return 0, nil, err
	}
	// commit reverts todo; when it stores a revision, the pending record
	// keeps only what is left (rest), or goes when nothing is.
	commit := func(todo, rest []entryGroup) (uint64, bool, error) {
		paths := make([]*gpb.Path, len(todo))
		for i, g := range todo {
			paths[i] = g.path
		}
		stored := false
		hook := func(tx *bolt.Tx, _ CommitInfo, _ []entryChange) error {
			stored = true
			if len(rest) == 0 {
				return dropPending(tx)
			}
			left := *rec
			left.Changes = nil
			for _, g := range rest {
				left.Changes = append(left.Changes, g.changes...)
			}
			return putPending(tx, &left)
		}
		rev, err := c.CommitEntries(withCommitTxHook(ctx, hook), who, paths, func(part *gen.Device) error {
			before, after, err := sides(todo)
			if err != nil {
				return err
			}
			revertChanges(part, before, after)
			return nil
		})
		return rev, stored, err
	}
	rev, stored, err := commit(groups, nil)
	var kept []notReverted
	if errors.Is(err, ErrInvalid) && len(groups) > 1 {
		c.log.Warn("rollback of a confirmed commit does not validate as a whole; reverting it entry by entry", "id", rec.ID, "err", err)
		rev, stored, kept, err = c.revertOneByOne(groups, commit)
	}
	if err != nil && !errors.Is(err, ErrInvalid) {
		return 0, nil, err
	}
	if errors.Is(err, ErrInvalid) {
		// The one entry there was could not be reverted.
		kept = []notReverted{{Entry: pathString(groups[0].path), Err: err}}
		rev, stored = c.Revision(), false
	}
	if !stored || len(kept) > 0 {
		if err := c.deletePending(); err != nil {
			return 0, nil, err
		}
	}
	for _, k := range kept {
		c.log.Error("rollback of a confirmed commit leaves an entry as it is: its revert does not validate", "id", rec.ID, "entry", k.Entry, "err", k.Err)
	}
	return rev, kept, nil
}

// revertOneByOne commits the revert of each group alone, in passes while
// one succeeds; it returns the last revision, whether one was stored, and
// the groups none could revert.
func (c *Core) revertOneByOne(groups []entryGroup, commit func(todo, rest []entryGroup) (uint64, bool, error)) (uint64, bool, []notReverted, error) {
	rev, stored := c.Revision(), false
	left := groups
	var failed map[string]error
	for progress := true; progress && len(left) > 0; {
		progress = false
		failed = map[string]error{}
		for i := 0; i < len(left); i++ {
			rest := append(append([]entryGroup(nil), left[:i]...), left[i+1:]...)
			r, s, err := commit(left[i:i+1], rest)
			if errors.Is(err, ErrInvalid) {
				failed[left[i].name] = err
				continue
			}
			if err != nil {
				return 0, false, nil, err
			}
			if s {
				rev, stored = r, true
			}
			left, progress = rest, true
			i--
		}
	}
	kept := make([]notReverted, 0, len(left))
	for _, g := range left {
		kept = append(kept, notReverted{Entry: pathString(g.path), Err: failed[g.name]})
	}
	return rev, stored, kept, nil
}

// keptError describes the entries a rollback left as they were.
func keptError(kept []notReverted) error {
	errs := make([]error, 0, len(kept))
	for _, k := range kept {
		errs = append(errs, fmt.Errorf("%s: %w", k.Entry, k.Err))
	}
	return fmt.Errorf("%w: rolled back except %d entries whose revert does not validate with what was committed since, left as they are: %w", ErrPrecondition, len(kept), errors.Join(errs...))
}
