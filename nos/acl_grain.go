package nos

import (
	"maps"
	"reflect"
	"slices"
	"strconv"

	gpb "github.com/openconfig/gnmi/proto/gnmi"

	"github.com/isthmus-net/isthmus/gen"
)

// An ACL set can hold ten thousand entries, and a policy change usually
// changes one of them. Below the grain of top-level entries (delta.go),
// a commit that changes a set that both configurations have records
// which of its entries it added, changed or removed (aclChange): the
// Set copies only those entries (unshareACLSet), schema and semantic
// validation check only them (delta.partial, scope.aclEntries), the
// telemetry diff compares only them (diffACLSet) and the store writes
// only them (one key per entry, store_acl.go). A set added or removed
// whole, or whose change is not known entry by entry, is handled whole.

type aclSetT = gen.IsthmusAcl_Acl_AclSets_AclSet

// aclChange is what a commit changed in one ACL set present before and
// after it.
type aclChange struct {
	set     bool     // the set's own leaves (name, config) changed
	changed []uint32 // entries added or changed, sorted
	removed []uint32 // entries removed, sorted
}

// aclTouched records, per ACL set a Set edits, the entries its edits may
// have changed; a nil map: any entry of the set may have changed.
type aclTouched map[string]map[uint32]bool

// aclEntryMap returns the entries of s (nil when it has none).
func aclEntryMap(s *aclSetT) map[uint32]*aclEntryT {
	if s == nil || s.AclEntries == nil {
		return nil
	}
	return s.AclEntries.AclEntry
}

// withoutEntries returns a shallow copy of s without its entries.
func withoutEntries(s *aclSetT) *aclSetT {
	c := *s
	c.AclEntries = nil
	return &c
}

// compareACLSets compares two versions of a set entry by entry: every
// entry when seqs is nil, else only those in seqs (the others are the
// same objects in both). It returns nil when they are equal. Entries
// that are the same object are equal without a look inside.
func compareACLSets(a, b *aclSetT, seqs map[uint32]bool) *aclChange {
	ch := &aclChange{set: !reflect.DeepEqual(withoutEntries(a), withoutEntries(b))}
	ea, eb := aclEntryMap(a), aclEntryMap(b)
	check := func(seq uint32) {
		x, okA := ea[seq]
		y, okB := eb[seq]
		switch {
		case okA && !okB:
			ch.removed = append(ch.removed, seq)
		case okB && (!okA || (x != y && !reflect.DeepEqual(x, y))):
			ch.changed = append(ch.changed, seq)
		}
	}
	if seqs != nil {
		for seq := range seqs {
			check(seq)
		}
	} else {
		for seq := range eb {
			check(seq)
		}
		for seq := range ea {
			if _, ok := eb[seq]; !ok {
				ch.removed = append(ch.removed, seq)
			}
		}
	}
	if !ch.set && len(ch.changed) == 0 && len(ch.removed) == 0 {
		return nil
	}
	slices.Sort(ch.changed)
	slices.Sort(ch.removed)
	return ch
}

// reverse returns the change from after back to before, given g from
// before (the set old) to after.
func (g *aclChange) reverse(old *aclSetT) *aclChange {
	r := &aclChange{set: g.set}
	before := aclEntryMap(old)
	for _, seq := range g.changed {
		if _, ok := before[seq]; ok {
			r.changed = append(r.changed, seq)
		} else {
			r.removed = append(r.removed, seq)
		}
	}
	r.changed = append(r.changed, g.removed...)
	slices.Sort(r.changed)
	return r
}

// partialACLSet returns the set s with only the entries g changed, for
// schema validation (its own leaves are shared, not copied).
func partialACLSet(s *aclSetT, g *aclChange) *aclSetT {
	p := withoutEntries(s)
	all := aclEntryMap(s)
	if len(g.changed) == 0 || all == nil {
		return p
	}
	p.AclEntries = &gen.IsthmusAcl_Acl_AclSets_AclSet_AclEntries{AclEntry: make(map[uint32]*aclEntryT, len(g.changed))}
	for _, seq := range g.changed {
		if e := all[seq]; e != nil {
			p.AclEntries.AclEntry[seq] = e
		}
	}
	return p
}

// sameTokens reports whether set name looks for the same address groups
// and tag keys in cand as in old (validate_scope.go), which differ by g:
// neither version of an entry g names looks for any. A nil g knows
// nothing and answers false.
func (g *aclChange) sameTokens(old, cand *gen.Device, name string) bool {
	if g == nil {
		return false
	}
	before, after := aclEntryMap(aclSets(old)[name]), aclEntryMap(aclSets(cand)[name])
	looks := func(e *aclEntryT) bool {
		c := e.GetConfig()
		return c != nil && (c.SourceAddressGroup != nil || c.DestinationAddressGroup != nil ||
			len(c.SourceTagSelector) > 0 || len(c.DestinationTagSelector) > 0)
	}
	for _, seqs := range [][]uint32{g.changed, g.removed} {
		for _, seq := range seqs {
			if looks(before[seq]) || looks(after[seq]) {
				return false
			}
		}
	}
	return true
}

// aclEdit is the grain at which an edit below an ACL set works.
type aclEdit int

const (
	aclEditWhole aclEdit = iota // the set, its entries container, or entries not named by one key
	aclEditSet                  // the set's own leaves (name, config)
	aclEditEntry                // one entry, by its sequence-id
)

// aclEditOf tells what an edit at rest (the path below an ACL set)
// reaches, and the entry it names.
func aclEditOf(rest []*gpb.PathElem) (aclEdit, uint32) {
	if len(rest) == 0 {
		return aclEditWhole, 0
	}
	if rest[0].GetName() != "acl-entries" {
		return aclEditSet, 0
	}
	if len(rest) < 2 || rest[1].GetName() != "acl-entry" {
		return aclEditWhole, 0
	}
	keys := rest[1].GetKey()
	s, ok := keys["sequence-id"]
	if !ok || len(keys) != 1 {
		return aclEditWhole, 0
	}
	seq, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return aclEditWhole, 0
	}
	return aclEditEntry, uint32(seq)
}

// unshareACLSet makes what an edit at rest, below ACL set name, can
// change cand's own and records it in t: a copy of the set's own leaves
// and, for an edit of one entry, a copy of the map of entries (its
// pointers) and of that entry. The other entries stay shared with the
// running configuration. An edit of the set itself or of its entries
// container copies the set whole (unshareEntry).
func unshareACLSet(cand *gen.Device, name string, rest []*gpb.PathElem, t *touched) {
	if t.acl == nil {
		t.acl = aclTouched{}
	}
	grain, seq := aclEditOf(rest)
	if seqs, ok := t.acl[name]; grain == aclEditWhole || (ok && seqs == nil) {
		if !ok || seqs != nil {
			unshareEntry(cand, topLists[listACL], name)
		}
		t.acl[name] = nil
		return
	}
	if t.acl[name] == nil {
		t.acl[name] = map[uint32]bool{}
	}
	if grain == aclEditEntry {
		t.acl[name][seq] = true
	}
	if cand.Acl == nil || cand.Acl.AclSets == nil || cand.Acl.AclSets.AclSet == nil {
		return // the edit creates what is missing
	}
	acl := *cand.Acl
	cand.Acl = &acl
	sets := *acl.AclSets
	acl.AclSets = &sets
	sets.AclSet = maps.Clone(sets.AclSet)
	set := sets.AclSet[name]
	if set == nil {
		return
	}
	own := mustCopyStruct(withoutEntries(set)).(*aclSetT)
	own.AclEntries = set.AclEntries
	if grain == aclEditEntry && set.AclEntries != nil {
		es := *set.AclEntries
		es.AclEntry = maps.Clone(es.AclEntry)
		if e := es.AclEntry[seq]; e != nil {
			es.AclEntry[seq] = mustCopyStruct(e).(*aclEntryT)
		}
		own.AclEntries = &es
	}
	sets.AclSet[name] = own
}

// aclSetDelta fills d's ACL sets from the sets named in keys (nil: every
// set of either configuration), each compared entry by entry: only the
// entries t names, when t names them.
func (d *delta) aclSets(old, cand *gen.Device, keys map[string]bool, t aclTouched) {
	l := topLists[listACL]
	if keys == nil {
		keys = map[string]bool{}
		for _, s := range []*gen.Device{old, cand} {
			for k := range aclSets(s) {
				keys[k] = true
			}
		}
	}
	for k := range keys {
		o, n := l.entry(old, k), l.entry(cand, k)
		switch {
		case n == nil && o != nil:
			d.removed[listACL] = append(d.removed[listACL], k)
		case n != nil && o == nil:
			d.changed[listACL] = append(d.changed[listACL], k)
		case n != nil:
			if g := compareACLSets(o.(*aclSetT), n.(*aclSetT), t[k]); g != nil {
				d.changed[listACL] = append(d.changed[listACL], k)
				if d.acl == nil {
					d.acl = map[string]*aclChange{}
				}
				d.acl[k] = g
			}
		}
	}
	slices.Sort(d.changed[listACL])
	slices.Sort(d.removed[listACL])
}

// aclScope is which entries of the ACL sets semantic validation walks:
// all of a set added, or related to a changed entry that its entries look
// for (an address group, a tag key); only those a commit changed in a set
// that changed entry by entry; none of a set walked only because a walked
// entry names it (that rule asks only that the set exists).
type aclScope struct {
	all  map[string]bool
	seqs map[string][]uint32
}

func (a *aclScope) addAll(name string) {
	if a.all == nil {
		a.all = map[string]bool{}
	}
	a.all[name] = true
}

func (a *aclScope) addSeqs(name string, seqs []uint32) {
	if a.seqs == nil {
		a.seqs = map[string][]uint32{}
	}
	a.seqs[name] = append(a.seqs[name], seqs...)
}

// aclEntries returns the sequence ids of the entries of set s (named
// name) that validation walks, sorted: all of them when sc is nil.
func (sc *scope) aclEntries(name string, s *aclSetT) []uint32 {
	entries := aclEntryMap(s)
	if sc == nil || sc.acl.all[name] {
		return slices.Sorted(maps.Keys(entries))
	}
	var out []uint32
	for _, seq := range sc.acl.seqs[name] {
		if entries[seq] != nil {
			out = append(out, seq)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// ACLSets returns the names of the ACL sets the commit adds or changes
// and of those it removes, each sorted.
func (d Delta) ACLSets() (changed, removed []string) {
	return d.list(listACL)
}

// ACLEntries tells what the commit changed in ACL set name, when it is
// known entry by entry (ok: the set is in both configurations and
// changed): the sequence ids of the entries added or changed and of
// those removed, each sorted, and whether the set's own leaves (its
// name, its config) changed. The other entries are the very same
// objects in both configurations. A set added, removed or unchanged
// gives ok false.
func (d Delta) ACLEntries(name string) (changed, removed []uint32, own, ok bool) {
	if d.d == nil {
		return nil, nil, false, false
	}
	g := d.d.acl[name]
	if g == nil {
		return nil, nil, false, false
	}
	return slices.Clone(g.changed), slices.Clone(g.removed), g.set, true
}
