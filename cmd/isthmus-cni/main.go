// Command isthmus-cni is the CNI plugin that attaches pods to Isthmus VRFs;
// container runtimes run it, and it asks isthmusd over its local socket.
package main

import "github.com/isthmus-net/isthmus/cni/plugin"

func main() { plugin.Main() }
