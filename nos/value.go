package nos

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/goyang/pkg/yang"

	"github.com/isthmus-net/isthmus/gen"
)

// The value a Set carries is checked against the schema before ygot sees
// it, so that every mistake is refused with the gNMI path and a reason in
// the schema's words: null, a module prefix that is not the node's, state
// (config false) data, a fractional number for an integer, a value out of
// range or not matching its type. ygot's own decoding would truncate
// 1.5 to 1, drop state and ignore null and prefixes.

// checkJSONValue decodes a JSON or JSON_IETF value and checks it against
// e, the schema node at path.
func checkJSONValue(path string, e *yang.Entry, js []byte) error {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return invalidf(path, "malformed JSON: %s", jsonProblem(err))
	}
	if dec.More() {
		return invalidf(path, "malformed JSON: more than one value")
	}
	return checkJSON(path, e, v)
}

// jsonProblem says what encoding/json found wrong, without its type names.
func jsonProblem(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s (at byte %d)", se.Error(), se.Offset)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return "the value ends early"
	}
	if errors.Is(err, io.EOF) {
		return "the value is empty"
	}
	return "not JSON"
}

// checkJSON checks the decoded JSON value v against e, the schema node at
// path.
func checkJSON(path string, e *yang.Entry, v any) error {
	if v == nil {
		return invalidf(path, "null is not a value; to remove %s, delete it", schemaName(e))
	}
	switch {
	case e.IsLeaf():
		return checkLeaf(path, e, e.Type, v)
	case e.IsLeafList():
		arr, ok := v.([]any)
		if !ok {
			return invalidf(path, "%s is a leaf-list: want a JSON array, got %s", e.Name, jsonKind(v))
		}
		for _, x := range arr {
			if x == nil {
				return invalidf(path, "null is not a value of %s", e.Name)
			}
			if err := checkLeaf(path, e, e.Type, x); err != nil {
				return err
			}
		}
		return nil
	case e.IsList():
		if arr, ok := v.([]any); ok {
			for _, x := range arr {
				if err := checkEntry(path, e, x); err != nil {
					return err
				}
			}
			return nil
		}
		return checkMembers(path, e, v)
	default:
		return checkMembers(path, e, v)
	}
}

// checkEntry checks one element of a JSON list: an object naming its keys.
func checkEntry(parent string, e *yang.Entry, v any) error {
	obj, ok := v.(map[string]any)
	if !ok {
		return invalidf(parent, "an entry of list %s must be a JSON object, not %s", e.Name, jsonKind(v))
	}
	path := parent + entryKeys(e, obj)
	return checkMembers(path, e, obj)
}

// entryKeys renders the keys of a list entry for messages, from the
// members that carry them.
func entryKeys(e *yang.Entry, obj map[string]any) string {
	var b strings.Builder
	for _, k := range strings.Fields(e.Key) {
		for name, v := range obj {
			if _, n := splitModule(name); n == k {
				fmt.Fprintf(&b, "[%s=%s]", k, clip(fmt.Sprint(v)))
			}
		}
	}
	return b.String()
}

// checkMembers checks a JSON object against container or list entry e.
func checkMembers(path string, e *yang.Entry, v any) error {
	obj, ok := v.(map[string]any)
	if !ok {
		return invalidf(path, "%s takes a JSON object, not %s", schemaName(e), jsonKind(v))
	}
	names := make([]string, 0, len(obj))
	for name := range obj {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, member := range names {
		mod, name := splitModule(member)
		child := e.Dir[name]
		if child == nil {
			return invalidf(path+"/"+clip(name), "unknown element %q under %s", clip(name), schemaName(e))
		}
		cpath := path + "/" + name
		if mod != "" {
			if want := moduleOf(child); want != "" && mod != want {
				return invalidf(cpath, "%s is defined in module %q, not %q", name, want, clip(mod))
			}
		}
		if child.ReadOnly() {
			return invalidf(cpath, "%s is read-only state (config false) and cannot be set", name)
		}
		if err := checkJSON(cpath, child, obj[member]); err != nil {
			return err
		}
	}
	return nil
}

func splitModule(member string) (mod, name string) {
	if m, n, ok := strings.Cut(member, ":"); ok {
		return m, n
	}
	return "", member
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	}
	return fmt.Sprintf("%T", v)
}

// checkLeaf checks one leaf value (a string, a json.Number or a bool) of
// type t; e is the leaf, for leafrefs and messages.
func checkLeaf(path string, e *yang.Entry, t *yang.YangType, v any) error {
	if reason := leafProblem(e, t, v); reason != "" {
		return invalidf(path, "%s", reason)
	}
	return nil
}

// keyValue turns a list key from a gNMI path (always a string) into the
// JSON form of its leaf's type, for leafProblem.
func keyValue(leaf *yang.Entry, s string) any {
	t := leaf.Type
	if t != nil && t.Kind == yang.Yleafref {
		if target := leafrefTarget(leaf, t.Path); target != nil {
			t = target.Type
		}
	}
	if t != nil && (isUnsigned(t.Kind) || isSigned(t.Kind)) {
		return json.Number(s)
	}
	return s
}

// leafProblem returns why v is not a value of type t, or "".
func leafProblem(e *yang.Entry, t *yang.YangType, v any) string {
	if t == nil {
		return ""
	}
	switch k := t.Kind; k {
	case yang.Yint8, yang.Yint16, yang.Yint32, yang.Yint64, yang.Yuint8, yang.Yuint16, yang.Yuint32, yang.Yuint64:
		var text string
		switch x := v.(type) {
		case json.Number:
			text = x.String()
		case string:
			if k != yang.Yint64 && k != yang.Yuint64 {
				return fmt.Sprintf("%s takes a number, not the string %q", e.Name, clip(x))
			}
			text = x // RFC 7951 writes 64-bit integers as strings
		default:
			return fmt.Sprintf("%s takes a whole number, not %s", e.Name, jsonKind(v))
		}
		n, err := yang.ParseInt(text)
		if err != nil {
			// 1.5, 1e3 or a string that is no number at all.
			return fmt.Sprintf("%s is not a whole number (%s is an integer)", clip(text), e.Name)
		}
		r := t.Range
		if len(r) == 0 {
			r = kindRange[k]
		}
		if len(r) > 0 && !r.Contains(yang.YangRange{{Min: n, Max: n}}) {
			return fmt.Sprintf("%s is outside the range %s of %s", clip(text), r, e.Name)
		}
	case yang.Ystring:
		s, ok := v.(string)
		if !ok {
			return fmt.Sprintf("%s takes a string, not %s", e.Name, jsonKind(v))
		}
		if !utf8.ValidString(s) {
			return fmt.Sprintf("%s takes text: the value is not valid UTF-8", e.Name)
		}
		if len(t.Length) > 0 {
			n := uint64(utf8.RuneCountInString(s))
			if !t.Length.Contains(yang.YangRange{{Min: yang.FromUint(n), Max: yang.FromUint(n)}}) {
				return fmt.Sprintf("%s is %d characters long, outside the length %s", e.Name, n, t.Length)
			}
		}
		for _, p := range t.Pattern {
			re := pattern(p)
			if re != nil && !re.MatchString(s) {
				if t.Name != "" && t.Name != "string" {
					return fmt.Sprintf("%q is not a valid %s", clip(s), t.Name)
				}
				return fmt.Sprintf("%q does not match the pattern of %s: %s", clip(s), e.Name, clip(p))
			}
		}
	case yang.Ybool:
		if _, ok := v.(bool); !ok {
			return fmt.Sprintf("%s takes true or false, not %s", e.Name, jsonKind(v))
		}
	case yang.Yenum:
		s, ok := v.(string)
		if !ok {
			return fmt.Sprintf("%s takes one of %s, not %s", e.Name, enumNames(t), jsonKind(v))
		}
		if t.Enum != nil && !t.Enum.IsDefined(s) {
			return fmt.Sprintf("%q is not one of %s", clip(s), enumNames(t))
		}
	case yang.Yunion:
		for _, m := range t.Type {
			if leafProblem(e, m, v) == "" {
				return ""
			}
		}
		name := t.Name
		if name == "" || name == "union" {
			name = e.Name
		}
		return fmt.Sprintf("%s is not a valid %s", clip(fmt.Sprint(v)), name)
	case yang.Yleafref:
		if target := leafrefTarget(e, t.Path); target != nil && target != e {
			return leafProblem(target, target.Type, v)
		}
		if _, ok := v.(map[string]any); ok {
			return fmt.Sprintf("%s takes a single value, not an object", e.Name)
		}
		if _, ok := v.([]any); ok {
			return fmt.Sprintf("%s takes a single value, not an array", e.Name)
		}
	}
	return ""
}

var kindRange = map[yang.TypeKind]yang.YangRange{
	yang.Yint8: yang.Int8Range, yang.Yint16: yang.Int16Range, yang.Yint32: yang.Int32Range, yang.Yint64: yang.Int64Range,
	yang.Yuint8: yang.Uint8Range, yang.Yuint16: yang.Uint16Range, yang.Yuint32: yang.Uint32Range, yang.Yuint64: yang.Uint64Range,
}

func enumNames(t *yang.YangType) string {
	if t.Enum == nil {
		return "its values"
	}
	names := t.Enum.Names()
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// patterns caches compiled YANG patterns (XSD regular expressions, which
// match the whole value).
var patterns sync.Map // string → *regexp.Regexp, nil when Go cannot compile it

func pattern(p string) *regexp.Regexp {
	if re, ok := patterns.Load(p); ok {
		return re.(*regexp.Regexp)
	}
	re, err := regexp.Compile("^(" + p + ")$")
	if err != nil {
		re = nil // ygot's own validation still applies
	}
	patterns.Store(p, re)
	return re
}

// leafrefTarget resolves a leafref path ("../config/name",
// "/ist-ni:network-instances/ist-ni:network-instance/ist-ni:name") from
// leaf e, or returns nil.
func leafrefTarget(e *yang.Entry, path string) *yang.Entry {
	if path == "" {
		return nil
	}
	cur := e
	if strings.HasPrefix(path, "/") {
		for cur.Parent != nil {
			cur = cur.Parent
		}
	}
	for _, step := range strings.Split(strings.Trim(path, "/"), "/") {
		if step == ".." {
			if cur = cur.Parent; cur == nil {
				return nil
			}
			continue
		}
		_, name := splitModule(step)
		if cur = cur.Dir[name]; cur == nil {
			return nil
		}
	}
	if !cur.IsLeaf() && !cur.IsLeafList() {
		return nil
	}
	return cur
}

// checkScalar checks a scalar (not JSON) TypedValue for leaf or leaf-list
// e, and returns it as the value ygot expects: a whole int_val for an
// unsigned leaf becomes uint_val and the other way round.
func checkScalar(path string, e *yang.Entry, val *gpb.TypedValue) (*gpb.TypedValue, error) {
	if !e.IsLeaf() && !e.IsLeafList() {
		return nil, invalidf(path, "%s takes a JSON or JSON_IETF value", schemaName(e))
	}
	if ll := val.GetLeaflistVal(); ll != nil {
		if !e.IsLeafList() {
			return nil, invalidf(path, "%s is a leaf and takes a single value", e.Name)
		}
		out := &gpb.ScalarArray{}
		for _, el := range ll.GetElement() {
			v, err := checkScalar(path, leafOf(e), el)
			if err != nil {
				return nil, err
			}
			out.Element = append(out.Element, v)
		}
		return &gpb.TypedValue{Value: &gpb.TypedValue_LeaflistVal{LeaflistVal: out}}, nil
	}
	t := e.Type
	v, norm, err := scalarOf(e, t, val)
	if err != nil {
		return nil, invalidf(path, "%s", err.Error())
	}
	if reason := leafProblem(e, t, v); reason != "" {
		return nil, invalidf(path, "%s", reason)
	}
	return norm, nil
}

// leafOf returns a copy of leaf-list e that checks one element.
func leafOf(e *yang.Entry) *yang.Entry {
	cp := *e
	cp.ListAttr = nil
	return &cp
}

// scalarOf converts a scalar TypedValue to the JSON form leafProblem
// checks, and normalizes integers to the signedness of t.
func scalarOf(e *yang.Entry, t *yang.YangType, val *gpb.TypedValue) (any, *gpb.TypedValue, error) {
	unsigned := t != nil && isUnsigned(t.Kind)
	signed := t != nil && isSigned(t.Kind)
	switch x := val.GetValue().(type) {
	case *gpb.TypedValue_StringVal:
		return x.StringVal, val, nil
	case *gpb.TypedValue_AsciiVal:
		return x.AsciiVal, &gpb.TypedValue{Value: &gpb.TypedValue_StringVal{StringVal: x.AsciiVal}}, nil
	case *gpb.TypedValue_BoolVal:
		return x.BoolVal, val, nil
	case *gpb.TypedValue_UintVal:
		n := json.Number(strconv.FormatUint(x.UintVal, 10))
		if signed && x.UintVal <= math.MaxInt64 {
			return n, &gpb.TypedValue{Value: &gpb.TypedValue_IntVal{IntVal: int64(x.UintVal)}}, nil
		}
		return n, val, nil
	case *gpb.TypedValue_IntVal:
		n := json.Number(strconv.FormatInt(x.IntVal, 10))
		if unsigned && x.IntVal >= 0 {
			return n, &gpb.TypedValue{Value: &gpb.TypedValue_UintVal{UintVal: uint64(x.IntVal)}}, nil
		}
		return n, val, nil
	case *gpb.TypedValue_DoubleVal:
		return floatValue(e, t, x.DoubleVal, val)
	case *gpb.TypedValue_FloatVal: //nolint:staticcheck // deprecated, still sent
		return floatValue(e, t, float64(x.FloatVal), val)
	case nil:
		return nil, nil, errors.New("no value")
	}
	return nil, nil, fmt.Errorf("%s does not take a %s value", e.Name, valueKind(val))
}

// floatValue accepts a double for an integer leaf only when it is whole.
func floatValue(e *yang.Entry, t *yang.YangType, f float64, val *gpb.TypedValue) (any, *gpb.TypedValue, error) {
	text := strconv.FormatFloat(f, 'f', -1, 64)
	if t == nil || (!isUnsigned(t.Kind) && !isSigned(t.Kind)) {
		return json.Number(text), val, nil
	}
	if f != math.Trunc(f) || math.IsInf(f, 0) || math.IsNaN(f) {
		return nil, nil, fmt.Errorf("%s is not a whole number (%s is an integer)", clip(text), e.Name)
	}
	if isUnsigned(t.Kind) && f >= 0 && f < math.MaxUint64 {
		return json.Number(text), &gpb.TypedValue{Value: &gpb.TypedValue_UintVal{UintVal: uint64(f)}}, nil
	}
	if f >= math.MinInt64 && f < math.MaxInt64 {
		return json.Number(text), &gpb.TypedValue{Value: &gpb.TypedValue_IntVal{IntVal: int64(f)}}, nil
	}
	return nil, nil, fmt.Errorf("%s is outside the range of %s", clip(text), e.Name)
}

func isUnsigned(k yang.TypeKind) bool {
	return k == yang.Yuint8 || k == yang.Yuint16 || k == yang.Yuint32 || k == yang.Yuint64
}

func isSigned(k yang.TypeKind) bool {
	return k == yang.Yint8 || k == yang.Yint16 || k == yang.Yint32 || k == yang.Yint64
}

// valueKind names the kind of a TypedValue in gNMI's words (string_val).
func valueKind(val *gpb.TypedValue) string {
	switch val.GetValue().(type) {
	case *gpb.TypedValue_BytesVal:
		return "bytes_val"
	case *gpb.TypedValue_DecimalVal: //nolint:staticcheck // deprecated, still sent
		return "decimal_val"
	case *gpb.TypedValue_AnyVal:
		return "any_val"
	case *gpb.TypedValue_ProtoBytes:
		return "proto_bytes"
	}
	return "such a"
}

// moduleOf returns the YANG module whose namespace e is in ("" when
// unknown). A node a grouping brings in belongs to the module that uses the
// grouping, whatever prefix the grouping's own module gives it, so the answer
// is kept per schema node, not per prefix.
func moduleOf(e *yang.Entry) string {
	return entryModules()[schemaPlace(e)]
}

// schemaPlace names e by its place in the schema ("/acl/acl-sets/acl-set"),
// which is the same in every copy of the schema the generated code unzips.
func schemaPlace(e *yang.Entry) string {
	var parts []string
	for ; e != nil && e.Parent != nil; e = e.Parent {
		parts = append(parts, e.Name)
	}
	var b strings.Builder
	for i := len(parts) - 1; i >= 0; i-- {
		b.WriteString("/")
		b.WriteString(parts[i])
	}
	return b.String()
}

// entryModules maps every node of the schema to the module that instantiates
// it, read once from the generated structs, whose fields carry the module of
// the node at that place in the tree (RFC 7951 section 4).
var entryModules = sync.OnceValue(func() map[string]string {
	out := map[string]string{}
	s, err := gen.Schema()
	if err != nil {
		return out
	}
	var walk func(t reflect.Type, e *yang.Entry)
	walk = func(t reflect.Type, e *yang.Entry) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Map || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || e == nil {
			return
		}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			path, mod := f.Tag.Get("path"), f.Tag.Get("module")
			if path == "" || strings.Contains(path, "/") || strings.Contains(mod, "/") {
				continue
			}
			child := e.Dir[path]
			if child == nil {
				continue
			}
			place := schemaPlace(child)
			if _, done := out[place]; done {
				continue
			}
			if mod != "" {
				out[place] = mod
			}
			walk(f.Type, child)
		}
	}
	walk(reflect.TypeOf(gen.Device{}), s.RootSchema())
	return out
})

// clip shortens a value echoed in a message to at most about 100 bytes.
func clip(s string) string {
	const most = 100
	if len(s) <= most {
		return s
	}
	cut := most
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + fmt.Sprintf("…(%d bytes)", len(s))
}
