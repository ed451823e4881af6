package kube

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strings"

	"github.com/openconfig/ygot/ygot"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/isthmus-net/isthmus/gen"
)

// This file renders compiled policy (netpol.go) as Isthmus ACL
// configuration for one node:
//
//   - every pod interface gets the pod's labels as tags "k8s.pod/<label>"
//     and its namespace's labels as "k8s.ns/<label>" (the namespace's name
//     as k8s.ns/kubernetes.io/metadata.name, always);
//   - a pod isolated in a direction gets an ACL set of its own for it,
//     "k8s/<namespace>/<pod>/ingress" or ".../egress", of ACCEPT entries
//     (the union of the rules of every policy selecting it), attached to
//     its interface with default action DROP; a pod not isolated gets
//     nothing attached, which accepts everything;
//   - pod selectors become tag selectors on those tags, ipBlocks address
//     groups (prefix and except), egress to named ports address groups of
//     the destination pods' addresses;
//   - the tag keys the selectors use are declared under /acl/tag-keys.
//
// The isthmus-acl module's semantics (first match over every attached
// set, default DROP when isolated, stateful flows so replies pass) make
// that exactly NetworkPolicy's.

// Tag key prefixes of pod and namespace labels.
const (
	podTagPrefix = "k8s.pod/"
	nsTagPrefix  = "k8s.ns/"
	// nsNameTag carries the namespace's name on every pod interface; it
	// also selects "any pod" (every pod carries it).
	nsNameTag = nsTagPrefix + "kubernetes.io/metadata.name"
	// aclSetPrefix starts the name of every ACL set the controller owns.
	aclSetPrefix = "k8s/"
	// groupPrefix starts the name of every address group it owns.
	groupPrefix = "k8s."
	maxTagKey   = 63
)

type (
	aclSetT    = gen.IsthmusAcl_Acl_AclSets_AclSet
	aclEntryT  = gen.IsthmusAcl_Acl_AclSets_AclSet_AclEntries_AclEntry
	addrGroupT = gen.IsthmusAcl_Acl_AddressGroups_AddressGroup
	ifaceACLT  = gen.IsthmusInterfaces_Interfaces_Interface_Acl
	ifaceTagsT = gen.IsthmusInterfaces_Interfaces_Interface_Tags
)

// podAttachment is what one pod's interface carries.
type podAttachment struct {
	// addr is the pod's status.podIP: set by the kubelet once the pod's
	// CNI ADD is done, so a pod with one and no interface yet is worth
	// looking for again.
	addr netip.Addr
	tags map[string]string
	// ingress and egress name the pod's sets; "" when not isolated.
	ingress, egress string
}

// nodePolicy is the controller's policy configuration of one node.
type nodePolicy struct {
	// pods are the node's pods by "namespace/name".
	pods    map[string]podAttachment
	sets    map[string]*aclSetT
	groups  map[string]*addrGroupT
	tagKeys []string
	// entries caches the rendering of each peer (peers are shared by the
	// pods a rule applies to).
	entries map[*peerMatch][]peerEntry
}

// equal compares two node policies (nil equals empty).
func (a *nodePolicy) equal(b *nodePolicy) bool {
	if a == nil || b == nil {
		return a.empty() && b.empty()
	}
	if !slices.Equal(a.tagKeys, b.tagKeys) || len(a.pods) != len(b.pods) || len(a.sets) != len(b.sets) || len(a.groups) != len(b.groups) {
		return false
	}
	for k, p := range a.pods {
		q, ok := b.pods[k]
		if !ok || p.addr != q.addr || p.ingress != q.ingress || p.egress != q.egress || !maps.Equal(p.tags, q.tags) {
			return false
		}
	}
	// Both were rendered by renderNodePolicy, so equal trees are equal
	// structs (reflection is far cheaper than marshalling them).
	return reflect.DeepEqual(a.sets, b.sets) && reflect.DeepEqual(a.groups, b.groups)
}

func jsonString(s ygot.GoStruct) string {
	js, err := ygot.Marshal7951(s)
	if err != nil {
		return "error: " + err.Error()
	}
	return string(js)
}

func (a *nodePolicy) empty() bool {
	return a == nil || len(a.pods)+len(a.sets)+len(a.groups)+len(a.tagKeys) == 0
}

// tagKey maps a label key under a prefix to a tag key, hashing keys too
// long for one.
func tagKey(prefix, label string) string {
	k := prefix + label
	if len(k) <= maxTagKey {
		return k
	}
	h := sha256.Sum256([]byte(label))
	return prefix + "h/" + hex.EncodeToString(h[:12])
}

// podTags are the tags of a pod's interface.
func podTags(p *policyPod, nsLabels map[string]string) map[string]string {
	tags := make(map[string]string, len(p.labels)+len(nsLabels)+1)
	for k, v := range p.labels {
		tags[tagKey(podTagPrefix, k)] = v
	}
	for k, v := range nsLabels {
		tags[tagKey(nsTagPrefix, k)] = v
	}
	tags[nsNameTag] = p.namespace
	return tags
}

// aclSetName names a pod's set for one direction.
func aclSetName(p *policyPod, dir string) string {
	return aclSetPrefix + p.namespace + "/" + p.name + "/" + dir
}

// renderNodePolicy renders the policy of the pods on node. vrf names the
// VRF of a namespace's pods on node ("" when the namespace joins no
// network), and says false when that network is not on node: no packet of
// those pods can reach node in their VRF, and a group scoped to a VRF the
// node lacks would be refused. Pods of other nodes that the node's
// selectors match become tagged address groups, so the node resolves them
// as it resolves its own pods' interfaces. shared (nil: none) names the
// other VRFs on node where a namespace's pods appear with their own
// addresses (networks sharing routes with theirs by route target): a
// selector there resolves only interfaces and groups of its own VRF, so
// each matched pod, of this node or another, also gets a tagged group
// scoped to each of them.
func renderNodePolicy(c *policyCluster, compiled map[*policyPod]*podPolicy, node string, vrf func(ns string) (string, bool),
	shared func(ns string) []string) *nodePolicy {
	out := &nodePolicy{pods: map[string]podAttachment{}, sets: map[string]*aclSetT{}, groups: map[string]*addrGroupT{}}
	keys := map[string]bool{}
	peers := map[*peerMatch]bool{}
	for _, p := range c.pods {
		if p.node != node {
			continue
		}
		pp := compiled[p]
		att := podAttachment{addr: p.addr, tags: podTags(p, c.namespaces[p.namespace])}
		if pp != nil && pp.ingressIsolated {
			att.ingress = aclSetName(p, "ingress")
			out.sets[att.ingress] = out.aclSet(att.ingress, p, pp.ingress, false, keys)
		}
		if pp != nil && pp.egressIsolated {
			att.egress = aclSetName(p, "egress")
			out.sets[att.egress] = out.aclSet(att.egress, p, pp.egress, true, keys)
		}
		if pp != nil {
			for _, r := range slices.Concat(pp.ingress, pp.egress) {
				if r.peer.selected {
					peers[r.peer] = true
				}
			}
		}
		out.pods[podKey(p.namespace, p.name)] = att
	}
	for _, p := range c.pods {
		if !p.addr.IsValid() {
			continue
		}
		var also []string
		if shared != nil {
			also = shared(p.namespace)
		}
		local := p.node == node
		if local && len(also) == 0 {
			continue // its interface's tags resolve it
		}
		matched := false
		for m := range peers {
			if matched = c.peerHas(m, p); matched {
				break
			}
		}
		if !matched {
			continue
		}
		tags := podTags(p, c.namespaces[p.namespace])
		if v, ok := vrf(p.namespace); ok && !local {
			out.podGroup(p, tags, v, false)
		}
		for _, v := range also {
			out.podGroup(p, tags, v, true)
		}
	}
	out.tagKeys = slices.Sorted(maps.Keys(keys))
	out.entries = nil
	return out
}

// podGroup adds the address group standing for pod p in vrf: the pod of
// another node in its own VRF ("k8s.pod/<ns>/<pod>"), or, when other, in
// a VRF sharing routes with the pod's ("k8s.pod/<ns>/<pod>:<vrf>").
func (np *nodePolicy) podGroup(p *policyPod, tags map[string]string, vrf string, other bool) {
	id := p.namespace + "/" + p.name
	if other {
		id += ":" + vrf
	}
	name := groupPrefix + "pod/" + id
	if len(name) > 64 {
		h := sha256.Sum256([]byte(id))
		name = groupPrefix + "pod/" + hex.EncodeToString(h[:12])
	}
	g := &addrGroupT{Name: ygot.String(name)}
	cf := g.GetOrCreateConfig()
	cf.Name = ygot.String(name)
	cf.Description = ygot.String(ownerMark + ": pod " + p.namespace + "/" + p.name + " on " + p.node)
	cf.Prefix = []string{netip.PrefixFrom(p.addr, 32).String()}
	if vrf != "" {
		cf.NetworkInstance = ygot.String(vrf)
	}
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		tcf := g.GetOrCreateTags().GetOrCreateTag(k).GetOrCreateConfig()
		tcf.Key, tcf.Value = ygot.String(k), ygot.String(tags[k])
	}
	np.groups[name] = g
}

// aclSet renders one pod's rules of one direction as a set of ACCEPT
// entries.
func (np *nodePolicy) aclSet(name string, p *policyPod, rules []policyRule, egress bool, keys map[string]bool) *aclSetT {
	s := &aclSetT{Name: ygot.String(name)}
	s.GetOrCreateConfig().Name = ygot.String(name)
	dir := "ingress"
	if egress {
		dir = "egress"
	}
	s.GetOrCreateConfig().Description = ygot.String(fmt.Sprintf("%s: %s of pod %s/%s", ownerMark, dir, p.namespace, p.name))
	s.GetOrCreateAclEntries()
	seq := uint32(0)
	for _, r := range rules {
		for _, peer := range np.peerMatches(r.peer, keys) {
			for _, pm := range r.ports {
				if pm.proto == protoSCTP && pm.lo != 0 {
					// The model matches ports of TCP and UDP only: an SCTP
					// port allows nothing rather than every SCTP port, and
					// the policy gets a Warning Event naming it
					// (policyNotices).
					continue
				}
				seq += 10
				e := s.GetOrCreateAclEntries().GetOrCreateAclEntry(seq)
				cf := e.GetOrCreateConfig()
				cf.SequenceId = ygot.Uint32(seq)
				cf.Description = ygot.String(r.policy)
				cf.Action = gen.IsthmusAcl_AclAction_ACCEPT
				if pm.proto != 0 {
					cf.Protocol = ygot.Uint8(pm.proto)
				}
				if pm.lo != 0 {
					cf.DestinationPort = ygot.Uint16(pm.lo)
					if pm.hi != pm.lo {
						cf.DestinationPortEnd = ygot.Uint16(pm.hi)
					}
				}
				if egress {
					cf.DestinationAddressGroup, cf.DestinationTagSelector = peer.group, peer.tags
				} else {
					cf.SourceAddressGroup, cf.SourceTagSelector = peer.group, peer.tags
				}
			}
		}
	}
	return s
}

// peerEntry is one way to match a peer in an entry: an address group, a
// tag selector, or neither (any address).
type peerEntry struct {
	group *string
	tags  []string
}

// peerMatches renders a peer as entry matches (their union is the peer).
func (np *nodePolicy) peerMatches(m *peerMatch, keys map[string]bool) []peerEntry {
	if e, ok := np.entries[m]; ok {
		return e
	}
	if np.entries == nil {
		np.entries = map[*peerMatch][]peerEntry{}
	}
	e := np.renderPeer(m, keys)
	np.entries[m] = e
	return e
}

// renderPeer renders a peer as entry matches.
func (np *nodePolicy) renderPeer(m *peerMatch, keys map[string]bool) []peerEntry {
	switch {
	case m.any:
		return []peerEntry{{}}
	case m.selected:
		var base []string
		if m.ownNamespace != "" {
			base = []string{nsNameTag + "=" + m.ownNamespace}
			keys[nsNameTag] = true
		}
		alts := [][]string{base}
		if m.ownNamespace == "" {
			alts = selectorTerms(alts, nsTagPrefix, m.namespaces, keys)
		}
		alts = selectorTerms(alts, podTagPrefix, m.pods, keys)
		var out []peerEntry
		for _, terms := range alts {
			if !slices.ContainsFunc(terms, func(t string) bool { return strings.HasPrefix(t, nsNameTag) }) {
				// Only pods (all carry their namespace's name), never an
				// untagged group or interface that a negative term alone
				// would match.
				terms = append(terms, nsNameTag)
				keys[nsNameTag] = true
			}
			slices.Sort(terms)
			out = append(out, peerEntry{tags: slices.Compact(terms)})
		}
		return out
	case m.addrs != nil:
		var prefixes []string
		for _, a := range m.addrs {
			prefixes = append(prefixes, netip.PrefixFrom(a, 32).String())
		}
		return []peerEntry{{group: np.group("pods", prefixes, nil)}}
	}
	if len(m.prefixes) == 0 {
		return nil // nothing left of the block (or an IPv6 one)
	}
	var except []string
	for _, p := range m.except {
		if m.block.Overlaps(p) {
			except = append(except, p.String())
		}
	}
	slices.Sort(except)
	return []peerEntry{{group: np.group("block", []string{m.block.String()}, slices.Compact(except))}}
}

// group adds (or finds) the address group with these prefixes, named by
// its content, and returns its name.
func (np *nodePolicy) group(kind string, prefixes, except []string) *string {
	h := sha256.Sum256([]byte(strings.Join(prefixes, ",") + "|" + strings.Join(except, ",")))
	name := groupPrefix + kind + "/" + hex.EncodeToString(h[:10])
	if _, ok := np.groups[name]; !ok {
		g := &addrGroupT{Name: ygot.String(name)}
		cf := g.GetOrCreateConfig()
		cf.Name = ygot.String(name)
		cf.Description = ygot.String(ownerMark + ": " + kind)
		cf.Prefix = slices.Clone(prefixes)
		cf.Except = slices.Clone(except)
		np.groups[name] = g
	}
	return ygot.String(name)
}

// selectorTerms extends each alternative with sel's terms on tags under
// prefix; In with several values multiplies the alternatives.
func selectorTerms(alts [][]string, prefix string, sel selector, keys map[string]bool) [][]string {
	for _, t := range sel {
		k := tagKey(prefix, t.key)
		keys[k] = true
		var next [][]string
		add := func(terms ...string) {
			for _, a := range alts {
				next = append(next, append(slices.Clone(a), terms...))
			}
		}
		switch t.op {
		case metav1.LabelSelectorOpIn:
			for _, v := range t.values {
				add(k + "=" + v)
			}
		case metav1.LabelSelectorOpNotIn:
			var terms []string
			for _, v := range t.values {
				terms = append(terms, k+"!="+v)
			}
			add(terms...)
		case metav1.LabelSelectorOpExists:
			add(k)
		case metav1.LabelSelectorOpDoesNotExist:
			add("!" + k)
		}
		alts = next
	}
	return alts
}
