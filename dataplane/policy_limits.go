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
	var points []limitPoint
	for _, name := range sortedNames(in.Interfaces) {
		ip := in.Interfaces[name]
		base := fmt.Sprintf("/interfaces/interface[name=%s]/acl/config", name)
		if ip.Ingress != nil {
			points = append(points, limitPoint{base + "/ingress-acl-set", ip.Ingress})
		}
		if ip.Egress != nil {
			points = append(points, limitPoint{base + "/egress-acl-set", ip.Egress})
		}
	}
	for _, name := range sortedNames(in.Tunnel) {
		points = append(points, limitPoint{fmt.Sprintf("/network-instances/network-instance[name=%s]/config/tunnel-ingress-acl-set", name), in.Tunnel[name]})
	}
	// Attachments distinct by pointer first (points share the compiler's
	// attachments): never fewer than those distinct by content, which
	// SetPolicy writes, and far cheaper to find. Only a policy over a
	// limit that way is counted again by content.
	var byPointer []limitPoint
	seen := map[*Attachment]bool{}
	for _, p := range points {
		if !seen[p.a] {
			seen[p.a] = true
			byPointer = append(byPointer, p)
		}
	}
	if countLimits(byPointer) == nil {
		return nil
	}
	var byContent []limitPoint
	prints := map[string]bool{}
	for _, p := range byPointer {
		if fp := p.a.fingerprint(); !prints[fp] {
			prints[fp] = true
			byContent = append(byContent, p)
		}
	}
	return countLimits(byContent)
}

// limitPoint is an attachment point: its path and its attachment.
type limitPoint struct {
	path string
	a    *Attachment
}

// countLimits checks distinct (attachments, each with the first point
// that uses it, in path order) against the node-wide limits.
func countLimits(distinct []limitPoint) error {
	entries := map[string]bool{}
	rules := 0
	var bound [4]int // more prefixes per dimension than compiling gives
	for i, p := range distinct {
		if i+1 > polMaxAttach-1 {
			return policyInvalid(p.path, "%d distinct attachments on this node, at most %d", i+1, polMaxAttach-1)
		}
		for _, r := range p.a.Rules {
			entries[r.Entry] = true
			bound[0] += max(1, len(r.Sources))
			bound[1] += max(1, len(r.Destinations))
			bound[2] += portBound(r.DestinationPorts)
			bound[3] += portBound(r.SourcePorts)
		}
		if len(entries) > polMaxEntries-1 {
			return policyInvalid(p.path, "%d attached ACL entries on this node, at most %d", len(entries), polMaxEntries-1)
		}
		if rules += len(p.a.Rules); rules > polMaxPrefixes {
			return policyInvalid(p.path, "%d rules in the distinct attachments of this node, at most %d", rules, polMaxPrefixes)
		}
	}
	if max(bound[0], bound[1], bound[2], bound[3]) <= polMaxPrefixes {
		return nil // compiling would find no more: spare the commit its cost
	}
	var prefixes [4]int
	for _, p := range distinct {
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

// portBound is at least the number of classifier prefixes a port range
// becomes (an aligned split of the 16-bit space has at most 30 blocks).
func portBound(r PortRange) int {
	if r.Any() || r.Last <= r.First {
		return 1
	}
	return 30
}
