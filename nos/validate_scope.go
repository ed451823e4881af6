package nos

import (
	"net/netip"
	"sort"
	"strconv"

	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
)

// Semantic validation walks only the part of a candidate a commit can
// have made invalid: the entries it changed and every entry a rule
// relates to one of them, before or after the change. The running
// configuration was valid, so an entry the commit neither changed nor
// relates to stays valid. Relations are found with refIndex: every entry
// of the running configuration is filed under tokens it provides (its
// name, its route distinguisher, its pools) and tokens it looks for (the
// VRF it names, the ACL sets it attaches, the addresses its backends
// use); two entries are related when one provides what the other looks
// for. A rule that compares entries must have its relation here.

// entryID names an entry of a top-level list.
type entryID struct {
	list int
	name string
}

// refIndex files the entries of the running configuration by the tokens
// they provide (keyed) and look for (probed). It is owned by the commit
// path (commitMu).
type refIndex struct {
	keyed  map[string]entrySet
	probed map[string]entrySet
}

// entrySet is the entries filed under one token. Most tokens (a name, an
// RD, a /24 pool) have one entry, held without a map of its own: the
// index stays small beside the configuration it indexes.
type entrySet struct {
	one  entryID              // the entry, when more is nil
	more map[entryID]struct{} // the entries, when there are several
}

// each calls fn for every entry of the set.
func (s entrySet) each(fn func(entryID)) {
	if s.more == nil {
		fn(s.one)
		return
	}
	for id := range s.more {
		fn(id)
	}
}

// with returns the set with id added.
func (s entrySet) with(id entryID) entrySet {
	if s.more == nil {
		if s.one == id {
			return s
		}
		s.more = map[entryID]struct{}{s.one: {}}
	}
	s.more[id] = struct{}{}
	return s
}

// without returns the set with id removed, and whether it is empty.
func (s entrySet) without(id entryID) (entrySet, bool) {
	if s.more == nil {
		return s, s.one == id
	}
	delete(s.more, id)
	if len(s.more) == 1 {
		for last := range s.more {
			return entrySet{one: last}, false
		}
	}
	return s, len(s.more) == 0
}

// newRefIndex indexes every entry of d.
func newRefIndex(d *gen.Device) *refIndex {
	ix := &refIndex{keyed: map[string]entrySet{}, probed: map[string]entrySet{}}
	for i, l := range topLists {
		for _, k := range l.keys(d) {
			ix.file(entryID{i, k}, l.entry(d, k), true)
		}
	}
	return ix
}

// file adds (or removes) the tokens of entry e.
func (ix *refIndex) file(id entryID, e ygot.GoStruct, add bool) {
	keys, probes := entryTokens(id, e)
	for _, set := range []struct {
		m      map[string]entrySet
		tokens []string
	}{{ix.keyed, keys}, {ix.probed, probes}} {
		for _, t := range set.tokens {
			cur, ok := set.m[t]
			switch {
			case add && !ok:
				set.m[t] = entrySet{one: id}
			case add:
				set.m[t] = cur.with(id)
			case ok:
				if rest, empty := cur.without(id); empty {
					delete(set.m, t)
				} else {
					set.m[t] = rest
				}
			}
		}
	}
}

// update refiles the entries ch changed from their old to their new
// version; the commit from old to cand is done.
func (ix *refIndex) update(old, cand *gen.Device, ch delta) {
	for i, l := range topLists {
		for _, list := range [][]string{ch.changed[i], ch.removed[i]} {
			for _, k := range list {
				if i == listACL && ch.acl[k].sameTokens(old, cand, k) {
					continue // its entries look for what they looked for (acl_grain.go)
				}
				if o := l.entry(old, k); o != nil {
					ix.file(entryID{i, k}, o, false)
				}
				if n := l.entry(cand, k); n != nil {
					ix.file(entryID{i, k}, n, true)
				}
			}
		}
	}
}

// scope is what semantic validation walks; nil walks everything.
type scope struct {
	names   [numLists]map[string]bool
	ix      *refIndex // the running configuration's index
	changed []string  // VRFs the commit added or changed
	acl     aclScope  // which entries of the walked ACL sets are walked (acl_grain.go)
}

// scope returns the entries validation of the commit from old to cand
// (which differ by ch) must walk: the changed ones, those looking for a
// token the changed entries provided or provide (they may have lost or
// gained a conflict or a reference), and, when the tunnel changed, those
// that look for it; then, transitively, those providing what a walked
// entry looks for.
func (ix *refIndex) scope(old, cand *gen.Device, ch delta) *scope {
	sc := &scope{ix: ix, changed: ch.changed[listNI]}
	add := func(t string, m map[string]entrySet) {
		if ids, ok := m[t]; ok {
			ids.each(func(id entryID) {
				sc.add(id)
				if id.list == listACL {
					// It looks for what changed: all its entries.
					sc.acl.addAll(id.name)
				}
			})
		}
	}
	for i, l := range topLists {
		for _, list := range [][]string{ch.changed[i], ch.removed[i]} {
			for _, k := range list {
				id := entryID{i, k}
				sc.add(id)
				if i == listACL {
					if g := ch.acl[k]; g != nil {
						sc.acl.addSeqs(k, g.changed)
					} else {
						sc.acl.addAll(k)
					}
				}
				for _, e := range []ygot.GoStruct{l.entry(old, k), l.entry(cand, k)} {
					if e == nil {
						continue
					}
					keys := []string{"acl:" + k} // an ACL set provides its name only
					if i != listACL {
						keys, _ = entryTokens(id, e)
					}
					for _, t := range keys {
						add(t, ix.probed)
					}
				}
			}
		}
	}
	if ch.tunnel {
		add(tunnelKey, ix.probed)
	}
	// What the walked entries refer to is walked too (a pod's VRF gives
	// the pools its address must be in), and so on.
	var work []entryID
	for i := range sc.names {
		for k := range sc.names[i] {
			work = append(work, entryID{i, k})
		}
	}
	for len(work) > 0 {
		id := work[len(work)-1]
		work = work[:len(work)-1]
		e := topLists[id.list].entry(cand, id.name)
		if e == nil {
			continue
		}
		_, probes := entryTokens(id, e)
		for _, t := range probes {
			if refs, ok := ix.keyed[t]; ok {
				refs.each(func(ref entryID) {
					if !sc.names[ref.list][ref.name] {
						sc.add(ref)
						work = append(work, ref)
					}
				})
			}
		}
	}
	return sc
}

func (sc *scope) add(id entryID) {
	if sc.names[id.list] == nil {
		sc.names[id.list] = map[string]bool{}
	}
	sc.names[id.list][id.name] = true
}

// keys returns the names of the entries of list that validation walks
// and d holds, sorted: all of them when sc is nil.
func (sc *scope) keys(list int, d *gen.Device) []string {
	if sc == nil {
		return topLists[list].keys(d)
	}
	l := topLists[list]
	out := make([]string, 0, len(sc.names[list]))
	for k := range sc.names[list] {
		if l.entry(d, k) != nil {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// otherPools returns the address pools of the network instances of d
// other than vrf that may hold a backend address of ni: with no scope,
// every other instance's.
func (sc *scope) otherPools(d *gen.Device, vrf string, ni *gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance) map[string][]netip.Prefix {
	if sc == nil {
		return otherPools(d, vrf)
	}
	names := map[string]bool{}
	for _, k := range sc.changed {
		names[k] = true
	}
	for _, svc := range Services(ni) {
		for k := range Backends(svc) {
			if a, err := netip.ParseAddr(k.Address); err == nil && a.Is4() {
				for _, t := range prefixProbes(netip.PrefixFrom(a, 32)) {
					if ids, ok := sc.ix.keyed[t]; ok {
						ids.each(func(id entryID) {
							if id.list == listNI {
								names[id.name] = true
							}
						})
					}
				}
			}
		}
	}
	out := map[string][]netip.Prefix{}
	for name := range names {
		if name == vrf {
			continue
		}
		for key := range addressPools(NetworkInstances(d)[name]) {
			if p, err := netip.ParsePrefix(key); err == nil {
				out[name] = append(out[name], p.Masked())
			}
		}
	}
	return out
}

// poolLevels are the prefix lengths at which pools and addresses meet in
// the index: a pool is filed at the longest level not longer than
// itself, and an address or prefix looks at every level up to its own,
// so a prefix and an address (or a prefix) inside it always share one
// token.
var poolLevels = []int{0, 8, 16, 24}

func prefixKey(p netip.Prefix) string {
	level := 0
	for _, l := range poolLevels {
		if p.Bits() >= l {
			level = l
		}
	}
	return "pool/" + netip.PrefixFrom(p.Addr(), level).Masked().String()
}

func prefixProbes(p netip.Prefix) []string {
	var out []string
	for _, l := range poolLevels {
		if p.Bits() >= l {
			out = append(out, "pool/"+netip.PrefixFrom(p.Addr(), l).Masked().String())
		}
	}
	return out
}

// entryTokens returns what entry e provides and looks for.
func entryTokens(id entryID, e ygot.GoStruct) (keys, probes []string) {
	both := func(t string) {
		keys = append(keys, t)
		probes = append(probes, t)
	}
	switch id.list {
	case listNI:
		ni, _ := e.(*gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance)
		keys = append(keys, "ni:"+id.name)
		cfg := ni.GetConfig()
		if rd := cfg.GetRouteDistinguisher(); rd != "" {
			both("rd:" + rd)
		}
		for _, s := range cfg.GetTunnelIngressAclSet() {
			probes = append(probes, "acl:"+s)
		}
		for key := range addressPools(ni) {
			if p, err := netip.ParsePrefix(key); err == nil {
				p = p.Masked()
				keys = append(keys, prefixKey(p))
				probes = append(probes, prefixProbes(p)...)
			}
		}
		for _, r := range staticRoutes(ni) {
			if ifname := r.GetConfig().GetInterface(); ifname != "" {
				probes = append(probes, "if:"+ifname)
			}
		}
		for _, svc := range Services(ni) {
			for k := range Backends(svc) {
				if a, err := netip.ParseAddr(k.Address); err == nil && a.Is4() {
					probes = append(probes, prefixProbes(netip.PrefixFrom(a, 32))...)
				}
			}
		}
		if ext := ni.GetExternal(); ext != nil {
			probes = append(probes, tunnelKey) // the SNAT address defaults to the tunnel source
			ec := ext.GetConfig()
			if ec.GetDefaultPodNetwork() {
				both("default-pod-network")
			}
			if ec.PortMin != nil && ec.PortMax != nil && ec.GetPortMin() <= ec.GetPortMax() {
				for b := int(ec.GetPortMin()) >> 10; b <= int(ec.GetPortMax())>>10; b++ {
					both("snat/" + strconv.Itoa(b))
				}
			}
		}
	case listIf:
		intf, _ := e.(*gen.IsthmusInterfaces_Interfaces_Interface)
		keys = append(keys, "if:"+id.name)
		cfg := intf.GetConfig()
		if vrf := cfg.GetNetworkInstance(); vrf != "" {
			probes = append(probes, "ni:"+vrf)
			if p, err := netip.ParsePrefix(cfg.GetIpv4Address()); err == nil {
				both("addr:" + vrf + "|" + p.Addr().String())
			}
		}
		acl := intf.GetAcl().GetConfig()
		for _, s := range append(append([]string(nil), acl.GetIngressAclSet()...), acl.GetEgressAclSet()...) {
			probes = append(probes, "acl:"+s)
		}
	case listACL:
		set, _ := e.(*gen.IsthmusAcl_Acl_AclSets_AclSet)
		keys = append(keys, "acl:"+id.name)
		if es := set.GetAclEntries(); es != nil {
			for _, entry := range es.AclEntry {
				cfg := entry.GetConfig()
				for _, g := range []*string{cfg.SourceAddressGroup, cfg.DestinationAddressGroup} {
					if g != nil {
						probes = append(probes, "ag:"+*g)
					}
				}
				for _, term := range append(append([]string(nil), cfg.SourceTagSelector...), cfg.DestinationTagSelector...) {
					k, _, _ := ParseTagTerm(term)
					probes = append(probes, "tk:"+k)
				}
			}
		}
	case listAddressGroup:
		g, _ := e.(*gen.IsthmusAcl_Acl_AddressGroups_AddressGroup)
		keys = append(keys, "ag:"+id.name)
		if vrf := g.GetConfig().GetNetworkInstance(); vrf != "" {
			probes = append(probes, "ni:"+vrf)
		}
	case listTagKey:
		keys = append(keys, "tk:"+id.name)
	case listCNI:
		ns, _ := e.(*gen.IsthmusCni_Cni_Namespaces_Namespace)
		keys = append(keys, "cni:"+id.name)
		if vrf := ns.GetConfig().GetNetworkInstance(); vrf != "" {
			probes = append(probes, "ni:"+vrf)
		}
	}
	return keys, probes
}
