// Package netpoltest is the NetworkPolicy truth table that the
// controller's tests and the testbed's Kubernetes cluster check Isthmus
// against: a cluster of namespaces x, y and z with pods a, b and c in
// each, every pod serving TCP and UDP on ports 80 and 81 (Fixture); the
// cases, each a set of NetworkPolicies covering ingress, egress, both,
// pod and namespace selectors, ipBlock with except, named and numbered
// ports, port ranges, default deny and allow-all (Cases); and a reference
// evaluator that says from the API's definitions alone which connections
// a set of policies allows (Cluster), sharing no code with the
// controller's translation. Some cases also have a matrix written by hand
// from the API's definitions (handwritten_test.go) that the reference
// evaluator must reproduce exactly, so that the evaluator is not its own
// only judge.
//
//	f := netpoltest.NewFixture(block, addrOf)
//	for _, tc := range netpoltest.Cases() {
//		pols := tc.Policies(f)
//		want := f.Expected(pols) // Key(src, dst, probe) → allowed
//		// apply pols, probe every ordered pair of pods, compare with want
//	}
package netpoltest
