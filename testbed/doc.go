// Package testbed builds the Isthmus mission topology — a public-cloud VPC, a
// provider L3 network and a data center — out of Linux network namespaces,
// starts real daemons in them (isthmusd on the hosts, FRR on the data-center
// gateway) and runs end-to-end scenarios against them.
//
// Data flow:
//
//	topology file (YAML) ─► Parse/Validate ─► Plan: ordered iproute2 steps
//	    ─► Up: run each step, recording every namespace in the state file first
//	    ─► Start/StartFRR: long-running processes in a node, logs in the run dir,
//	       pids in the state file
//	    ─► Down: stop recorded processes, kill anything still inside the run's
//	       namespaces, delete the namespaces (veths and bridges go with them)
//
// Everything a run creates lives inside namespaces named "<prefix><node>",
// with a prefix unique to the run ("ist-3fa9c1-"), so parallel runs never
// collide and leftovers of a crashed run are found by prefix. Nothing is
// created in the caller's namespace.
package testbed
