package server

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/gnmi/value"
	"github.com/openconfig/goyang/pkg/yang"
	"github.com/openconfig/ygot/util"
	"github.com/openconfig/ygot/ygot"
	"github.com/openconfig/ygot/ytypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/isthmus-net/isthmus/gen"
)

// getQuery is one requested path and the concrete schema paths it expands to.
type getQuery struct {
	asked *gpb.Path   // prefix + path as requested, for messages
	paths []*gpb.Path // schema paths it matches; keys may be wildcards
}

// Get returns the data at each requested path, one notification per path.
// The data type chooses the tree: CONFIG the running configuration, STATE
// and OPERATIONAL the state the reconcilers wrote, ALL both merged. A
// path that is not in the schema is InvalidArgument; one with no data is
// NotFound. The Depth extension limits how far below each path the answer
// goes (depth.go).
func (s *Server) Get(ctx context.Context, req *gpb.GetRequest) (*gpb.GetResponse, error) {
	if err := s.checkTarget(req.GetPrefix()); err != nil {
		return nil, err
	}
	enc := req.GetEncoding()
	if !encodingSupported(enc) {
		return nil, status.Errorf(codes.Unimplemented, "encoding %s is not supported (use JSON, JSON_IETF or PROTO)", enc)
	}
	if err := checkModels(req.GetUseModels()); err != nil {
		return nil, err
	}
	depth, err := depthOf(req.GetExtension())
	if err != nil {
		return nil, err
	}
	typ := req.GetType()
	if _, ok := gpb.GetRequest_DataType_name[int32(typ)]; !ok {
		return nil, status.Errorf(codes.InvalidArgument, "unknown data type %d", typ)
	}
	asked := req.GetPath()
	if len(asked) == 0 {
		asked = []*gpb.Path{{}}
	}
	qs := make([]getQuery, 0, len(asked))
	for _, p := range asked {
		full, err := fullPath(req.GetPrefix(), p)
		if err != nil {
			return nil, err
		}
		paths, err := expand(s.core.SchemaRoot(), full)
		if err != nil {
			return nil, err
		}
		qs = append(qs, getQuery{asked: full, paths: paths})
	}

	if err := s.refreshState(ctx, typ, qs); err != nil {
		return nil, err
	}
	var prefix *gpb.Path
	if t := req.GetPrefix().GetTarget(); t != "" {
		prefix = &gpb.Path{Target: t}
	}
	// The forwarding table is read from the dataplane first, never under
	// the core's lock (aft_get.go).
	afts := make([][]aftNode, len(qs))
	for i, q := range qs {
		if afts[i], err = s.aftGet(typ, q); err != nil {
			if _, ok := status.FromError(err); ok {
				return nil, err
			}
			return nil, status.Errorf(codes.Internal, "%s: read forwarding table: %v", pathString(q.asked), err)
		}
	}
	ts := time.Now().UnixNano()
	notifs := make([]*gpb.Notification, 0, len(qs))
	err = s.core.Read(func(cfg, st *gen.Device) error {
		tree, err := pickTree(typ, cfg, st)
		if err != nil {
			return err
		}
		for i, q := range qs {
			if err := ctx.Err(); err != nil {
				return status.FromContextError(err).Err()
			}
			nodes, err := s.lookup(tree, q)
			if err != nil && len(afts[i]) == 0 {
				return err
			}
			n := &gpb.Notification{Timestamp: ts, Prefix: prefix}
			add := func(node *ytypes.TreeNode, depth uint32) error {
				us, err := encodeNode(node, enc, ts, depth)
				if err != nil {
					return status.Errorf(codes.Internal, "%s: encode: %v", pathString(node.Path), err)
				}
				n.Update = append(n.Update, us...)
				return nil
			}
			for _, node := range nodes {
				if err := add(node, depth); err != nil {
					return err
				}
			}
			// AFT nodes may lie below the requested node (at .../afts):
			// depth counts from the latter.
			for _, a := range afts[i] {
				if level, ok := a.depth(depth); ok {
					if err := add(a.TreeNode, level); err != nil {
						return err
					}
				}
			}
			notifs = append(notifs, n)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &gpb.GetResponse{Notification: notifs}, nil
}

func encodingSupported(enc gpb.Encoding) bool {
	for _, e := range supportedEncodings {
		if e == enc {
			return true
		}
	}
	return false
}

// checkModels refuses use_models naming a module the server does not have.
func checkModels(models []*gpb.ModelData) error {
	for _, m := range models {
		if !modelNames[m.GetName()] {
			return status.Errorf(codes.InvalidArgument, "unknown model %q", m.GetName())
		}
	}
	return nil
}

// pickTree returns the tree a data type reads. It must be called under
// the core's read lock and the result not kept beyond it.
func pickTree(typ gpb.GetRequest_DataType, cfg, st *gen.Device) (*gen.Device, error) {
	switch typ {
	case gpb.GetRequest_CONFIG:
		return cfg, nil
	case gpb.GetRequest_STATE, gpb.GetRequest_OPERATIONAL:
		// The state tree holds only what reconcilers wrote: config false
		// leaves, under the keys of the lists they belong to. None of them
		// mirrors a config leaf, so STATE and OPERATIONAL are the same.
		return st, nil
	default:
		merged, err := ygot.MergeStructs(cfg, st, &ygot.MergeOverwriteExistingFields{})
		if err != nil {
			return nil, status.Errorf(codes.Internal, "merge configuration and state: %v", err)
		}
		return merged.(*gen.Device), nil
	}
}

// lookup returns the non-empty data nodes of tree that q matches, sorted
// by path, or NotFound. A wildcard skips the entries that lack the rest
// of its path (a VRF without counters) instead of failing on them.
func (s *Server) lookup(tree *gen.Device, q getQuery) ([]*ytypes.TreeNode, error) {
	var out []*ytypes.TreeNode
	for _, p := range q.paths {
		if len(p.GetElem()) == 0 {
			out = append(out, &ytypes.TreeNode{Schema: s.core.SchemaRoot(), Data: tree, Path: &gpb.Path{}})
			continue
		}
		nodes, err := ytypes.GetNode(s.core.SchemaRoot(), tree, p, &ytypes.GetHandleWildcards{}, &ytypes.GetPartialKeyMatch{}, &ytypes.GetTolerateNil{})
		if err != nil {
			// GetNode reports a path without data as an error.
			continue
		}
		for _, n := range nodes {
			if !isEmpty(n.Data) {
				out = append(out, n)
			}
		}
	}
	if len(out) > 1 {
		sortNodes(out)
	}
	if len(out) == 0 {
		return nil, status.Errorf(codes.NotFound, "%s: no data", pathString(q.asked))
	}
	return out, nil
}

// sortNodes orders nodes by their rendered path, so that a wildcard's
// answer does not depend on map order.
func sortNodes(nodes []*ytypes.TreeNode) {
	keys := make(map[*ytypes.TreeNode]string, len(nodes))
	for _, n := range nodes {
		keys[n] = pathString(n.Path)
	}
	sort.SliceStable(nodes, func(i, j int) bool { return keys[nodes[i]] < keys[nodes[j]] })
}

// isEmpty reports whether a data node holds nothing: a nil pointer, map
// or slice, or an unset enumeration.
func isEmpty(v any) bool {
	if util.IsValueNil(v) {
		return true
	}
	if e, ok := v.(ygot.GoEnum); ok {
		return reflect.ValueOf(e).Int() == 0
	}
	rv := reflect.ValueOf(v)
	return (rv.Kind() == reflect.Slice || rv.Kind() == reflect.Map) && rv.Len() == 0
}

// encodeNode renders one data node as updates: a subtree as one JSON or
// JSON_IETF value, or, with PROTO, as one scalar update per leaf; a leaf
// as one update. A depth other than 0 leaves out what lies deeper below
// the node (see depth.go); a subtree with nothing left is no update.
func encodeNode(n *ytypes.TreeNode, enc gpb.Encoding, ts int64, depth uint32) ([]*gpb.Update, error) {
	if gs, ok := n.Data.(ygot.GoStruct); ok {
		if enc == gpb.Encoding_PROTO {
			us, err := leafUpdates(gs, n.Path, ts)
			if err != nil || depth == 0 {
				return us, err
			}
			base, kept := len(n.Path.GetElem()), us[:0]
			for _, u := range us {
				if within(depth, base, len(u.GetPath().GetElem())) {
					kept = append(kept, u)
				}
			}
			return kept, nil
		}
		tv, err := structJSON(gs, n.Schema, enc, depth)
		if err != nil || tv == nil {
			return nil, err
		}
		return []*gpb.Update{{Path: n.Path, Val: tv}}, nil
	}
	tv, err := ygot.EncodeTypedValue(n.Data, gpb.Encoding_JSON_IETF)
	if err != nil {
		return nil, err
	}
	if tv == nil {
		return nil, nil
	}
	if enc != gpb.Encoding_PROTO {
		if tv, err = scalarAsJSON(tv, n.Schema, enc); err != nil {
			return nil, err
		}
	}
	return []*gpb.Update{{Path: n.Path, Val: tv}}, nil
}

// structJSON renders a subtree as compact JSON or JSON_IETF; the latter
// qualifies the subtree's top-level members, and every member whose module
// differs from its parent's, with the module name (RFC 7951). A depth
// other than 0 prunes the subtree, whose schema node is schema, first;
// nil means nothing was left.
func structJSON(gs ygot.GoStruct, schema *yang.Entry, enc gpb.Encoding, depth uint32) (*gpb.TypedValue, error) {
	if enc == gpb.Encoding_JSON {
		m, err := ygot.ConstructInternalJSON(gs)
		if err != nil {
			return nil, err
		}
		if depth > 0 && !pruneJSON(m, schema, depth) {
			return nil, nil
		}
		b, err := json.Marshal(m)
		if err != nil {
			return nil, err
		}
		return &gpb.TypedValue{Value: &gpb.TypedValue_JsonVal{JsonVal: b}}, nil
	}
	m, err := ygot.ConstructIETFJSON(gs, &ygot.RFC7951JSONConfig{AppendModuleName: true})
	if err != nil {
		return nil, err
	}
	if depth > 0 && !pruneJSON(m, schema, depth) {
		return nil, nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: b}}, nil
}

// leafUpdates flattens a subtree into one update per leaf, with full paths.
func leafUpdates(gs ygot.GoStruct, at *gpb.Path, ts int64) ([]*gpb.Update, error) {
	ns, err := ygot.TogNMINotifications(gs, ts, ygot.GNMINotificationsConfig{UsePathElem: true, PathElemPrefix: at.GetElem()})
	if err != nil {
		return nil, err
	}
	var out []*gpb.Update
	for _, n := range ns {
		for _, u := range n.GetUpdate() {
			elems := append(append([]*gpb.PathElem{}, n.GetPrefix().GetElem()...), u.GetPath().GetElem()...)
			out = append(out, &gpb.Update{Path: &gpb.Path{Elem: elems}, Val: u.GetVal()})
		}
	}
	return out, nil
}

// scalarAsJSON re-encodes a scalar TypedValue as a JSON or JSON_IETF
// value. RFC 7951 writes 64-bit integers and decimals as strings.
func scalarAsJSON(tv *gpb.TypedValue, schema *yang.Entry, enc gpb.Encoding) (*gpb.TypedValue, error) {
	v, err := value.ToScalar(tv)
	if err != nil {
		return nil, err
	}
	ietf := enc == gpb.Encoding_JSON_IETF
	quote := ietf && schema != nil && schema.Type != nil && quotedKind(schema.Type.Kind)
	conv := func(x any) any {
		if quote {
			return fmt.Sprint(x)
		}
		return x
	}
	if list, ok := v.([]any); ok {
		for i := range list {
			list[i] = conv(list[i])
		}
		v = list
	} else {
		v = conv(v)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	if ietf {
		return &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: b}}, nil
	}
	return &gpb.TypedValue{Value: &gpb.TypedValue_JsonVal{JsonVal: b}}, nil
}

func quotedKind(k yang.TypeKind) bool {
	return k == yang.Yint64 || k == yang.Yuint64 || k == yang.Ydecimal64
}
