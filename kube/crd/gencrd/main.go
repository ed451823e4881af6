// Command gencrd writes the VirtualNetwork CRD manifest (package crd) to a file.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/isthmus-net/isthmus/kube/crd"
)

func main() {
	out := flag.String("o", "", "output file")
	flag.Parse()
	b, err := crd.YAML()
	if err == nil {
		err = os.WriteFile(*out, b, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gencrd:", err)
		os.Exit(1)
	}
}
