// Package daemon is isthmusd's side of the CNI API: it chooses a pod's VRF,
// allocates the pod's address from the VRF's pools (package ipam, persisted
// in the core's store), commits the attachment into the configuration tree
// through the core, so that gNMI shows it, BGP exports its /32 and the
// dataplane reconciler attaches the pod's veth, and serves all of this on a
// root-only unix socket.
//
//	plugin ──ADD──► Server.Add ─► /cni/namespaces, else ChooseVRF
//	                           ─► ipam.Allocate (bbolt, one tx with the
//	                              attachment record)
//	                           ─► Core.CommitEntries(/interfaces/interface[host veth])
//	                                 └► reconcilers: BGP export, dataplane attach
//	         ◄── address, gateway, MTU
package daemon
