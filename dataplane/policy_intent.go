package dataplane

import (
	"fmt"
	"net/netip"
	"sort"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// policyIntent is the ACL policy a configuration asks for: the
// attachments of pod interfaces (by name) and of VRFs' tunnel ingress.
// Points with the same sets, default and VRF share one *Attachment.
type policyIntent struct {
	Interfaces map[string]InterfacePolicy
	Tunnel     map[string]*Attachment
}

// policyPod is what tag selectors see of a pod interface.
type policyPod struct {
	vrf    string
	prefix netip.Prefix
	tags   map[string]string
}

// policyOf translates the ACL configuration: every attachment point's
// sets, merged in evaluation order, with address groups and tag selectors
// resolved into prefixes of the point's VRF. Its errors name the path.
func policyOf(d *gen.Device) (policyIntent, error) {
	c := &policyCompiler{}
	return c.compile(d)
}

// compile is policyOf with c's rule cache: an entry c.reusable finds is
// taken from c.prev instead of being compiled again.
func (c *policyCompiler) compile(d *gen.Device) (policyIntent, error) {
	in := policyIntent{Interfaces: map[string]InterfacePolicy{}, Tunnel: map[string]*Attachment{}}
	var pods []policyPod
	for _, name := range sortedNames(nos.Interfaces(d)) {
		intf := nos.Interfaces(d)[name]
		cfg := intf.GetConfig()
		if cfg.GetType() != gen.IsthmusTypes_InterfaceType_POD {
			continue
		}
		p := policyPod{vrf: cfg.GetNetworkInstance(), tags: map[string]string{}}
		if a := cfg.GetIpv4Address(); a != "" {
			if pre, err := netip.ParsePrefix(a); err == nil {
				p.prefix = pre.Masked()
			}
		}
		if intf.GetTags() != nil {
			for k, t := range intf.GetTags().Tag {
				p.tags[k] = t.GetConfig().GetValue()
			}
		}
		pods = append(pods, p)
	}
	c.d, c.pods, c.cache, c.next = d, pods, map[string]*Attachment{}, map[string]cachedAttachment{}
	for _, name := range sortedNames(nos.Interfaces(d)) {
		intf := nos.Interfaces(d)[name]
		acl := intf.GetAcl().GetConfig()
		if acl == nil || intf.GetConfig().GetType() != gen.IsthmusTypes_InterfaceType_POD {
			continue
		}
		vrf := intf.GetConfig().GetNetworkInstance()
		base := fmt.Sprintf("/interfaces/interface[name=%s]/acl/config", name)
		ingress, err := c.attachment(base+"/ingress-acl-set", vrf, acl.GetIngressAclSet(), acl.GetIngressDefaultAction())
		if err != nil {
			return in, err
		}
		egress, err := c.attachment(base+"/egress-acl-set", vrf, acl.GetEgressAclSet(), acl.GetEgressDefaultAction())
		if err != nil {
			return in, err
		}
		if ingress != nil || egress != nil {
			in.Interfaces[name] = InterfacePolicy{Ingress: ingress, Egress: egress}
		}
	}
	for _, name := range sortedNames(nos.NetworkInstances(d)) {
		cfg := nos.NetworkInstances(d)[name].GetConfig()
		if cfg.GetType() != gen.IsthmusTypes_NetworkInstanceType_L3VRF {
			continue
		}
		path := fmt.Sprintf("/network-instances/network-instance[name=%s]/config/tunnel-ingress-acl-set", name)
		a, err := c.attachment(path, name, cfg.GetTunnelIngressAclSet(), cfg.GetTunnelIngressDefaultAction())
		if err != nil {
			return in, err
		}
		if a != nil {
			in.Tunnel[name] = a
		}
	}
	return in, nil
}

type policyCompiler struct {
	d     *gen.Device
	pods  []policyPod
	cache map[string]*Attachment // VRF, sets, default → attachment
	// The rule cache (policy_compile_cache.go): prev is what an earlier compile
	// left, next what this one leaves; delta, when known, is what the
	// commit changes from the running configuration.
	prev, next map[string]cachedAttachment // by attachment key
	prevIndex  map[string]map[setSeq]int   // attachment key → its prev refs by entry
	delta      *nos.Delta
	scopes     map[string]entryScope // ACL set → what delta changes in it
	compiled   int                   // entries compiled, not taken from prev
}

// attachment merges the entries of sets (ascending sequence, then set
// name) into one attachment for a point of vrf; nil when nothing is
// attached and no default is configured.
func (c *policyCompiler) attachment(path, vrf string, sets []string, def gen.E_IsthmusAcl_AclAction) (*Attachment, error) {
	if len(sets) == 0 && def == gen.IsthmusAcl_AclAction_UNSET {
		return nil, nil
	}
	names := append([]string(nil), sets...)
	sort.Strings(names)
	names = compactStrings(names)
	// Quoted: set names are free text, so no separator could keep "a,b"
	// apart from "a" and "b".
	key := fmt.Sprintf("%q %q %d", vrf, names, def)
	if a, ok := c.cache[key]; ok {
		return a, nil
	}
	if a, ok, err := c.patch(key, vrf, names); err != nil {
		return nil, err
	} else if ok {
		c.cache[key] = a
		return a, nil
	}
	var refs []entryRef
	for _, s := range names {
		set := c.d.GetAcl().GetAclSets().GetAclSet(s)
		if set == nil {
			return nil, fmt.Errorf("%s: ACL set %q does not exist", path, s)
		}
		if set.GetAclEntries() == nil {
			continue
		}
		for seq, e := range set.GetAclEntries().AclEntry {
			refs = append(refs, entryRef{set: s, seq: seq, e: e.GetConfig()})
		}
	}
	if len(refs) > PolicyMaxRules {
		return nil, policyInvalid(path, "%d entries attached at one point, at most %d", len(refs), PolicyMaxRules)
	}
	sort.Slice(refs, func(i, j int) bool {
		if refs[i].seq != refs[j].seq {
			return refs[i].seq < refs[j].seq
		}
		return refs[i].set < refs[j].set
	})
	a := &Attachment{Default: policyAction(def)}
	if def == gen.IsthmusAcl_AclAction_UNSET {
		a.Default = PolicyDrop
	}
	a.Rules = make([]PolicyRule, 0, len(refs))
	for i := range refs {
		rule, err := c.entryRule(key, vrf, &refs[i])
		if err != nil {
			return nil, entryError(refs[i], err)
		}
		a.Rules = append(a.Rules, rule)
	}
	c.cache[key] = a
	c.next[key] = cachedAttachment{refs: refs, a: a}
	return a, nil
}

// entryError names the entry r in err.
func entryError(r entryRef, err error) error {
	return fmt.Errorf("/acl/acl-sets/acl-set[name=%s]/acl-entries/acl-entry[sequence-id=%d]: %w", r.set, r.seq, err)
}

// selectsByTags reports whether some ACL entry of d has a source or
// destination tag selector: then the addresses policy resolves can change
// with any pod, tagged or not.
func selectsByTags(d *gen.Device) bool {
	sets := d.GetAcl().GetAclSets()
	if sets == nil {
		return false
	}
	for _, set := range sets.AclSet {
		if set.GetAclEntries() == nil {
			continue
		}
		for _, e := range set.GetAclEntries().AclEntry {
			c := e.GetConfig()
			if len(c.GetSourceTagSelector()) > 0 || len(c.GetDestinationTagSelector()) > 0 {
				return true
			}
		}
	}
	return false
}

func (c *policyCompiler) rule(vrf string, e *gen.IsthmusAcl_Acl_AclSets_AclSet_AclEntries_AclEntry_Config) (PolicyRule, error) {
	r := PolicyRule{Protocol: e.GetProtocol(), Action: policyAction(e.GetAction())}
	switch e.GetRejectWith() {
	case gen.IsthmusAcl_RejectKind_TCP_RESET:
		r.Reject = RejectTCPReset
	case gen.IsthmusAcl_RejectKind_ICMP_UNREACHABLE:
		r.Reject = RejectICMP
	}
	var err error
	if r.Sources, err = c.addresses(vrf, e.SourceAddress, e.SourceAddressGroup, e.GetSourceTagSelector()); err != nil {
		return r, err
	}
	if r.Destinations, err = c.addresses(vrf, e.DestinationAddress, e.DestinationAddressGroup, e.GetDestinationTagSelector()); err != nil {
		return r, err
	}
	if e.SourcePort != nil {
		r.SourcePorts = PortRange{e.GetSourcePort(), e.GetSourcePort()}
		if e.SourcePortEnd != nil {
			r.SourcePorts.Last = e.GetSourcePortEnd()
		}
	}
	if e.DestinationPort != nil {
		r.DestinationPorts = PortRange{e.GetDestinationPort(), e.GetDestinationPort()}
		if e.DestinationPortEnd != nil {
			r.DestinationPorts.Last = e.GetDestinationPortEnd()
		}
	}
	if e.IcmpType != nil {
		r.ICMP, r.ICMPType = true, e.GetIcmpType()
	}
	return r, nil
}

// addresses intersects what one end of an entry names: a prefix, an
// address group, a tag selector (nil when none is set: any address).
func (c *policyCompiler) addresses(vrf string, prefix, group *string, selector []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	if prefix != nil {
		p, err := netip.ParsePrefix(*prefix)
		if err != nil {
			return nil, fmt.Errorf("parse prefix %q: %w", *prefix, err)
		}
		out = []netip.Prefix{p.Masked()}
	}
	if group != nil {
		g := c.d.GetAcl().GetAddressGroups().GetAddressGroup(*group)
		if g == nil {
			return nil, fmt.Errorf("address group %q does not exist", *group)
		}
		out = intersectPrefixes(out, groupPrefixes(g))
	}
	if len(selector) > 0 {
		out = intersectPrefixes(out, c.tagged(vrf, selector))
	}
	return out, nil
}

// tagged returns the addresses, in vrf, of the pod interfaces and the
// address groups whose tags satisfy every term (never nil).
func (c *policyCompiler) tagged(vrf string, terms []string) []netip.Prefix {
	out := []netip.Prefix{}
	for _, p := range c.pods {
		if p.vrf == vrf && p.prefix.IsValid() && tagsMatch(p.tags, terms) {
			out = append(out, p.prefix)
		}
	}
	if gs := c.d.GetAcl().GetAddressGroups(); gs != nil {
		for _, name := range sortedNames(gs.AddressGroup) {
			g := gs.AddressGroup[name]
			if g.GetTags() == nil || len(g.GetTags().Tag) == 0 {
				continue
			}
			if ni := g.GetConfig().GetNetworkInstance(); ni != "" && ni != vrf {
				continue
			}
			tags := map[string]string{}
			for k, t := range g.GetTags().Tag {
				tags[k] = t.GetConfig().GetValue()
			}
			if tagsMatch(tags, terms) {
				out = append(out, groupPrefixes(g)...)
			}
		}
	}
	return intersectPrefixes(out, out) // sorted, without duplicates
}

// tagsMatch reports whether tags satisfy every selector term.
func tagsMatch(tags map[string]string, terms []string) bool {
	for _, term := range terms {
		k, v, op := nos.ParseTagTerm(term)
		got, has := tags[k]
		switch op {
		case "=":
			if !has || got != v {
				return false
			}
		case "!=":
			if has && got == v {
				return false
			}
		case "exists":
			if !has {
				return false
			}
		case "absent":
			if has {
				return false
			}
		}
	}
	return true
}

// groupPrefixes returns an address group's prefixes minus its except
// prefixes (never nil).
func groupPrefixes(g *gen.IsthmusAcl_Acl_AddressGroups_AddressGroup) []netip.Prefix {
	var ps, ex []netip.Prefix
	for _, s := range g.GetConfig().GetPrefix() {
		if p, err := netip.ParsePrefix(s); err == nil {
			ps = append(ps, p.Masked())
		}
	}
	for _, s := range g.GetConfig().GetExcept() {
		if p, err := netip.ParsePrefix(s); err == nil {
			ex = append(ex, p.Masked())
		}
	}
	return subtractPrefixes(ps, ex)
}

func policyAction(a gen.E_IsthmusAcl_AclAction) PolicyAction {
	switch a {
	case gen.IsthmusAcl_AclAction_ACCEPT:
		return PolicyAccept
	case gen.IsthmusAcl_AclAction_REJECT:
		return PolicyReject
	}
	return PolicyDrop
}

func sortedNames[E any](m map[string]E) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func compactStrings(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// policyInvalid is an InvalidArgument about path.
func policyInvalid(path, format string, args ...any) error {
	return &nos.PathError{Path: path, Err: fmt.Errorf("%w: %s", nos.ErrInvalid, fmt.Sprintf(format, args...))}
}
