package dataplane

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// polSpares bounds the retired attachments PrunePolicy keeps for reuse.
const polSpares = 4

// polLPMKey is a classifier key as the forwarder's LPM tries hold it
// (addrKey, portKey).
type polLPMKey [12]byte

// polDims pairs the classifier maps with the dimensions of c.
func (d *Dataplane) polDims(c *compiledAttachment) []polDim {
	return []polDim{
		{d.maps.PolSrc, c.src, addrKey}, {d.maps.PolDst, c.dst, addrKey},
		{d.maps.PolDport, c.dport, portKey}, {d.maps.PolSport, c.sport, portKey},
	}
}

type polDim struct {
	m   *ebpf.Map
	d   *dimension
	key func(uint32, dimKey) []byte
}

// writeAttachment writes c into the maps, under the id of a spare (a
// retired attachment no point uses) when there is one: only the rules and
// classifier entries that differ from what the spare holds are written or
// deleted, so that a change of one rule in a large set costs a few map
// updates, not the whole classifier. No point refers to the id while it
// is written, so nothing half-written is ever matched.
func (d *Dataplane) writeAttachment(t *policyTable, c *compiledAttachment) (*programmedAttachment, error) {
	var base *programmedAttachment
	if len(t.spares) > 0 {
		// The spare closest in size: most of its classifier is reused.
		bi := 0
		for i, s := range t.spares {
			if absDiff(len(s.c.rules), len(c.rules)) < absDiff(len(t.spares[bi].c.rules), len(c.rules)) {
				bi = i
			}
		}
		base = t.spares[bi]
		t.spares = append(t.spares[:bi], t.spares[bi+1:]...)
	}
	var id uint32
	if base != nil {
		id = base.id
	} else {
		var err error
		if id, err = t.allocID(); err != nil {
			return nil, err
		}
	}
	pa := &programmedAttachment{id: id, c: c, rules: len(c.rules)}
	fail := func(err error) (*programmedAttachment, error) {
		// What the id holds is now a mix of base and c: remove both.
		rerr := d.removeAttachment(t, pa)
		if base != nil {
			rerr = errors.Join(rerr, d.removeAttachment(t, base))
		}
		return nil, errors.Join(fmt.Errorf("set policy: write attachment %d: %w", id, err), rerr)
	}
	// Rules: in the spare's run of pol_rules when they fit there (only
	// those that differ written), else in a run of their own.
	pa.vals = make([]polRule, len(c.rules))
	reuse := base != nil && base.ruleRun.n >= uint32(len(c.rules))
	if reuse {
		pa.ruleRun, base.ruleRun = base.ruleRun, wordRange{}
	} else {
		r, err := t.ruleSlots.alloc(uint32(len(c.rules)))
		if err != nil {
			return fail(fmt.Errorf("rules: %w", err))
		}
		pa.ruleRun = r
	}
	var keys []uint32
	var vals []polRule
	for i, r := range c.rules {
		pa.vals[i] = polRule{Entry: t.entries[r.Entry], Action: uint8(r.Action), Reject: uint8(r.Reject)}
		if reuse && i < len(base.vals) && base.vals[i] == pa.vals[i] {
			continue
		}
		keys = append(keys, pa.ruleRun.off+uint32(i))
		vals = append(vals, pa.vals[i])
	}
	if err := polBatchPut(d.maps.PolRules, keys, vals); err != nil {
		return fail(err)
	}
	// Classifier entries: the words of each entry whose bitmap differs
	// (in a run of pol_words of its own), then the entries. pa takes
	// over the spare's runs; those of its entries that were rewritten or
	// are gone are freed once nothing refers to them.
	var old []polDim
	if base != nil {
		old = d.polDims(base.c)
		pa.runs, base.runs = base.runs, [4]map[dimKey]wordRange{}
	}
	for i, dim := range d.polDims(c) {
		if pa.runs[i] == nil {
			pa.runs[i] = make(map[dimKey]wordRange, len(dim.d.rules))
		}
		runs := pa.runs[i]
		var keys []polLPMKey
		var refs []polRef
		var wkeys []uint32
		var words []uint64
		var gone []polLPMKey
		var b polBits
		for k := range dim.d.rules {
			if old != nil && !dim.d.differs(old[i].d, k) {
				continue // the spare's entry, as it is
			}
			var key polLPMKey
			copy(key[:], dim.key(id, k))
			dim.d.bitsOf(k, &b)
			r, err := t.words.alloc(b.stored())
			if err != nil {
				return fail(err)
			}
			if o, ok := runs[k]; ok {
				pa.freed = append(pa.freed, o)
			}
			runs[k] = r
			n := len(words)
			ref, ws := b.ref(r.off, words)
			words = ws
			for j := range words[n:] {
				wkeys = append(wkeys, r.off+uint32(j))
			}
			keys = append(keys, key)
			refs = append(refs, ref)
		}
		if old != nil {
			for k := range old[i].d.rules {
				if _, ok := dim.d.rules[k]; !ok {
					var key polLPMKey
					copy(key[:], dim.key(id, k))
					gone = append(gone, key)
					pa.freed = append(pa.freed, runs[k])
					delete(runs, k)
				}
			}
		}
		if err := polBatchPut(d.maps.PolWords, wkeys, words); err != nil {
			return fail(err)
		}
		if err := polBatchPut(dim.m, keys, refs); err != nil {
			return fail(err)
		}
		if err := polBatchDelete(dim.m, gone); err != nil {
			return fail(err)
		}
	}
	for _, r := range pa.freed {
		t.words.mark(r, false)
	}
	pa.freed = nil
	hs := uint8(0)
	if c.hasSport {
		hs = 1
	}
	if err := d.maps.PolAttach.Put(id, polAttachment{Rules: uint32(len(c.rules)), Default: uint8(c.def), DefaultReject: uint8(c.defReject), HasSport: hs, RuleBase: pa.ruleRun.off}); err != nil {
		return fail(err)
	}
	if base != nil {
		// The spare's rules, when they did not take the new ones.
		t.ruleSlots.mark(base.ruleRun, false)
		base.ruleRun = wordRange{}
	}
	return pa, nil
}

func absDiff(a, b int) int {
	if a < b {
		return b - a
	}
	return a - b
}

// polBatchPut writes keys[i] → vals[i] in one BPF_MAP_UPDATE_BATCH, or
// one by one where the map type has no batch operations (LPM tries).
func polBatchPut[K, V any](m *ebpf.Map, keys []K, vals []V) error {
	if len(keys) == 0 {
		return nil
	}
	if _, err := m.BatchUpdate(keys, vals, nil); err == nil {
		return nil
	} else if !errors.Is(err, ebpf.ErrNotSupported) {
		return err
	}
	for i := range keys {
		if err := m.Put(&keys[i], &vals[i]); err != nil {
			return err
		}
	}
	return nil
}

// polBatchDelete deletes keys (missing ones are fine), batched where the
// map type allows it.
func polBatchDelete[K any](m *ebpf.Map, keys []K) error {
	if len(keys) == 0 {
		return nil
	}
	if _, err := m.BatchDelete(keys, nil); err == nil {
		return nil
	} else if !errors.Is(err, ebpf.ErrNotSupported) && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	var errs []error
	for i := range keys {
		if err := m.Delete(&keys[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeAttachment deletes what writeAttachment wrote (missing entries
// are fine) and frees the id.
func (d *Dataplane) removeAttachment(t *policyTable, pa *programmedAttachment) error {
	var errs []error
	if err := d.maps.PolAttach.Put(pa.id, polAttachment{}); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		// No point reads the rules any more (pol_rules is an array:
		// nothing to delete).
		t.ruleSlots.mark(pa.ruleRun, false)
	}
	for i, dim := range d.polDims(pa.c) {
		keys := make([]polLPMKey, 0, len(dim.d.rules))
		for k := range dim.d.rules {
			var key polLPMKey
			copy(key[:], dim.key(pa.id, k))
			keys = append(keys, key)
		}
		err := polBatchDelete(dim.m, keys)
		errs = append(errs, err)
		if err == nil {
			// No entry refers to the words any more.
			for _, r := range pa.runs[i] {
				t.words.mark(r, false)
			}
		}
	}
	if errors.Join(errs...) == nil {
		// Runs of entries a failed rewrite had replaced or dropped.
		for _, r := range pa.freed {
			t.words.mark(r, false)
		}
	}
	delete(t.ids, pa.id)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("set policy: remove attachment %d: %w", pa.id, err)
	}
	return nil
}
