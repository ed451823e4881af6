package dataplane

import (
	"fmt"
	"sync"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// A commit that changes one entry of a large ACL set compiles that entry,
// not the set. Each compile leaves, per attachment (VRF, sets, default),
// the entries it merged, in evaluation order, with the config objects and
// address groups each rule was compiled from. A compile that knows the
// commit's delta (the core's contract: an entry is never changed in
// place, so an equal pointer is an equal entry) starts from the last
// compile's attachment:
//   - when every entry it merged is still there, as the very same config
//     object, and the sets hold no other entries (some may be gone), the
//     rules are kept in their order and only these are compiled again:
//     the entries whose config is another object, those whose address
//     groups are other objects, and every tag-selector entry (those
//     resolve against every pod and tagged group). An attachment with
//     nothing to compile again is the last one, unchanged.
//   - otherwise (an entry added) the entries are merged and sorted again,
//     and a rule is still taken from the last attachment when its entry
//     passes the same checks.
// Without a delta (Start, a plain Validate or Apply) every entry is
// compiled. The intent ValidateDelta compiles is kept for the ApplyDelta
// of the same candidate, so a commit compiles its policy once.

// entryRef is an ACL entry merged into an attachment.
type entryRef struct {
	set    string
	seq    uint32
	e      *gen.IsthmusAcl_Acl_AclSets_AclSet_AclEntries_AclEntry_Config
	groups [2]*addressGroup // source, destination: what the rule resolved
}

type addressGroup = gen.IsthmusAcl_Acl_AddressGroups_AddressGroup

// setSeq names an entry of an attachment.
type setSeq struct {
	set string
	seq uint32
}

// cachedAttachment is a compiled attachment and the entries it merged,
// refs[i] giving a.Rules[i].
type cachedAttachment struct {
	refs []entryRef
	a    *Attachment
}

// policyCompileCache keeps compiled policy between compiles.
type policyCompileCache struct {
	mu       sync.Mutex
	prev     map[string]cachedAttachment // left by the last compile
	valDev   *gen.Device                 // candidate ValidateDelta compiled
	valIn    policyIntent                // its policy
	compiled int64                       // ACL entries compiled since New
}

// compile returns the policy of d, compiled with the cache: d differs
// from the running configuration by delta (nil: not known). keep keeps
// the result for the ApplyDelta of d (ValidateDelta's compile).
func (pc *policyCompileCache) compile(d *gen.Device, delta *nos.Delta, keep bool) (policyIntent, error) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if delta != nil && !keep && pc.valDev == d {
		in := pc.valIn
		pc.valDev, pc.valIn = nil, policyIntent{}
		return in, nil
	}
	pc.valDev, pc.valIn = nil, policyIntent{}
	c := &policyCompiler{delta: delta}
	if delta != nil {
		c.prev = pc.prev
	}
	in, err := c.compile(d)
	pc.compiled += int64(c.compiled)
	if err != nil {
		return in, err
	}
	pc.prev = c.next
	if keep && delta != nil {
		pc.valDev, pc.valIn = d, in
	}
	return in, nil
}

// entriesCompiled returns how many ACL entries have been compiled.
func (pc *policyCompileCache) entriesCompiled() int64 {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return pc.compiled
}

// patch returns attachment key (of sets names, in vrf) from the last
// compile's, with the entries that need it compiled again; ok false when
// it cannot (no delta, no last attachment, an entry added, a set
// missing).
func (c *policyCompiler) patch(key, vrf string, names []string) (*Attachment, bool, error) {
	ca, ok := c.prev[key]
	if !ok || c.delta == nil {
		return nil, false, nil
	}
	entries := make(map[string]map[uint32]*gen.IsthmusAcl_Acl_AclSets_AclSet_AclEntries_AclEntry, len(names))
	total := 0
	for _, s := range names {
		set := c.d.GetAcl().GetAclSets().GetAclSet(s)
		if set == nil {
			return nil, false, nil // the full path names the error
		}
		if set.GetAclEntries() != nil {
			entries[s] = set.GetAclEntries().AclEntry
			total += len(entries[s])
		}
	}
	if total > len(ca.refs) {
		return nil, false, nil // entries added: merged again
	}
	var refs []entryRef // copied on the first change
	var rules []PolicyRule
	kept := 0
	for i, r := range ca.refs {
		e := entries[r.set][r.seq]
		if e == nil {
			if refs == nil {
				refs, rules = append([]entryRef(nil), ca.refs[:i]...), append([]PolicyRule(nil), ca.a.Rules[:i]...)
			}
			continue // removed
		}
		kept++
		cur := entryRef{set: r.set, seq: r.seq, e: e.GetConfig()}
		if c.reusable(r, &cur) {
			if refs != nil {
				refs, rules = append(refs, r), append(rules, ca.a.Rules[i])
			}
			continue
		}
		rule, err := c.compileEntry(vrf, &cur)
		if err != nil {
			return nil, false, entryError(cur, err)
		}
		if refs == nil {
			refs, rules = append([]entryRef(nil), ca.refs[:i]...), append([]PolicyRule(nil), ca.a.Rules[:i]...)
		}
		refs, rules = append(refs, cur), append(rules, rule)
	}
	if kept != total {
		return nil, false, nil // entries added: merged again
	}
	if refs == nil {
		c.next[key] = ca
		return ca.a, true, nil
	}
	a := &Attachment{Default: ca.a.Default, Rules: rules}
	c.next[key] = cachedAttachment{refs: refs, a: a}
	return a, true, nil
}

// reusable reports whether the rule compiled from prev still holds for
// entry cur (its groups filled in).
func (c *policyCompiler) reusable(prev entryRef, cur *entryRef) bool {
	cur.groups = c.groupsOf(cur.e)
	return prev.e == cur.e && prev.groups == cur.groups &&
		len(cur.e.GetSourceTagSelector()) == 0 && len(cur.e.GetDestinationTagSelector()) == 0 &&
		!c.named(cur.set, cur.seq)
}

// named reports whether the delta names entry seq of set, or set as a
// whole (added, or its own leaves changed): such an entry is compiled
// again even if its config is the same object.
func (c *policyCompiler) named(set string, seq uint32) bool {
	if c.scopes == nil {
		c.scopes = map[string]entryScope{}
		changed, _ := c.delta.ACLSets()
		for _, name := range changed {
			ch, _, own, ok := c.delta.ACLEntries(name)
			sc := entryScope{whole: !ok || own, named: make(map[uint32]bool, len(ch))}
			for _, s := range ch {
				sc.named[s] = true
			}
			c.scopes[name] = sc
		}
	}
	sc, ok := c.scopes[set]
	return ok && (sc.whole || sc.named[seq])
}

// entryScope is what the delta changes in one ACL set.
type entryScope struct {
	whole bool            // the set is compiled whole
	named map[uint32]bool // entries added or changed
}

// entryRule returns the rule of r (its groups filled in), merged into
// attachment key in vrf: the last compile's when reusable, else compiled.
func (c *policyCompiler) entryRule(key, vrf string, r *entryRef) (PolicyRule, error) {
	if ca, ok := c.prev[key]; ok && c.delta != nil {
		idx := c.prevIndex[key]
		if idx == nil {
			idx = make(map[setSeq]int, len(ca.refs))
			for i, p := range ca.refs {
				idx[setSeq{p.set, p.seq}] = i
			}
			if c.prevIndex == nil {
				c.prevIndex = map[string]map[setSeq]int{}
			}
			c.prevIndex[key] = idx
		}
		if i, ok := idx[setSeq{r.set, r.seq}]; ok && c.reusable(ca.refs[i], r) {
			return ca.a.Rules[i], nil
		}
	}
	r.groups = c.groupsOf(r.e)
	return c.compileEntry(vrf, r)
}

// compileEntry compiles entry r for an attachment in vrf.
func (c *policyCompiler) compileEntry(vrf string, r *entryRef) (PolicyRule, error) {
	c.compiled++
	rule, err := c.rule(vrf, r.e)
	if err != nil {
		return rule, err
	}
	rule.Entry = fmt.Sprintf("%s/%d", r.set, r.seq)
	return rule, nil
}

// groupsOf returns the address groups entry e names (nil: none, or
// missing).
func (c *policyCompiler) groupsOf(e *gen.IsthmusAcl_Acl_AclSets_AclSet_AclEntries_AclEntry_Config) [2]*addressGroup {
	var out [2]*addressGroup
	if e.SourceAddressGroup == nil && e.DestinationAddressGroup == nil {
		return out
	}
	gs := c.d.GetAcl().GetAddressGroups()
	if gs == nil {
		return out
	}
	if e.SourceAddressGroup != nil {
		out[0] = gs.AddressGroup[*e.SourceAddressGroup]
	}
	if e.DestinationAddressGroup != nil {
		out[1] = gs.AddressGroup[*e.DestinationAddressGroup]
	}
	return out
}
