package nos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openconfig/gnmi/cache"
	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/goyang/pkg/yang"
	"github.com/openconfig/ygot/ygot"
	"github.com/openconfig/ygot/ytypes"

	"github.com/isthmus-net/isthmus/gen"
)

// DefaultTarget is the gNMI target name the telemetry cache uses when none
// is given.
const DefaultTarget = "isthmus"

// Option configures a Core.
type Option func(*Core)

// WithReconcilers registers reconcilers; they validate and apply in order.
func WithReconcilers(r ...Reconciler) Option {
	return func(c *Core) { c.recs = append(c.recs, r...) }
}

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option {
	return func(c *Core) { c.log = l }
}

// WithTarget sets the gNMI target name of the telemetry cache.
func WithTarget(name string) Option {
	return func(c *Core) { c.target = name }
}

// Core holds the running configuration and drives commits through
// validation, persistence and the reconcilers.
type Core struct {
	log    *slog.Logger
	store  *Store
	recs   []Reconciler
	target string
	schema *yang.Entry // schema of the root (Device)
	fib    *FIB
	labels *Labels
	cache  *cache.Cache

	commitMu sync.Mutex // serializes transactions: one candidate at a time; guards refs, reuse
	refs     *refIndex  // relations between the running entries, for scoped validation
	reuse    mapReuse   // spare list maps for the next Set's candidate (cow_reuse.go)

	// pubMu orders changes of the state tree together with what they send
	// to the telemetry cache: a state write (check, write, publish) and a
	// commit's switch to new running configuration (swap, prune, publish)
	// never interleave. Taken before mu.
	pubMu sync.Mutex

	mu       sync.RWMutex // guards running, applying, state, rev, started
	running  *gen.Device  // committed configuration (config leaves only)
	applying *gen.Device  // candidate the reconcilers are applying; nil between commits
	state    *gen.Device  // operational state written by reconcilers
	rev      uint64
	started  bool

	confirm    confirmer   // the confirmed commit waiting for confirmation (confirm.go)
	mirrorable sync.Map    // schema path → whether a config leaf has a state twin (mirror.go)
	onDemand   onDemandSet // state refreshed when a Get asks for it (ondemand.go)
	aft        AFT         // the programmed forwarding table's readers and producer (aft.go)

	watchMu  sync.Mutex                      // serializes changes of watchers
	watchers atomic.Pointer[[]*cacheWatcher] // read without a lock by the cache's client
}

// New returns a core that persists into store. Call Start to restore the
// last committed configuration and start the reconcilers.
func New(store *Store, opts ...Option) (*Core, error) {
	c := &Core{
		log:     slog.Default(),
		store:   store,
		target:  DefaultTarget,
		fib:     NewFIB(),
		running: &gen.Device{},
		state:   &gen.Device{},
	}
	for _, o := range opts {
		o(c)
	}
	s, err := gen.Schema()
	if err != nil {
		return nil, fmt.Errorf("load schema: %w", err)
	}
	c.schema = s.RootSchema()
	if c.labels, err = newLabels(store.DB()); err != nil {
		return nil, err
	}
	c.cache = cache.New([]string{c.target})
	// The cache has one client slot and reads it without a lock: fill it
	// now, before anything publishes, with the core's own fan-out.
	c.cache.SetClient(c.notifyWatchers)
	return c, nil
}

// Start restores the last committed configuration, starts every
// reconciler and applies the configuration to them. The reconcilers' loops
// run until ctx is done.
func (c *Core) Start(ctx context.Context) error {
	c.confirm.mu.Lock() // before commitMu, as in every confirmed-commit operation
	defer c.confirm.mu.Unlock()
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	if c.isStarted() {
		return errors.New("start configuration core: already started")
	}
	rec, err := c.store.head()
	if err != nil && !errors.Is(err, ErrNoRevision) {
		return err
	}
	cfg := &gen.Device{}
	if rec != nil {
		if cfg, err = decodeConfig(rec.Config); err != nil {
			return fmt.Errorf("restore revision %d: %w", rec.Revision, err)
		}
	}
	// The restored configuration is being applied from the moment the
	// reconcilers start: state they publish for it is accepted.
	c.setApplying(cfg)
	for _, r := range c.recs {
		if err := r.Start(ctx, c); err != nil {
			c.abandon(cfg, &gen.Device{}, computeDelta(cfg, &gen.Device{}))
			return fmt.Errorf("start reconciler %s: %w", r.ID(), err)
		}
	}
	if err := c.applyAll(ctx, &gen.Device{}, cfg, nil, nil); err != nil {
		c.abandon(cfg, &gen.Device{}, computeDelta(cfg, &gen.Device{}))
		return fmt.Errorf("apply restored configuration: %w", err)
	}
	c.pubMu.Lock()
	c.mu.Lock()
	c.running, c.applying = cfg, nil
	c.refs = newRefIndex(cfg)
	if rec != nil {
		c.rev = rec.Revision
	}
	c.started = true
	c.mu.Unlock()
	err = c.publishConfig(&gen.Device{}, cfg, computeDelta(&gen.Device{}, cfg))
	c.pubMu.Unlock()
	if err != nil {
		return err
	}
	if err := c.publishHistory(); err != nil {
		return err
	}
	c.cache.GetTarget(c.target).Sync()
	c.log.Info("configuration restored", "revision", c.Revision())
	return c.resumeConfirm(ctx)
}

// Stop stops the reconcilers in reverse order.
func (c *Core) Stop(ctx context.Context) error {
	var errs []error
	for i := len(c.recs) - 1; i >= 0; i-- {
		if err := c.recs[i].Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop reconciler %s: %w", c.recs[i].ID(), err))
		}
	}
	return errors.Join(errs...)
}

// FIB returns the shared route table.
func (c *Core) FIB() *FIB { return c.fib }

// Labels returns the persistent label allocator.
func (c *Core) Labels() *Labels { return c.labels }

// Store returns the store, for subsystems that persist their own data.
func (c *Core) Store() *Store { return c.store }

// Cache returns the telemetry cache that gNMI Subscribe serves from.
func (c *Core) Cache() *cache.Cache { return c.cache }

// Target returns the gNMI target name of the telemetry cache.
func (c *Core) Target() string { return c.target }

// SchemaRoot returns the YANG schema entry of the root.
func (c *Core) SchemaRoot() *yang.Entry { return c.schema }

// Revision returns the revision of the running configuration (0: none yet).
func (c *Core) Revision() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.rev
}

// Config returns a deep copy of the running configuration.
func (c *Core) Config() *gen.Device {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return mustCopy(c.running)
}

// Read calls fn with the running configuration and the state tree under a
// read lock. fn must not modify or keep either tree.
func (c *Core) Read(fn func(config, state *gen.Device) error) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return fn(c.running, c.state)
}

// isStarted reports whether Start completed.
func (c *Core) isStarted() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.started
}

// setApplying records the candidate the reconcilers are about to apply,
// so that the state they write for its new entries is accepted.
func (c *Core) setApplying(cand *gen.Device) {
	c.mu.Lock()
	c.applying = cand
	c.mu.Unlock()
}

// abandon ends a commit that did not happen: cand is no longer being
// applied, and state that reconcilers wrote for entries only cand had is
// removed, from the tree and from telemetry.
func (c *Core) abandon(cand, old *gen.Device, ch delta) {
	c.pubMu.Lock()
	defer c.pubMu.Unlock()
	c.mu.Lock()
	c.applying = nil
	c.mu.Unlock()
	n, err := configDiff(cand, old, ch)
	if err != nil {
		c.log.Error("diff abandoned candidate", "err", err)
		return
	}
	if gone := c.pruneState(n.GetDelete()); len(gone) > 0 {
		if err := c.publish(&gpb.Notification{Delete: gone}); err != nil {
			c.log.Error("publish state removal", "err", err)
		}
	}
}

// Commit runs one transaction: edit gets a copy of the running
// configuration to change; the result is validated, applied by every
// reconciler, persisted as a new revision and made running. On any error
// nothing changes. who names the author in the commit history.
func (c *Core) Commit(ctx context.Context, who string, edit func(candidate *gen.Device) error) (uint64, error) {
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	if !c.isStarted() {
		return 0, fmt.Errorf("commit: %w", ErrNotStarted)
	}
	c.mu.RLock()
	old := c.running
	c.mu.RUnlock()
	cand := mustCopy(old)
	if err := edit(cand); err != nil {
		return 0, err
	}
	return c.commitLocked(ctx, who, old, cand, computeDelta(old, cand))
}

// commitLocked validates, applies, persists and swaps in cand, which
// differs from old by ch; commitMu is held. A candidate equal to the
// running configuration is no commit: it returns the running revision.
func (c *Core) commitLocked(ctx context.Context, who string, old, cand *gen.Device, ch delta) (uint64, error) {
	if ch.empty() {
		// Nothing changes: no revision, no reconciler work.
		return c.Revision(), nil
	}
	if err := c.validate(old, cand, ch); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("commit: %w", err)
	}
	c.setApplying(cand)
	// Labels the reconcilers allocate for this commit are written in its
	// transaction (Labels.hold): one wait for the disk, not two.
	c.labels.hold()
	defer func() {
		if err := c.labels.unhold(); err != nil {
			c.log.Error("persist labels", "err", err)
		}
	}()
	back := ch.reverse(old)
	if err := c.applyAll(ctx, old, cand, &ch, &back); err != nil {
		c.abandon(cand, old, back)
		return 0, err
	}
	changes, err := entryChanges(cand, ch)
	var ci CommitInfo
	if err == nil {
		ci, err = c.store.commit(who, changes, c.labels.persist, commitTxHookFrom(ctx))
	}
	if err != nil {
		// Put the reconcilers back where they were.
		if rerr := c.rollbackAll(ctx, len(c.recs), cand, old, &back); rerr != nil {
			err = errors.Join(err, rerr)
		}
		c.abandon(cand, old, back)
		return 0, fmt.Errorf("persist commit: %w", err)
	}
	c.pubMu.Lock()
	c.mu.Lock()
	c.running, c.applying = cand, nil
	c.rev = ci.Revision
	c.mu.Unlock()
	c.refs.update(old, cand, ch)
	err = c.publishConfig(old, cand, ch)
	c.pubMu.Unlock()
	if err != nil {
		c.log.Error("publish configuration to telemetry", "revision", ci.Revision, "err", err)
	}
	if err := c.publishCommit(ci); err != nil {
		c.log.Error("publish commit to telemetry", "revision", ci.Revision, "err", err)
	}
	c.log.Info("commit", "revision", ci.Revision, "user", who)
	return ci.Revision, nil
}

// validate runs schema, semantic and reconciler validation.
// Schema validation covers only the entries the commit changed (the rest
// was valid when it was committed); semantic validation covers them and
// every entry a rule relates to them (validate_scope.go), since a change
// can conflict with an entry it did not touch.
func (c *Core) validate(old, cand *gen.Device, ch delta) error {
	touched := ch.partial(cand)
	// ygot resolves every leafref against the whole tree (quadratic in
	// list sizes); validateSemantics checks the same references by key.
	if err := touched.ΛValidate(&ytypes.LeafrefOptions{IgnoreMissingData: true}); err != nil {
		return fmt.Errorf("%w: %s", ErrInvalid, schemaProblem(err))
	}
	if err := checkKeys(touched); err != nil {
		return err
	}
	var sc *scope
	if c.refs != nil {
		sc = c.refs.scope(old, cand, ch)
	}
	if err := validateScoped(old, cand, sc); err != nil {
		return err
	}
	for _, r := range c.recs {
		if err := guard(r.ID(), func() error { return validateRec(r, cand, &ch) }); err != nil {
			return fmt.Errorf("%s: %w", r.ID(), err)
		}
	}
	return nil
}

// guard runs fn and turns a panic into an error, so one reconciler's bug
// fails a commit instead of taking the daemon, and forwarding state with
// it, down.
func guard(id string, fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %s panicked: %v", ErrReconcile, id, p)
		}
	}()
	return fn()
}

// applyAll applies old → cand on every reconciler, rolling back those that
// already applied when one fails. ch is what the commit changes and back
// its reverse (nil for both when not known: every entry is compared).
func (c *Core) applyAll(ctx context.Context, old, cand *gen.Device, ch, back *delta) error {
	for i, r := range c.recs {
		if err := guard(r.ID(), func() error { return applyRec(ctx, r, old, cand, ch) }); err != nil {
			err = fmt.Errorf("%w: %s: %w", ErrReconcile, r.ID(), err)
			// The failing reconciler may have applied part of the change.
			if rerr := c.rollbackAll(ctx, i+1, cand, old, back); rerr != nil {
				err = errors.Join(err, rerr)
			}
			return err
		}
	}
	return nil
}

// rollbackAll applies cand → old, which differ by back (nil: not known),
// on the first n reconcilers, last first.
// The undo runs to the end even when ctx (the client's deadline, which may
// be what failed the commit) is done: a half-undone commit would leave
// the reconcilers neither at old nor at cand. ctx keeps only its values.
func (c *Core) rollbackAll(ctx context.Context, n int, cand, old *gen.Device, back *delta) error {
	ctx = context.WithoutCancel(ctx)
	var errs []error
	for i := n - 1; i >= 0; i-- {
		r := c.recs[i]
		if err := guard(r.ID(), func() error { return applyRec(ctx, r, cand, old, back) }); err != nil {
			errs = append(errs, fmt.Errorf("roll back %s: %w", r.ID(), err))
		}
	}
	if len(errs) > 0 {
		c.log.Error("rollback incomplete", "err", errors.Join(errs...))
	}
	return errors.Join(errs...)
}

// publishConfig sends the difference between two configurations to the
// telemetry cache, and removes the state of the entries that went, from
// the state tree and from the cache. pubMu is held.
func (c *Core) publishConfig(old, cand *gen.Device, ch delta) error {
	n, err := configDiff(old, cand, ch)
	if err != nil {
		return fmt.Errorf("diff configuration: %w", err)
	}
	c.mirrorConfig(n) // applied config leaves under their state siblings (mirror.go)
	deleted := make(map[string]bool, len(n.GetDelete()))
	for _, d := range n.GetDelete() {
		deleted[pathString(d)] = true
	}
	for _, g := range c.pruneState(n.GetDelete()) {
		// An entry whose key leaf went: its state leaves go with it.
		if !deleted[pathString(g)] {
			n.Delete = append(n.Delete, g)
		}
	}
	return c.publish(n)
}

// pruneState removes from the state tree every list entry whose
// configuration was deleted, so no orphaned state outlives its config.
// A deleted list entry (".../network-instance[name=red]") or its key leaf
// (".../network-instance[name=red]/name") marks the whole entry as gone.
// It returns the paths of the entries that went.
func (c *Core) pruneState(deleted []*gpb.Path) []*gpb.Path {
	var gone []*gpb.Path
	for _, p := range deleted {
		elems := p.GetElem()
		switch {
		case len(elems) > 0 && len(elems[len(elems)-1].GetKey()) > 0:
			gone = append(gone, p)
		case len(elems) > 1:
			last, entry := elems[len(elems)-1], elems[len(elems)-2]
			if _, isKey := entry.GetKey()[last.GetName()]; isKey {
				gone = append(gone, &gpb.Path{Elem: elems[:len(elems)-1]})
			}
		}
	}
	if len(gone) == 0 {
		return nil
	}
	c.mu.Lock()
	for _, p := range gone {
		if err := ytypes.DeleteNode(c.schema, c.state, p); err != nil {
			c.log.Debug("prune state", "path", pathString(p), "err", err)
		}
	}
	c.mu.Unlock()
	return gone
}

// publish sends one notification to the cache, splitting deletes and
// updates so the cache sees each in order.
func (c *Core) publish(n *gpb.Notification) error {
	if n == nil || (len(n.Update) == 0 && len(n.Delete) == 0) {
		return nil
	}
	ts := time.Now().UnixNano()
	if n.Prefix == nil {
		n.Prefix = &gpb.Path{}
	}
	n.Prefix.Target = c.target
	n.Timestamp = ts
	var errs []error
	if len(n.Delete) > 0 {
		d := &gpb.Notification{Timestamp: ts, Prefix: n.Prefix, Delete: n.Delete}
		if err := c.cache.GnmiUpdate(d); err != nil {
			errs = append(errs, err)
		}
	}
	for _, u := range n.Update {
		one := &gpb.Notification{Timestamp: ts, Prefix: n.Prefix, Update: []*gpb.Update{u}}
		if err := c.cache.GnmiUpdate(one); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("update telemetry cache: %w", err)
	}
	return nil
}

func mustCopy(d *gen.Device) *gen.Device {
	cp, err := ygot.DeepCopy(d)
	if err != nil {
		// DeepCopy fails only on a malformed generated struct.
		panic(fmt.Sprintf("copy configuration: %v", err))
	}
	return cp.(*gen.Device)
}
