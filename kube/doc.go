// Package kube is the Isthmus controller for Kubernetes. It watches Nodes,
// Namespaces, Pods, Services, EndpointSlices, NetworkPolicies and
// VirtualNetworks (package apis/v1alpha1) with client-go informers, renders
// each node's intended configuration (a VRF per network with a per-node
// route distinguisher and a per-node block of pod addresses, the Services
// of its namespaces as load-balanced services, and BGP neighbors to the
// route reflectors), and pushes it to each node's isthmusd
// with gNMI Set: only the subtree it owns, only what changed, with retries
// and backoff. Two replicas elect a leader on a coordination Lease; only
// the leader configures nodes and writes status.
package kube
