package netpoltest

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func testFixture() *Fixture {
	i := 0
	return NewFixture(netip.MustParsePrefix("10.9.0.0/24"), func(string, string) netip.Addr {
		i++
		return netip.AddrFrom4([4]byte{10, 9, 0, byte(i)})
	})
}

// TestCasesCover: the table has the 20 policies or more that it promises,
// and every kind of rule the package doc names appears in some case.
func TestCasesCover(t *testing.T) {
	f := testFixture()
	policies := 0
	seen := map[string]bool{}
	for _, tc := range Cases() {
		for _, p := range tc.Policies(f) {
			policies++
			if len(p.Spec.PodSelector.MatchLabels)+len(p.Spec.PodSelector.MatchExpressions) == 0 && len(p.Spec.Ingress)+len(p.Spec.Egress) == 0 {
				seen["default deny"] = true
			}
			for _, r := range p.Spec.Ingress {
				seen["ingress"] = true
				if len(r.From)+len(r.Ports) == 0 {
					seen["allow all"] = true
				}
				notePeers(seen, r.From)
				notePorts(seen, r.Ports)
			}
			for _, r := range p.Spec.Egress {
				seen["egress"] = true
				notePeers(seen, r.To)
				notePorts(seen, r.Ports)
			}
			if len(p.Spec.Ingress) > 0 && len(p.Spec.Egress) > 0 {
				seen["both"] = true
			}
		}
	}
	if policies < 20 {
		t.Errorf("%d policies in the table, want 20 or more", policies)
	}
	for _, k := range []string{"ingress", "egress", "both", "pod selector", "namespace selector", "ipBlock except",
		"numbered port", "named port", "port range", "default deny", "allow all"} {
		if !seen[k] {
			t.Errorf("no case has a %s", k)
		}
	}
}

func notePeers(seen map[string]bool, peers []peer) {
	for _, p := range peers {
		seen["pod selector"] = seen["pod selector"] || p.PodSelector != nil
		seen["namespace selector"] = seen["namespace selector"] || p.NamespaceSelector != nil
		seen["ipBlock except"] = seen["ipBlock except"] || (p.IPBlock != nil && len(p.IPBlock.Except) > 0)
	}
}

func notePorts(seen map[string]bool, ports npPorts) {
	for _, p := range ports {
		switch {
		case p.EndPort != nil:
			seen["port range"] = true
		case p.Port != nil && p.Port.StrVal != "":
			seen["named port"] = true
		case p.Port != nil:
			seen["numbered port"] = true
		}
	}
}

// TestPolicyCasesAreDistinct keeps the truth table honest: every case but
// the empty one and the allow-all ones changes reachability, and no two
// of those have the same truth table.
func TestPolicyCasesAreDistinct(t *testing.T) {
	f := testFixture()
	seen := map[string]string{}
	for _, tc := range Cases() {
		want := f.Expected(tc.Policies(f))
		var b strings.Builder
		keys := slices.Sorted(func(yield func(string) bool) {
			for k := range want {
				if !yield(k) {
					return
				}
			}
		})
		allowed := 0
		for _, k := range keys {
			if want[k] {
				allowed++
				b.WriteString(k + ";")
			}
		}
		if strings.Contains(tc.Name, "allow all") {
			if allowed != len(want) {
				t.Errorf("case %q does not allow everything", tc.Name)
			}
			continue
		}
		if other, dup := seen[b.String()]; dup {
			t.Errorf("case %q has the truth table of %q", tc.Name, other)
		}
		seen[b.String()] = tc.Name
		if tc.Name != "no policy" && allowed == len(want) {
			t.Errorf("case %q allows everything", tc.Name)
		}
	}
}
