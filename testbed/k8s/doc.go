// Package k8s makes the testbed's cloud VPC a real Kubernetes cluster: a
// control plane (etcd, kube-apiserver, kube-scheduler,
// kube-controller-manager) in a namespace of its own on the VPC segment,
// and c1 and c2 as nodes, each running containerd and a kubelet in its
// network namespace with its own state directories, sockets and cgroup
// root, attaching pods through isthmus-cni to the node's isthmusd. Images
// are built locally (pause, podserver) and imported with ctr; nothing is
// pulled. Cluster.Down removes everything the cluster made: pods,
// containers, mounts, cgroups and pod network namespaces.
package k8s
