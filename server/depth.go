package server

import (
	"strings"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/gnmi/proto/gnmi_ext"
	"github.com/openconfig/goyang/pkg/yang"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The gNMI Depth extension (openconfig/reference rpc/gnmi/gnmi-depth.md)
// limits how far below a requested path Get and Subscribe descend. Depth
// counts schema nodes: the leaves and leaf-lists of the node a path
// names are at level 1, those of its child containers and lists at level
// 2, and so on; a list and its entries are one level, so an entry's key
// leaves come with its other leaves. Level N returns every leaf and
// leaf-list at levels 1 to N and nothing deeper; a container or list with
// no leaf within reach is left out. Level 0, or no extension, is no
// limit. A path naming a leaf returns that leaf at any depth.

// depthOf returns the level of the Depth extension among exts, or 0 when
// there is none. A second Depth extension is InvalidArgument.
func depthOf(exts []*gnmi_ext.Extension) (uint32, error) {
	var level uint32
	seen := false
	for _, x := range exts {
		d := x.GetDepth()
		if d == nil {
			continue
		}
		if seen {
			return 0, status.Error(codes.InvalidArgument, "the depth extension is given more than once")
		}
		seen, level = true, d.GetLevel()
	}
	return level, nil
}

// refuseDepth returns InvalidArgument when exts carry a Depth extension:
// it applies to Get and Subscribe only.
func refuseDepth(rpc string, exts []*gnmi_ext.Extension) error {
	for _, x := range exts {
		if x.GetDepth() != nil {
			return status.Errorf(codes.InvalidArgument, "the depth extension applies to Get and Subscribe, not %s", rpc)
		}
	}
	return nil
}

// within reports whether a leaf whose path has leafElems elements lies
// within level of a node whose path has baseElems elements. Every path
// element below the node is one schema node (list keys travel inside
// their element), the leaf being the last of them.
func within(level uint32, baseElems, leafElems int) bool {
	return level == 0 || leafElems-baseElems <= int(level)
}

// pruneJSON removes from a subtree in ygot's JSON map form everything
// deeper than level, where the leaves of v itself are at level 1. schema
// is v's schema node: it tells containers from lists, whose entries are a
// JSON array (JSON_IETF) or an object keyed by key values (JSON). It
// reports whether anything is left.
func pruneJSON(v map[string]any, schema *yang.Entry, level uint32) bool {
	for k, c := range v {
		name := k
		if _, n, ok := strings.Cut(k, ":"); ok {
			name = n // a module-qualified member
		}
		child := schema.Dir[name]
		switch {
		case child == nil || child.IsLeaf() || child.IsLeafList():
			continue
		case level <= 1:
			delete(v, k)
		case child.IsList():
			if !pruneEntries(v, k, child, level-1) {
				delete(v, k)
			}
		default:
			m, ok := c.(map[string]any)
			if !ok || !pruneJSON(m, child, level-1) {
				delete(v, k)
			}
		}
	}
	return len(v) > 0
}

// pruneEntries prunes each entry of the list at member k of v to level,
// dropping entries with nothing left, and reports whether any is left.
func pruneEntries(v map[string]any, k string, list *yang.Entry, level uint32) bool {
	switch entries := v[k].(type) {
	case []any:
		kept := entries[:0]
		for _, e := range entries {
			if m, ok := e.(map[string]any); ok && pruneJSON(m, list, level) {
				kept = append(kept, e)
			}
		}
		v[k] = kept
		return len(kept) > 0
	case map[string]any:
		for key, e := range entries {
			if m, ok := e.(map[string]any); !ok || !pruneJSON(m, list, level) {
				delete(entries, key)
			}
		}
		return len(entries) > 0
	}
	return false
}

// depthFilter admits the leaves of a subscription that lie within its
// depth of the path that matched them.
type depthFilter struct {
	level uint32
	bases []depthBase
}

// depthBase is one cache query of a subscription and the number of path
// elements of the schema path it came from, where depth counts from.
type depthBase struct {
	q     query
	elems int
}

// newDepthFilter returns the filter of a compiled subscription, or nil
// when it has no depth limit.
func newDepthFilter(sub *subscription) *depthFilter {
	if sub.depth == 0 {
		return nil
	}
	f := &depthFilter{level: sub.depth}
	for _, e := range sub.entries {
		f.bases = append(f.bases, e.bases...)
	}
	return f
}

// admits reports whether the leaf at p is within depth of some path of
// the subscription that matches it. A nil filter admits everything.
func (f *depthFilter) admits(p *gpb.Path) bool {
	if f == nil {
		return true
	}
	cp := cachePath(nil, p)
	n := len(p.GetElem())
	for _, b := range f.bases {
		if within(f.level, b.elems, n) && b.q.matches(cp) {
			return true
		}
	}
	return false
}
