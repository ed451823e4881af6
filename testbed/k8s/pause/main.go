// Command pause is the sandbox ("pause") image of the testbed's Kubernetes
// cluster: it holds a pod's namespaces open and exits on SIGTERM or
// SIGINT. The cluster cannot pull images, so the testbed builds this one.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}
