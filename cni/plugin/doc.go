// Package plugin is the isthmus-cni plugin that container runtimes run:
// ADD, DEL, CHECK, STATUS, GC and VERSION of the CNI 1.1 specification.
//
// The plugin does the namespace work (the veth pair, the pod's address,
// its route through a link-local gateway and a permanent neighbor entry for
// that gateway) and asks isthmusd over its local API for everything that is
// state: the VRF, the address, the MTU, and the attachment committed into the
// configuration tree.
//
//	runtime ─► plugin: create veth (host end "ist<hash>", pod end CNI_IFNAME)
//	               ─► isthmusd Add(network, ids, MACs) ─► address, gateway, MTU
//	               ─► pod netns: MTU, address /32, route to the gateway,
//	                  default route via it, permanent neighbor for it
//	               ◄─ CNI result
package plugin
