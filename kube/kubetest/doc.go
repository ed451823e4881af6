// Package kubetest starts what the controller's end-to-end tests and
// benchmarks run against: a real etcd and kube-apiserver v1.37.2 on
// loopback (built from the Go module proxy by tools/kube/build.sh into a
// cache keyed by tools/kube/go.sum), the VirtualNetwork CRD, and real
// isthmusd processes, each in a network namespace of its own reached over a
// veth pair, playing the cluster's nodes.
//
// A missing binary skips the test, or fails it under CI=true (CI builds
// them with `make kube-bins`, a dependency of `make test`).
package kubetest
