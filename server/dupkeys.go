package server

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/goyang/pkg/yang"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// checkDuplicateKeys refuses a JSON or JSON_IETF value that lists one key
// twice in a YANG list, which unmarshalling would silently collapse into
// one entry. p is the full path the value is for.
func checkDuplicateKeys(root *yang.Entry, p *gpb.Path, val *gpb.TypedValue) error {
	raw := val.GetJsonIetfVal()
	if raw == nil {
		raw = val.GetJsonVal()
	}
	if raw == nil {
		return nil
	}
	e := root
	for _, el := range p.GetElem() {
		if e = e.Dir[el.GetName()]; e == nil {
			return nil // not in the schema: the core names the path
		}
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil // the core reports malformed JSON with its path
	}
	if dup := findDuplicateKey(e, v); dup != "" {
		return status.Errorf(codes.InvalidArgument, "%s: duplicate list entry %s in the value", pathString(p), dup)
	}
	return nil
}

// findDuplicateKey walks v, a decoded JSON value for schema node e, and
// describes the first list entry whose key appears twice, or returns "".
func findDuplicateKey(e *yang.Entry, v any) string {
	switch v := v.(type) {
	case map[string]any:
		names := make([]string, 0, len(v))
		for k := range v {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			name := k
			if _, rest, ok := strings.Cut(k, ":"); ok {
				name = rest
			}
			c := e.Dir[name]
			if c == nil {
				continue
			}
			if dup := findDuplicateKey(c, v[k]); dup != "" {
				return dup
			}
		}
	case []any:
		if !e.IsList() {
			return ""
		}
		keys := strings.Fields(e.Key)
		seen := map[string]bool{}
		for _, item := range v {
			obj, ok := item.(map[string]any)
			if !ok {
				continue
			}
			parts := make([]string, 0, len(keys))
			for _, k := range keys {
				parts = append(parts, fmt.Sprintf("[%s=%v]", k, memberValue(obj, k)))
			}
			id := e.Name + strings.Join(parts, "")
			if seen[id] {
				return id
			}
			seen[id] = true
			if dup := findDuplicateKey(e, obj); dup != "" {
				return dup
			}
		}
	}
	return ""
}

// memberValue returns the member name of obj, with or without a module
// qualifier.
func memberValue(obj map[string]any, name string) any {
	if v, ok := obj[name]; ok {
		return v
	}
	for k, v := range obj {
		if _, rest, ok := strings.Cut(k, ":"); ok && rest == name {
			return v
		}
	}
	return nil
}
