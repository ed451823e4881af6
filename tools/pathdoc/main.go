// Command pathdoc writes the gNMI path reference (docs/paths.md) from the
// compiled schema in gen/, so the reference always matches the models.
//
//	go run ./tools/pathdoc -o docs/paths.md
package main

import (
	"bytes"
	"flag"
	"fmt"
	"log"
	"os"
	"reflect"
	"sort"
	"strings"

	"github.com/openconfig/goyang/pkg/yang"

	"github.com/isthmus-net/isthmus/gen"
)

func main() {
	out := flag.String("o", "docs/paths.md", "file to write")
	flag.Parse()
	b, err := render()
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(*out, b, 0o644); err != nil {
		log.Fatal(err)
	}
}

func render() ([]byte, error) {
	tree, err := gen.UnzipSchema()
	if err != nil {
		return nil, fmt.Errorf("unzip schema: %w", err)
	}
	root := tree["Device"]
	if root == nil {
		return nil, fmt.Errorf("schema has no Device root")
	}
	modules := map[string]string{} // top-level container → module, from the struct tags
	rt := reflect.TypeOf(gen.Device{})
	for i := 0; i < rt.NumField(); i++ {
		modules[rt.Field(i).Tag.Get("path")] = rt.Field(i).Tag.Get("module")
	}
	var buf bytes.Buffer
	buf.WriteString("# gNMI path reference\n\n")
	buf.WriteString("Generated from the YANG modules in `yang/` by `make gen`; do not edit.\n")
	buf.WriteString("`rw` leaves are configuration (Set, Get CONFIG); `ro` leaves are state\n")
	buf.WriteString("(Get STATE, Subscribe). List keys are shown in brackets.\n")
	for _, name := range sortedDir(root) {
		top := root.Dir[name]
		fmt.Fprintf(&buf, "\n## /%s\n\n", top.Name)
		fmt.Fprintf(&buf, "Module `%s`. %s\n\n", modules[top.Name], oneLine(top.Description))
		buf.WriteString("| path | type | access | description |\n| --- | --- | --- | --- |\n")
		walk(&buf, top, "/"+top.Name)
	}
	return buf.Bytes(), nil
}

func walk(buf *bytes.Buffer, e *yang.Entry, path string) {
	for _, name := range sortedDir(e) {
		c := e.Dir[name]
		p := path + "/" + c.Name
		if c.IsList() {
			var keys []string
			for _, k := range strings.Fields(c.Key) {
				keys = append(keys, k+"=*")
			}
			p += "[" + strings.Join(keys, "][") + "]"
		}
		if c.IsDir() {
			walk(buf, c, p)
			continue
		}
		access := "rw"
		if c.ReadOnly() {
			access = "ro"
		}
		typ := ""
		if c.Type != nil {
			typ = typeName(c.Type)
		}
		if c.ListAttr != nil {
			typ = "list of " + typ
		}
		fmt.Fprintf(buf, "| `%s` | %s | %s | %s |\n", p, typ, access, oneLine(c.Description))
	}
}

func typeName(t *yang.YangType) string {
	switch t.Kind {
	case yang.Yenum:
		return "enum: " + strings.Join(t.Enum.Names(), ", ")
	case yang.Yleafref:
		return "reference to `" + t.Path + "`"
	}
	if t.Name != t.Kind.String() {
		return t.Name + " (" + t.Kind.String() + ")"
	}
	return t.Name
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	return strings.ReplaceAll(s, "|", "\\|")
}

func sortedDir(e *yang.Entry) []string {
	names := make([]string, 0, len(e.Dir))
	for n := range e.Dir {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
