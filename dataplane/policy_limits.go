package dataplane

import "fmt"

// polMaxPrefixes is the room of each classifier dimension and of the rule
// table, shared by all attachments (POL_MAX_PREFIXES, bpf/policy.h).
const polMaxPrefixes = 1 << 18

// checkLimits refuses a policy the forwarder's node-wide tables cannot
// hold once programmed: more distinct attachments than attachment ids,
// more ACL entries than counter slots, more rules or more prefixes of one
// classifier dimension than their maps hold. Attachments count once per
// distinct content, as SetPolicy writes them. The error names the
// attachment point, in path order, whose attachment goes over (every
// configured pod interface counts, attached yet or not). The headroom
// SetPolicy needs while it changes the policy (new attachments are
// written before the old ones go) and the spares PrunePolicy keeps are
// not counted: they only make room for the next change.
func (in policyIntent) checkLimits() error {
	type point struct {
		path string
		a    *Attachment
	}
	var points []point
	for _, name := range sortedNames(in.Interfaces) {
		ip := in.Interfaces[name]
		base := fmt.Sprintf("/interfaces/interface[name=%s]/acl/config", name)
		if ip.Ingress != nil {
			points = append(points, point{base + "/ingress-acl-set", ip.Ingress})
		}
		if ip.Egress != nil {
			points = append(points, point{base + "/egress-acl-set", ip.Egress})
		}
	}
	for _, name := range sortedNames(in.Tunnel) {
		points = append(points, point{fmt.Sprintf("/network-instances/network-instance[name=%s]/config/tunnel-ingress-acl-set", name), in.Tunnel[name]})
	}
	seen := map[*Attachment]bool{}
	prints := map[string]bool{}
	entries := map[string]bool{}
	rules := 0
	var prefixes [4]int
	for _, p := range points {
		if seen[p.a] {
			continue
		}
		seen[p.a] = true
		fp := p.a.fingerprint()
		if prints[fp] {
			continue
		}
		prints[fp] = true
		if len(prints) > polMaxAttach-1 {
			return policyInvalid(p.path, "%d distinct attachments on this node, at most %d", len(prints), polMaxAttach-1)
		}
		for _, r := range p.a.Rules {
			entries[r.Entry] = true
		}
		if len(entries) > polMaxEntries-1 {
			return policyInvalid(p.path, "%d attached ACL entries on this node, at most %d", len(entries), polMaxEntries-1)
		}
		if rules += len(p.a.Rules); rules > polMaxPrefixes {
			return policyInvalid(p.path, "%d rules in the distinct attachments of this node, at most %d", rules, polMaxPrefixes)
		}
		c, err := compileAttachment(p.a)
		if err != nil {
			return policyInvalid(p.path, "%v", err)
		}
		for i, d := range []*dimension{c.src, c.dst, c.dport, c.sport} {
			if prefixes[i] += len(d.rules); prefixes[i] > polMaxPrefixes {
				dim := [...]string{"source address", "destination address", "destination port", "source port"}[i]
				return policyInvalid(p.path, "%d %s prefixes in the classifiers of this node, at most %d", prefixes[i], dim, polMaxPrefixes)
			}
		}
	}
	return nil
}
