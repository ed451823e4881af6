package server

import (
	"context"
	"strconv"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/goyang/pkg/yang"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/isthmus-net/isthmus/nos"
)

// AFT items go straight into the wire form of the sender's batch
// (subscribe_wire.go), without a gpb.Path or gpb.TypedValue per leaf: a
// million entries are six million leaves, and building them as messages
// (each path element with a key map) cost more than everything else the
// subscription does, and its garbage made the collector take CPU from the
// BGP import running beside it. An aftWriter keeps the path of the leaf
// it is at as elements, in cache form (to match queries) and, for the
// item's own part, in wire form, and reuses its buffers from leaf to leaf.

// Field numbers of gnmi.proto used for AFT values, beside those of
// subscribe_wire.go.
const (
	fieldValLeaflist = 8 // TypedValue.leaflist_val
	fieldArrayElem   = 1 // ScalarArray.element
)

// aftElem is one path element of an AFT leaf: a name and, for a list
// entry, its one key.
type aftElem struct{ name, key, val string }

// aftValKind tells the types of AFT leaf values apart.
type aftValKind uint8

const (
	aftString aftValKind = iota
	aftUint
	aftStrings // a leaf-list of strings
	aftUints   // a leaf-list of unsigned integers
)

// aftVal is the value of an AFT leaf.
type aftVal struct {
	kind aftValKind
	str  string
	num  uint64
	strs []string
	nums []uint64
}

// typed returns v as a TypedValue (for the JSON encodings and for tests).
func (v aftVal) typed() *gpb.TypedValue {
	str := func(s string) *gpb.TypedValue { return &gpb.TypedValue{Value: &gpb.TypedValue_StringVal{StringVal: s}} }
	u64 := func(n uint64) *gpb.TypedValue { return &gpb.TypedValue{Value: &gpb.TypedValue_UintVal{UintVal: n}} }
	list := func(els []*gpb.TypedValue) *gpb.TypedValue {
		return &gpb.TypedValue{Value: &gpb.TypedValue_LeaflistVal{LeaflistVal: &gpb.ScalarArray{Element: els}}}
	}
	switch v.kind {
	case aftUint:
		return u64(v.num)
	case aftStrings:
		els := make([]*gpb.TypedValue, 0, len(v.strs))
		for _, s := range v.strs {
			els = append(els, str(s))
		}
		return list(els)
	case aftUints:
		els := make([]*gpb.TypedValue, 0, len(v.nums))
		for _, n := range v.nums {
			els = append(els, u64(n))
		}
		return list(els)
	}
	return str(v.str)
}

// appendAFTValue appends v as the body of a TypedValue.
func appendAFTValue(b []byte, v aftVal) []byte {
	switch v.kind {
	case aftUint:
		b = protowire.AppendTag(b, fieldValUint, protowire.VarintType)
		return protowire.AppendVarint(b, v.num)
	case aftStrings:
		n := 0
		for _, s := range v.strs {
			n += lenField(fieldArrayElem, lenField(fieldValString, len(s)))
		}
		b = appendLenHeader(b, fieldValLeaflist, n)
		for _, s := range v.strs {
			b = appendLenHeader(b, fieldArrayElem, lenField(fieldValString, len(s)))
			b = appendStringField(b, fieldValString, s)
		}
		return b
	case aftUints:
		size := func(n uint64) int { return protowire.SizeTag(fieldValUint) + protowire.SizeVarint(n) }
		total := 0
		for _, n := range v.nums {
			total += lenField(fieldArrayElem, size(n))
		}
		b = appendLenHeader(b, fieldValLeaflist, total)
		for _, n := range v.nums {
			b = appendLenHeader(b, fieldArrayElem, size(n))
			b = protowire.AppendTag(b, fieldValUint, protowire.VarintType)
			b = protowire.AppendVarint(b, n)
		}
		return b
	}
	return appendStringField(b, fieldValString, v.str)
}

// appendElem appends e as a Path.elem field.
func appendElem(b []byte, e aftElem) []byte {
	size := lenField(fieldElemName, len(e.name))
	entry := 0
	if e.key != "" {
		entry = lenField(1, len(e.key)) + lenField(2, len(e.val))
		size += lenField(fieldElemKey, entry)
	}
	b = appendLenHeader(b, fieldPathElem, size)
	b = appendStringField(b, fieldElemName, e.name)
	if e.key != "" {
		b = appendLenHeader(b, fieldElemKey, entry)
		b = appendStringField(b, 1, e.key)
		b = appendStringField(b, 2, e.val)
	}
	return b
}

// aftWriter renders AFT items as the leaves the queries qs match, into a
// sender. It belongs to one subscription's goroutine.
type aftWriter struct {
	snd  *sender
	qs   []query
	root *yang.Entry // the schema, for the leaf types of the JSON encodings

	elems []aftElem // path of the current leaf
	cache []string  // the same in cache form
	item  []byte    // wire form of the item's own elements (its list entry)
	nitem int       // how many of elems those are
	all   bool      // a query matches the whole item
	path  []byte    // wire form of the current leaf's path
	val   []byte    // wire form of its value
	json  []byte
}

func newAFTWriter(snd *sender, qs []query) *aftWriter {
	return &aftWriter{snd: snd, qs: qs, root: snd.root}
}

func (w *aftWriter) push(e aftElem) {
	w.elems = append(w.elems, e)
	w.cache = append(w.cache, e.name)
	if e.key != "" {
		w.cache = append(w.cache, e.val)
	}
}

// pop removes the last n elements.
func (w *aftWriter) pop(n int) {
	for range n {
		e := w.elems[len(w.elems)-1]
		w.elems = w.elems[:len(w.elems)-1]
		w.cache = w.cache[:len(w.cache)-1]
		if e.key != "" {
			w.cache = w.cache[:len(w.cache)-1]
		}
	}
}

// write sends the leaves of one item at timestamp ts, or the delete of
// its list entry when it is gone.
func (w *aftWriter) write(ctx context.Context, ts int64, it nos.AFTItem) error {
	k := it.Key
	w.elems, w.cache = w.elems[:0], w.cache[:0]
	w.push(aftElem{name: "network-instances"})
	w.push(aftElem{name: "network-instance", key: "name", val: k.VRF})
	w.push(aftElem{name: "afts"})
	var keyVal string
	switch k.Kind {
	case nos.AFTEntry:
		keyVal = k.Prefix().String()
		w.push(aftElem{name: "ipv4-unicast"})
		w.push(aftElem{name: "ipv4-entry", key: "prefix", val: keyVal})
	case nos.AFTGroup:
		w.push(aftElem{name: "next-hop-groups"})
		w.push(aftElem{name: "next-hop-group", key: "id", val: strconv.FormatUint(k.ID, 10)})
	default:
		w.push(aftElem{name: "next-hops"})
		w.push(aftElem{name: "next-hop", key: "index", val: strconv.FormatUint(k.ID, 10)})
	}
	w.nitem = len(w.elems)
	w.item = w.item[:0]
	for _, e := range w.elems {
		w.item = appendElem(w.item, e)
	}
	if !it.Present {
		if !overlapsAny(w.qs, w.cache) {
			return nil
		}
		return w.emit(ctx, ts, aftVal{}, true)
	}
	w.all = matchesAny(w.qs, w.cache)
	str := func(s string) aftVal { return aftVal{kind: aftString, str: s} }
	u64 := func(n uint64) aftVal { return aftVal{kind: aftUint, num: n} }
	switch k.Kind {
	case nos.AFTEntry:
		if err := w.leaf(ctx, ts, str(keyVal), "prefix"); err != nil {
			return err
		}
		if err := w.leaf(ctx, ts, str(keyVal), "state", "prefix"); err != nil {
			return err
		}
		if err := w.leaf(ctx, ts, u64(it.Group), "state", "next-hop-group"); err != nil {
			return err
		}
		if err := w.leaf(ctx, ts, str(it.Origin.String()), "state", "origin-protocol"); err != nil {
			return err
		}
		if len(it.RDs) > 0 {
			if err := w.leaf(ctx, ts, aftVal{kind: aftStrings, strs: it.RDs}, "state", "route-distinguisher"); err != nil {
				return err
			}
		}
		if len(it.RTs) > 0 {
			if err := w.leaf(ctx, ts, aftVal{kind: aftStrings, strs: it.RTs}, "state", "route-target"); err != nil {
				return err
			}
		}
	case nos.AFTGroup:
		if err := w.leaf(ctx, ts, u64(k.ID), "id"); err != nil {
			return err
		}
		if err := w.leaf(ctx, ts, u64(k.ID), "state", "id"); err != nil {
			return err
		}
		for _, nh := range it.NextHops {
			w.push(aftElem{name: "next-hops"})
			w.push(aftElem{name: "next-hop", key: "index", val: strconv.FormatUint(nh, 10)})
			err := w.leaf(ctx, ts, u64(nh), "index")
			if err == nil {
				err = w.leaf(ctx, ts, u64(nh), "state", "index")
			}
			if err == nil {
				err = w.leaf(ctx, ts, u64(1), "state", "weight")
			}
			w.pop(2)
			if err != nil {
				return err
			}
		}
	default:
		if err := w.leaf(ctx, ts, u64(k.ID), "index"); err != nil {
			return err
		}
		if err := w.leaf(ctx, ts, u64(k.ID), "state", "index"); err != nil {
			return err
		}
		if it.Interface != "" {
			return w.leaf(ctx, ts, str(it.Interface), "interface-ref", "state", "interface")
		}
		if err := w.leaf(ctx, ts, str(it.Hop.Endpoint.String()), "state", "ip-address"); err != nil {
			return err
		}
		if err := w.leaf(ctx, ts, str(it.Hop.Encap.String()), "state", "encapsulate-header"); err != nil {
			return err
		}
		return w.leaf(ctx, ts, aftVal{kind: aftUints, nums: []uint64{uint64(it.Hop.Label)}}, "state", "pushed-mpls-label-stack")
	}
	return nil
}

// leaf sends the leaf at names below the current path, when a query
// takes it.
func (w *aftWriter) leaf(ctx context.Context, ts int64, v aftVal, names ...string) error {
	for _, n := range names {
		w.push(aftElem{name: n})
	}
	var err error
	if w.all || matchesAny(w.qs, w.cache) {
		err = w.emit(ctx, ts, v, false)
	}
	w.pop(len(names))
	return err
}

// emit sends the current path with value v, or its delete.
func (w *aftWriter) emit(ctx context.Context, ts int64, v aftVal, del bool) error {
	if w.snd.depth != nil && !w.snd.depth.admits(w.gpbPath()) {
		return nil
	}
	w.path = append(w.path[:0], w.item...)
	for _, e := range w.elems[w.nitem:] {
		w.path = appendElem(w.path, e)
	}
	if del {
		return w.snd.addEncoded(ctx, ts, w.path, nil)
	}
	w.val = w.val[:0]
	switch w.snd.encoding {
	case gpb.Encoding_JSON, gpb.Encoding_JSON_IETF:
		ietf := w.snd.encoding == gpb.Encoding_JSON_IETF
		var kind yang.TypeKind
		e := w.root
		for _, el := range w.elems {
			if e = e.Dir[el.name]; e == nil {
				break
			}
		}
		if e != nil && e.Type != nil {
			kind = e.Type.Kind
		}
		var err error
		if w.json, err = appendJSON(w.json[:0], v.typed(), kind, ietf); err != nil {
			return err
		}
		field := protowire.Number(fieldValJSON)
		if ietf {
			field = fieldValJSONIETF
		}
		w.val = protowire.AppendTag(w.val, field, protowire.BytesType)
		w.val = protowire.AppendBytes(w.val, w.json)
	default:
		w.val = appendAFTValue(w.val, v)
	}
	return w.snd.addEncoded(ctx, ts, w.path, w.val)
}

// gpbPath returns the current path as a gpb.Path (for the Depth filter).
func (w *aftWriter) gpbPath() *gpb.Path {
	p := &gpb.Path{Elem: make([]*gpb.PathElem, 0, len(w.elems))}
	for _, e := range w.elems {
		pe := &gpb.PathElem{Name: e.name}
		if e.key != "" {
			pe.Key = map[string]string{e.key: e.val}
		}
		p.Elem = append(p.Elem, pe)
	}
	return p
}
