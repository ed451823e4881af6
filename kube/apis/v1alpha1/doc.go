// Package v1alpha1 holds the isthmus.dev/v1alpha1 API: the VirtualNetwork
// custom resource (a tenant network stretched over the cluster's nodes as one
// VRF per node) and the Namespace label and annotation that map namespaces
// onto networks.
package v1alpha1
