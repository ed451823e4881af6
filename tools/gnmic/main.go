// Command gnmic is the gnmic gNMI client at the version pinned in this
// module's go.mod. The tests of the gNMI server build and drive it:
//
//	cd tools/gnmic && go build -o gnmic .
package main

import "github.com/openconfig/gnmic/pkg/cmd"

func main() { cmd.Execute() }
