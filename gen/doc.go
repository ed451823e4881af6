// Package gen holds the Go structs that ygot generates from the YANG modules
// in yang/: the whole Isthmus schema rooted at Device, with config and state
// containers kept apart, the enumerations, the compressed schema used for
// validation and unmarshalling, and the model data reported by gNMI
// Capabilities. Nothing here is written by hand except this file and the
// staleness test; run `make gen` after editing yang/.
package gen

//go:generate ./generate.sh
//go:generate go run ../tools/pathdoc -o ../docs/paths.md
