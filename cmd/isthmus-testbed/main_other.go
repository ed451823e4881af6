//go:build !linux

package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "isthmus-testbed: network namespaces need Linux")
	os.Exit(1)
}
