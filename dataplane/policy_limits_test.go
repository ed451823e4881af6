package dataplane

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/isthmus-net/isthmus/nos"
)

// limitIntent is a policy whose pod interfaces p00000, p00001, … have the
// ingress attachments as.
func limitIntent(as []*Attachment) policyIntent {
	in := policyIntent{Interfaces: map[string]InterfacePolicy{}, Tunnel: map[string]*Attachment{}}
	for i, a := range as {
		in.Interfaces[fmt.Sprintf("p%05d", i)] = InterfacePolicy{Ingress: a}
	}
	return in
}

// wantLimit checks that err is InvalidArgument at the ingress attachment
// of pod interface p<index> and says what.
func wantLimit(t *testing.T, err error, index int, what string) {
	t.Helper()
	path := fmt.Sprintf("/interfaces/interface[name=p%05d]/acl/config/ingress-acl-set", index)
	var pe *nos.PathError
	if !errors.As(err, &pe) || !errors.Is(err, nos.ErrInvalid) || pe.Path != path || !strings.Contains(err.Error(), what) {
		t.Fatalf("err = %v, want invalid at %s: %s", err, path, what)
	}
}

// TestPolicyNodeLimits: a policy over one of the node-wide limits of the
// forwarder's tables is refused naming the attachment point that goes
// over, and one at the limit passes: attachment ids (distinct attachments
// count, points sharing one do not), ACL entries with counters, rules,
// prefixes of one classifier dimension.
func TestPolicyNodeLimits(t *testing.T) {
	t.Run("attachments", func(t *testing.T) {
		as := make([]*Attachment, polMaxAttach)
		for i := range as {
			as[i] = &Attachment{Rules: []PolicyRule{{Protocol: 6, DestinationPorts: PortRange{uint16(i + 1), uint16(i + 1)}, Action: PolicyAccept, Entry: "web/10"}}}
		}
		// The same content twice is one attachment: the limit, and one
		// more point with a copy of the first attachment, pass.
		shared := limitIntent(append(as[:polMaxAttach-1:polMaxAttach-1], &Attachment{Rules: as[0].Rules}))
		if err := shared.checkLimits(); err != nil {
			t.Fatalf("%d distinct attachments and a copy: %v", polMaxAttach-1, err)
		}
		if err := limitIntent(as[:polMaxAttach-1]).checkLimits(); err != nil {
			t.Fatalf("%d attachments: %v", polMaxAttach-1, err)
		}
		wantLimit(t, limitIntent(as).checkLimits(), polMaxAttach-1, fmt.Sprintf("%d distinct attachments on this node, at most %d", polMaxAttach, polMaxAttach-1))
	})
	// big is n attachments of PolicyMaxRules rules, each its own entry
	// (entries true) or all of them one entry, each attachment with a
	// port of its own.
	big := func(n int, entries bool) []*Attachment {
		as := make([]*Attachment, n)
		for i := range as {
			rules := make([]PolicyRule, PolicyMaxRules)
			for j := range rules {
				rules[j] = PolicyRule{Protocol: 6, DestinationPorts: PortRange{uint16(i + 1), uint16(i + 1)}, Action: PolicyAccept, Entry: "all/1"}
				if entries {
					rules[j].Entry = fmt.Sprintf("s%d/%d", i, j)
				}
			}
			as[i] = &Attachment{Rules: rules}
		}
		return as
	}
	t.Run("entries", func(t *testing.T) {
		as := big(4, true)
		as[3].Rules = as[3].Rules[:PolicyMaxRules-1]
		if err := limitIntent(as).checkLimits(); err != nil {
			t.Fatalf("%d entries: %v", polMaxEntries-1, err)
		}
		wantLimit(t, limitIntent(big(4, true)).checkLimits(), 3, fmt.Sprintf("%d attached ACL entries on this node, at most %d", polMaxEntries, polMaxEntries-1))
	})
	t.Run("rules", func(t *testing.T) {
		n := polMaxPrefixes / PolicyMaxRules
		if err := limitIntent(big(n, false)).checkLimits(); err != nil {
			t.Fatalf("%d rules: %v", polMaxPrefixes, err)
		}
		wantLimit(t, limitIntent(big(n+1, false)).checkLimits(), n, fmt.Sprintf("%d rules in the distinct attachments of this node, at most %d", polMaxPrefixes+PolicyMaxRules, polMaxPrefixes))
	})
	t.Run("prefixes", func(t *testing.T) {
		// One rule naming polMaxPrefixes-1 destinations, plus the
		// any-destination prefix of a second attachment's rule, fit; one
		// destination more does not.
		dsts := make([]netip.Prefix, polMaxPrefixes)
		for i := range dsts {
			dsts[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
		}
		many := func(n int) *Attachment {
			return &Attachment{Rules: []PolicyRule{{Destinations: dsts[:n], Action: PolicyAccept, Entry: "dc/10"}}}
		}
		anyDst := &Attachment{Rules: []PolicyRule{{Protocol: 17, Action: PolicyAccept, Entry: "dns/10"}}}
		if err := limitIntent([]*Attachment{many(polMaxPrefixes - 1), anyDst}).checkLimits(); err != nil {
			t.Fatalf("%d destination prefixes: %v", polMaxPrefixes, err)
		}
		wantLimit(t, limitIntent([]*Attachment{many(polMaxPrefixes), anyDst}).checkLimits(), 1,
			fmt.Sprintf("%d destination address prefixes in the classifiers of this node, at most %d", polMaxPrefixes+1, polMaxPrefixes))
	})
}

// BenchmarkPolicyCheckLimits is what the node-wide limits add to every
// Validate of a policy of 10,000 rules (one attachment shared by 100 pod
// interfaces, one more attachment of 10 rules each).
func BenchmarkPolicyCheckLimits(b *testing.B) {
	rules := make([]PolicyRule, 10000)
	for i := range rules {
		rules[i] = PolicyRule{
			Sources:          []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24)},
			Protocol:         6,
			DestinationPorts: PortRange{uint16(1000 + i%100), uint16(1000 + i%100)},
			Action:           PolicyAccept,
			Entry:            fmt.Sprintf("big/%d", i),
		}
	}
	shared := &Attachment{Rules: rules}
	as := make([]*Attachment, 0, 200)
	for i := range 100 {
		as = append(as, shared, &Attachment{Rules: rules[i*10 : i*10+10]})
	}
	in := limitIntent(as)
	b.ResetTimer()
	for b.Loop() {
		if err := in.checkLimits(); err != nil {
			b.Fatal(err)
		}
	}
}
