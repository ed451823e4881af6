// Command etcd is etcd's server, built from its Go module at the version
// kube-apiserver v1.37.2 pins, for the controller's tests and benchmarks.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
