package dataplane

import (
	"fmt"
	"sync"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// A commit that changes one entry of a large ACL set compiles that entry,
// not the set: the rules compiled by the last compile are kept per (VRF,
// set, sequence id), and a compile that knows the commit's delta takes a
// rule from there when all of these hold:
//   - the delta does not name the entry, nor its set as a whole (a set
//     added, or whose own leaves changed, is compiled whole);
//   - the entry's config is the very object the rule was compiled from
//     (the core never changes an entry in place, so an equal pointer is
//     an equal entry);
//   - the address groups it names are the very objects they were;
//   - it has no tag selector (those resolve against every pod and tagged
//     group, so they are always compiled).
// Without a delta (Start, a plain Validate or Apply) every entry is
// compiled. The intent ValidateDelta compiles is kept for the ApplyDelta
// of the same candidate, so a commit compiles its policy once.

// ruleKey names one compiled ACL entry.
type ruleKey struct {
	vrf, set string
	seq      uint32
}

// cachedRule is a compiled ACL entry and what it was compiled from.
type cachedRule struct {
	cfg    *gen.IsthmusAcl_Acl_AclSets_AclSet_AclEntries_AclEntry_Config
	groups [2]*gen.IsthmusAcl_Acl_AddressGroups_AddressGroup // source, destination
	rule   PolicyRule
}

// entryScope is what a delta changes in one ACL set.
type entryScope struct {
	whole bool            // the set is compiled whole
	named map[uint32]bool // entries added or changed
}

// policyCompileCache keeps compiled policy between compiles.
type policyCompileCache struct {
	mu       sync.Mutex
	rules    map[ruleKey]cachedRule // left by the last compile
	valDev   *gen.Device            // candidate ValidateDelta compiled
	valIn    policyIntent           // its policy
	compiled int64                  // ACL entries compiled since New
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
	c := &policyCompiler{prev: pc.rules, delta: delta}
	in, err := c.compile(d)
	pc.compiled += int64(c.compiled)
	if err != nil {
		return in, err
	}
	pc.rules = c.next
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

// entryRule returns the rule of entry seq of set, attached in vrf: from
// c.prev when it may be reused, else compiled.
func (c *policyCompiler) entryRule(vrf, set string, seq uint32, e *gen.IsthmusAcl_Acl_AclSets_AclSet_AclEntries_AclEntry_Config) (PolicyRule, error) {
	k := ruleKey{vrf: vrf, set: set, seq: seq}
	groups := c.groupsOf(e)
	if cr, ok := c.prev[k]; ok && cr.cfg == e && cr.groups == groups && c.untouched(set, seq) {
		c.next[k] = cr
		return cr.rule, nil
	}
	c.compiled++
	rule, err := c.rule(vrf, e)
	if err != nil {
		return rule, err
	}
	rule.Entry = fmt.Sprintf("%s/%d", set, seq)
	if len(e.GetSourceTagSelector()) == 0 && len(e.GetDestinationTagSelector()) == 0 {
		c.next[k] = cachedRule{cfg: e, groups: groups, rule: rule}
	}
	return rule, nil
}

// groupsOf returns the address groups entry e names (nil: none, or
// missing).
func (c *policyCompiler) groupsOf(e *gen.IsthmusAcl_Acl_AclSets_AclSet_AclEntries_AclEntry_Config) [2]*gen.IsthmusAcl_Acl_AddressGroups_AddressGroup {
	var out [2]*gen.IsthmusAcl_Acl_AddressGroups_AddressGroup
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

// untouched reports whether c.delta is known and names neither entry seq
// of set nor the set as a whole.
func (c *policyCompiler) untouched(set string, seq uint32) bool {
	if c.delta == nil {
		return false
	}
	if c.scopes == nil {
		c.scopes = map[string]entryScope{}
		changed, _ := c.delta.ACLSets()
		for _, name := range changed {
			ch, _, own, ok := c.delta.ACLEntries(name)
			sc := entryScope{whole: !ok || own, named: map[uint32]bool{}}
			for _, s := range ch {
				sc.named[s] = true
			}
			c.scopes[name] = sc
		}
	}
	sc, ok := c.scopes[set]
	return !ok || !sc.whole && !sc.named[seq]
}
