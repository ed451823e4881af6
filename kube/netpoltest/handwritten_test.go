package netpoltest

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// The matrices below are written by hand from the NetworkPolicy API's
// definitions, not produced by the reference evaluator, so that an error
// the evaluator shares with the controller cannot pass unnoticed.
//
// A matrix has one row per source pod and one column per destination pod,
// both in the order of matrixPods. Each cell is four characters, one per
// probe in the order TCP/80, TCP/81, UDP/80, UDP/81: 1 allowed, 0 denied;
// "----" is the pod to itself, which is never probed.
var matrixPods = []string{"x/a", "x/b", "x/c", "y/a", "y/b", "y/c", "z/a", "z/b", "z/c"}

// handMatrices maps a case name of Cases to its hand-written matrix.
var handMatrices = map[string][]string{
	// Every pod of x is isolated for ingress with no rule: nothing reaches
	// x, not even from x; everything else is open.
	"default deny ingress": {
		//        x/a  x/b  x/c  y/a  y/b  y/c  z/a  z/b  z/c
		/* x/a */ "---- 0000 0000 1111 1111 1111 1111 1111 1111",
		/* x/b */ "0000 ---- 0000 1111 1111 1111 1111 1111 1111",
		/* x/c */ "0000 0000 ---- 1111 1111 1111 1111 1111 1111",
		/* y/a */ "0000 0000 0000 ---- 1111 1111 1111 1111 1111",
		/* y/b */ "0000 0000 0000 1111 ---- 1111 1111 1111 1111",
		/* y/c */ "0000 0000 0000 1111 1111 ---- 1111 1111 1111",
		/* z/a */ "0000 0000 0000 1111 1111 1111 ---- 1111 1111",
		/* z/b */ "0000 0000 0000 1111 1111 1111 1111 ---- 1111",
		/* z/c */ "0000 0000 0000 1111 1111 1111 1111 1111 ----",
	},
	// One peer with both selectors is their AND: x/a admits only pods
	// labelled pod=b in namespaces y and z (not x/b: x is not In y,z).
	"namespace and pod selector in one peer (In)": {
		//        x/a  x/b  x/c  y/a  y/b  y/c  z/a  z/b  z/c
		/* x/a */ "---- 1111 1111 1111 1111 1111 1111 1111 1111",
		/* x/b */ "0000 ---- 1111 1111 1111 1111 1111 1111 1111",
		/* x/c */ "0000 1111 ---- 1111 1111 1111 1111 1111 1111",
		/* y/a */ "0000 1111 1111 ---- 1111 1111 1111 1111 1111",
		/* y/b */ "1111 1111 1111 1111 ---- 1111 1111 1111 1111",
		/* y/c */ "0000 1111 1111 1111 1111 ---- 1111 1111 1111",
		/* z/a */ "0000 1111 1111 1111 1111 1111 ---- 1111 1111",
		/* z/b */ "1111 1111 1111 1111 1111 1111 1111 ---- 1111",
		/* z/c */ "0000 1111 1111 1111 1111 1111 1111 1111 ----",
	},
	// Two peers are their OR: x/a admits pod=b of its own namespace (a
	// pod selector alone means the policy's namespace) and every pod of y.
	"pod selector or namespace selector": {
		//        x/a  x/b  x/c  y/a  y/b  y/c  z/a  z/b  z/c
		/* x/a */ "---- 1111 1111 1111 1111 1111 1111 1111 1111",
		/* x/b */ "1111 ---- 1111 1111 1111 1111 1111 1111 1111",
		/* x/c */ "0000 1111 ---- 1111 1111 1111 1111 1111 1111",
		/* y/a */ "1111 1111 1111 ---- 1111 1111 1111 1111 1111",
		/* y/b */ "1111 1111 1111 1111 ---- 1111 1111 1111 1111",
		/* y/c */ "1111 1111 1111 1111 1111 ---- 1111 1111 1111",
		/* z/a */ "0000 1111 1111 1111 1111 1111 ---- 1111 1111",
		/* z/b */ "0000 1111 1111 1111 1111 1111 1111 ---- 1111",
		/* z/c */ "0000 1111 1111 1111 1111 1111 1111 1111 ----",
	},
	// x/a admits the block holding every pod except y/b and z/c.
	"ipBlock with except (ingress)": {
		//        x/a  x/b  x/c  y/a  y/b  y/c  z/a  z/b  z/c
		/* x/a */ "---- 1111 1111 1111 1111 1111 1111 1111 1111",
		/* x/b */ "1111 ---- 1111 1111 1111 1111 1111 1111 1111",
		/* x/c */ "1111 1111 ---- 1111 1111 1111 1111 1111 1111",
		/* y/a */ "1111 1111 1111 ---- 1111 1111 1111 1111 1111",
		/* y/b */ "0000 1111 1111 1111 ---- 1111 1111 1111 1111",
		/* y/c */ "1111 1111 1111 1111 1111 ---- 1111 1111 1111",
		/* z/a */ "1111 1111 1111 1111 1111 1111 ---- 1111 1111",
		/* z/b */ "1111 1111 1111 1111 1111 1111 1111 ---- 1111",
		/* z/c */ "0000 1111 1111 1111 1111 1111 1111 1111 ----",
	},
	// x/a may only open connections to pods of y on their TCP port named
	// "http": 80 on y/a and y/b, 81 on y/c. Only x/a's row changes.
	"egress to a named port of pods in another namespace": {
		//        x/a  x/b  x/c  y/a  y/b  y/c  z/a  z/b  z/c
		/* x/a */ "---- 0000 0000 1000 1000 0100 0000 0000 0000",
		/* x/b */ "1111 ---- 1111 1111 1111 1111 1111 1111 1111",
		/* x/c */ "1111 1111 ---- 1111 1111 1111 1111 1111 1111",
		/* y/a */ "1111 1111 1111 ---- 1111 1111 1111 1111 1111",
		/* y/b */ "1111 1111 1111 1111 ---- 1111 1111 1111 1111",
		/* y/c */ "1111 1111 1111 1111 1111 ---- 1111 1111 1111",
		/* z/a */ "1111 1111 1111 1111 1111 1111 ---- 1111 1111",
		/* z/b */ "1111 1111 1111 1111 1111 1111 1111 ---- 1111",
		/* z/c */ "1111 1111 1111 1111 1111 1111 1111 1111 ----",
	},
	// Every pod of y admits TCP 80-81 (endPort inclusive: both probed
	// ports) and UDP 81-100 (starting at 81: UDP/80 denied, UDP/81 allowed).
	"port ranges": {
		//        x/a  x/b  x/c  y/a  y/b  y/c  z/a  z/b  z/c
		/* x/a */ "---- 1111 1111 1101 1101 1101 1111 1111 1111",
		/* x/b */ "1111 ---- 1111 1101 1101 1101 1111 1111 1111",
		/* x/c */ "1111 1111 ---- 1101 1101 1101 1111 1111 1111",
		/* y/a */ "1111 1111 1111 ---- 1101 1101 1111 1111 1111",
		/* y/b */ "1111 1111 1111 1101 ---- 1101 1111 1111 1111",
		/* y/c */ "1111 1111 1111 1101 1101 ---- 1111 1111 1111",
		/* z/a */ "1111 1111 1111 1101 1101 1101 ---- 1111 1111",
		/* z/b */ "1111 1111 1111 1101 1101 1101 1111 ---- 1111",
		/* z/c */ "1111 1111 1111 1101 1101 1101 1111 1111 ----",
	},
}

// parseMatrix turns a hand-written matrix into the form of
// Fixture.Expected: Key(src, dst, probe) → allowed.
func parseMatrix(f *Fixture, rows []string) (map[string]bool, error) {
	if len(rows) != len(matrixPods) {
		return nil, fmt.Errorf("matrix has %d rows, want %d", len(rows), len(matrixPods))
	}
	pod := func(s string) *corev1.Pod {
		ns, name, _ := strings.Cut(s, "/")
		return f.Pod(ns, name)
	}
	out := map[string]bool{}
	for i, row := range rows {
		cells := strings.Fields(row)
		if len(cells) != len(matrixPods) {
			return nil, fmt.Errorf("row %s has %d cells, want %d", matrixPods[i], len(cells), len(matrixPods))
		}
		for j, cell := range cells {
			if i == j {
				if cell != "----" {
					return nil, fmt.Errorf("row %s: cell to itself is %q, want ----", matrixPods[i], cell)
				}
				continue
			}
			if len(cell) != len(Probes) || strings.Trim(cell, "01") != "" {
				return nil, fmt.Errorf("row %s column %s: cell %q is not %d of 0 and 1", matrixPods[i], matrixPods[j], cell, len(Probes))
			}
			for k, pr := range Probes {
				out[Key(pod(matrixPods[i]), pod(matrixPods[j]), pr)] = cell[k] == '1'
			}
		}
	}
	return out, nil
}

// TestReferenceMatchesHandMatrices: the reference evaluator gives exactly
// the hand-written matrix of each case that has one.
func TestReferenceMatchesHandMatrices(t *testing.T) {
	f := testFixture()
	found := 0
	for _, tc := range Cases() {
		rows, ok := handMatrices[tc.Name]
		if !ok {
			continue
		}
		found++
		t.Run(tc.Name, func(t *testing.T) {
			want, err := parseMatrix(f, rows)
			if err != nil {
				t.Fatal(err)
			}
			got := f.Expected(tc.Policies(f))
			if len(got) != len(want) {
				t.Fatalf("evaluator gives %d probes, matrix has %d", len(got), len(want))
			}
			bad := 0
			for k, w := range want {
				g, ok := got[k]
				if !ok {
					t.Errorf("evaluator has no probe %s", k)
					continue
				}
				if g != w {
					bad++
					if bad <= 10 {
						t.Errorf("%s: evaluator says allowed=%v, hand-written matrix %v", k, g, w)
					}
				}
			}
			if bad > 10 {
				t.Errorf("... %d mismatches in all", bad)
			}
		})
	}
	if found != len(handMatrices) {
		t.Errorf("%d hand-written matrices name a case of Cases, want all %d", found, len(handMatrices))
	}
}
