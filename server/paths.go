package server

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/goyang/pkg/yang"
	"github.com/openconfig/ygot/ygot"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/isthmus-net/isthmus/gen"
)

// origin is the only gNMI origin the server serves besides the empty one.
const origin = "isthmus"

// modelNames are the YANG modules whose names may qualify a path element
// ("isthmus-network-instance:network-instances").
var modelNames = func() map[string]bool {
	m := map[string]bool{}
	for _, md := range gen.ΓModelData {
		m[md.GetName()] = true
	}
	return m
}()

// pathString renders p for messages; the root is "/". Key values longer
// than 100 bytes are cut short: a message never echoes a whole bad value.
func pathString(p *gpb.Path) string {
	s, err := ygot.PathToString(p)
	if err != nil || s == "" {
		return "/"
	}
	if len(s) > 100 {
		s = longKey.ReplaceAllString(s, "=$1…]")
	}
	return s
}

// longKey matches a list key value of more than 100 bytes in a path.
var longKey = regexp.MustCompile(`=([^\]]{100})[^\]]+\]`)

// checkTarget accepts an empty target or the core's own.
func (s *Server) checkTarget(prefix *gpb.Path) error {
	if t := prefix.GetTarget(); t != "" && t != s.core.Target() {
		return status.Errorf(codes.NotFound, "unknown target %q (this server is %q)", t, s.core.Target())
	}
	return nil
}

// fullPath joins prefix and p into one path without target and origin,
// with module-qualified element names reduced to their plain names.
func fullPath(prefix, p *gpb.Path) (*gpb.Path, error) {
	if len(prefix.GetElement()) > 0 || len(p.GetElement()) > 0 {
		return nil, status.Errorf(codes.InvalidArgument, "%s: the deprecated element field is not supported; use elem", pathString(p))
	}
	for _, o := range []string{prefix.GetOrigin(), p.GetOrigin()} {
		if o != "" && o != origin {
			return nil, status.Errorf(codes.InvalidArgument, "%s: unsupported origin %q (use %q or none)", pathString(p), o, origin)
		}
	}
	out := &gpb.Path{Elem: make([]*gpb.PathElem, 0, len(prefix.GetElem())+len(p.GetElem()))}
	for _, e := range append(append([]*gpb.PathElem{}, prefix.GetElem()...), p.GetElem()...) {
		name := e.GetName()
		if mod, rest, ok := strings.Cut(name, ":"); ok && modelNames[mod] {
			name = rest
		}
		out.Elem = append(out.Elem, &gpb.PathElem{Name: name, Key: e.GetKey()})
	}
	return out, nil
}

// isWildcard reports whether p contains "*" or "..." in a name or key.
func isWildcard(p *gpb.Path) bool {
	for _, e := range p.GetElem() {
		if e.GetName() == "*" || e.GetName() == "..." {
			return true
		}
		for _, v := range e.GetKey() {
			if v == "*" {
				return true
			}
		}
	}
	return false
}

// expand resolves p against the schema: every "*" name becomes each child
// at that level and every "..." any chain of descendants, so that the
// result contains only real element names (keys may still be "*" or
// missing, which ytypes.GetNode handles). A path that matches no schema
// node is an InvalidArgument error that says where it went wrong.
func expand(root *yang.Entry, p *gpb.Path) ([]*gpb.Path, error) {
	x := &expander{seen: map[string]bool{}}
	x.walk(root, p.GetElem(), nil)
	if len(x.out) == 0 {
		if x.why == "" {
			x.why = "matches nothing in the schema"
		}
		return nil, status.Errorf(codes.InvalidArgument, "%s: %s", pathString(p), x.why)
	}
	return x.out, nil
}

// expander collects the concrete schema paths a wildcard path matches.
type expander struct {
	out  []*gpb.Path
	seen map[string]bool // rendered paths already in out
	why  string          // first reason a branch did not match
}

func (x *expander) fail(format string, args ...any) {
	if x.why == "" {
		x.why = fmt.Sprintf(format, args...)
	}
}

func (x *expander) walk(e *yang.Entry, rest, done []*gpb.PathElem) {
	if len(rest) == 0 {
		p := &gpb.Path{Elem: done}
		k := pathString(p)
		if !x.seen[k] {
			x.seen[k] = true
			x.out = append(x.out, proto.Clone(p).(*gpb.Path))
		}
		return
	}
	el := rest[0]
	switch el.GetName() {
	case "...":
		x.walk(e, rest[1:], done) // zero levels
		if len(rest) == 1 {
			return // a trailing "..." is the whole subtree, already matched
		}
		for _, name := range childNames(e) {
			c := e.Dir[name]
			x.walk(c, rest, append(done[:len(done):len(done)], &gpb.PathElem{Name: name}))
		}
	case "*":
		for _, name := range childNames(e) {
			c := e.Dir[name]
			if !keysFit(c, el.GetKey()) {
				continue
			}
			x.walk(c, rest[1:], append(done[:len(done):len(done)], &gpb.PathElem{Name: name, Key: el.GetKey()}))
		}
		if len(childNames(e)) == 0 {
			x.fail("%s has no children", schemaName(e))
		}
	default:
		c := e.Dir[el.GetName()]
		if c == nil {
			x.fail("unknown element %q under %s", el.GetName(), schemaName(e))
			return
		}
		if len(el.GetKey()) > 0 && !c.IsList() {
			x.fail("%s is not a list and takes no keys", c.Name)
			return
		}
		if !keysFit(c, el.GetKey()) {
			x.fail("list %s has no key among %v (its key is %q)", c.Name, keyNames(el.GetKey()), c.Key)
			return
		}
		x.walk(c, rest[1:], append(done[:len(done):len(done)], &gpb.PathElem{Name: el.GetName(), Key: el.GetKey()}))
	}
}

// keysFit reports whether every key name is a key of list e (no keys fit
// anything).
func keysFit(e *yang.Entry, keys map[string]string) bool {
	if len(keys) == 0 {
		return true
	}
	if !e.IsList() {
		return false
	}
	names := strings.Fields(e.Key)
	for k := range keys {
		found := false
		for _, n := range names {
			found = found || n == k
		}
		if !found {
			return false
		}
	}
	return true
}

func keyNames(keys map[string]string) []string {
	out := make([]string, 0, len(keys))
	for k := range keys {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// childNames returns the names of e's schema children, sorted.
func childNames(e *yang.Entry) []string {
	out := make([]string, 0, len(e.Dir))
	for name := range e.Dir {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

func schemaName(e *yang.Entry) string {
	if e.Parent == nil {
		return "the root"
	}
	return e.Name
}
