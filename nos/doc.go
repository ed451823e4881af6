// Package nos is the transactional core of Isthmus: it owns the running
// configuration tree, validates and commits candidate trees, persists every
// commit with its revision, drives the reconcilers, keeps the operational
// state tree that reconcilers write, and feeds the telemetry cache that gNMI
// Get and Subscribe read.
//
// Data flow of a commit:
//
//	edits ─► candidate = copy(running) + edits ─► schema + semantic validation
//	      ─► every reconciler's Validate ─► persist (revision N)
//	      ─► every reconciler's Apply(old, new) ─► publish to telemetry
//	      (any failure: the reconcilers already applied get Apply(new, old),
//	       the store goes back to revision N-1, running stays old)
//
// Besides configuration, the core carries two shared tables that let
// reconcilers cooperate without importing each other: the FIB (routes that
// the control plane learnt, which the dataplane programs) and the label
// allocator (VPN labels that BGP advertises and the dataplane decapsulates).
package nos
