// Command isthmus-testbed builds the Isthmus mission topology out of network
// namespaces, starts FRR in it, shows its status, runs scenarios against it
// and tears it down, also after a crash. See testbed/README.md.
package main
