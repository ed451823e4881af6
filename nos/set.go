package nos

import (
	"context"
	"fmt"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/goyang/pkg/yang"
	"github.com/openconfig/ygot/util"
	"github.com/openconfig/ygot/ygot"
	"github.com/openconfig/ygot/ytypes"

	"github.com/isthmus-net/isthmus/gen"
)

// Set applies a gNMI SetRequest as one transaction: deletes, then replaces,
// then updates, each in request order, on a candidate that shares every
// entry the request does not name with the running configuration
// (cow.go); then the same validation, reconciliation and persistence as
// Commit, over the entries the request changed. Either every operation
// takes effect or none does. Errors are PathErrors that name the
// offending path.
func (c *Core) Set(ctx context.Context, who string, req *gpb.SetRequest) (uint64, error) {
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	if !c.isStarted() {
		return 0, fmt.Errorf("set: %w", ErrNotStarted)
	}
	c.mu.RLock()
	old := c.running
	c.mu.RUnlock()
	cand := &gen.Device{}
	*cand = *old
	t := touched{maps: listMaps{reuse: &c.reuse}}
	defer func() {
		c.mu.RLock()
		running := c.running
		c.mu.RUnlock()
		c.reuse.settle(old, cand, running, &t)
	}()
	if err := c.editShared(cand, req, &t); err != nil {
		return 0, err
	}
	return c.commitLocked(ctx, who, old, cand, touchedDelta(old, cand, &t))
}

// edit applies the operations of req to cand, which shares nothing with
// the running configuration.
func (c *Core) edit(cand *gen.Device, req *gpb.SetRequest) error {
	return c.editShared(cand, req, &touched{all: true})
}

// editShared applies the operations of req to cand, first making what
// each can change cand's own (unshare) and recording it in t.
func (c *Core) editShared(cand *gen.Device, req *gpb.SetRequest, t *touched) error {
	if req.GetPrefix().GetOrigin() != "" && req.GetPrefix().GetOrigin() != "isthmus" {
		return invalidf(pathString(req.GetPrefix()), "unsupported origin %q", req.GetPrefix().GetOrigin())
	}
	for _, p := range req.GetDelete() {
		full, err := join(req.GetPrefix(), p)
		if err != nil {
			return err
		}
		if err := c.unshare(cand, full, t); err != nil {
			return err
		}
		if err := c.deleteNode(cand, full); err != nil {
			return err
		}
	}
	for _, u := range req.GetReplace() {
		full, err := join(req.GetPrefix(), u.GetPath())
		if err != nil {
			return err
		}
		if err := c.unshare(cand, full, t); err != nil {
			return err
		}
		if err := c.deleteNode(cand, full); err != nil {
			return err
		}
		if err := c.setNode(cand, full, u.GetVal()); err != nil {
			return err
		}
	}
	for _, u := range req.GetUpdate() {
		full, err := join(req.GetPrefix(), u.GetPath())
		if err != nil {
			return err
		}
		if err := c.unshare(cand, full, t); err != nil {
			return err
		}
		if err := c.setNode(cand, full, u.GetVal()); err != nil {
			return err
		}
	}
	if len(req.GetUnionReplace()) > 0 {
		return invalidf(pathString(req.GetPrefix()), "union_replace is not supported")
	}
	return nil
}

// unshare checks that p is writable configuration, then makes what an
// edit at p can change cand's own (cow.go).
func (c *Core) unshare(cand *gen.Device, p *gpb.Path, t *touched) error {
	if _, err := c.checkWritable(p); err != nil {
		return err
	}
	unshare(cand, p, t)
	return nil
}

func join(prefix, p *gpb.Path) (*gpb.Path, error) {
	if len(p.GetElement()) > 0 || len(prefix.GetElement()) > 0 {
		return nil, invalidf(pathString(p), "the deprecated element field is not supported; use elem")
	}
	full, err := util.JoinPaths(prefix, p)
	if err != nil {
		return nil, invalidf(pathString(p), "join with prefix: %v", err)
	}
	full.Target, full.Origin = "", ""
	return full, nil
}

// pathString renders p for messages.
func pathString(p *gpb.Path) string {
	s, err := ygot.PathToString(p)
	if err != nil || s == "" {
		return "/"
	}
	return s
}

// checkWritable resolves p in the schema and refuses paths that do not
// exist or are read-only state. It returns the schema node at p.
func (c *Core) checkWritable(p *gpb.Path) (*yang.Entry, error) {
	e := c.schema
	for _, el := range p.GetElem() {
		next := e.Dir[el.GetName()]
		if next == nil {
			return nil, invalidf(pathString(p), "unknown element %q under %s", clip(el.GetName()), schemaName(e))
		}
		e = next
		if e.IsList() {
			for k, v := range el.GetKey() {
				leaf := e.Dir[k]
				if leaf == nil {
					return nil, invalidf(pathString(p), "list %s has no key %q (its key is %q)", e.Name, clip(k), e.Key)
				}
				if reason := leafProblem(leaf, leaf.Type, keyValue(leaf, v)); reason != "" {
					return nil, invalidf(pathString(p), "key %s of %s: %s", k, e.Name, reason)
				}
			}
		} else if len(el.GetKey()) > 0 {
			return nil, invalidf(pathString(p), "%s is not a list and takes no keys", e.Name)
		}
	}
	if e.ReadOnly() {
		return nil, invalidf(pathString(p), "%s is read-only state (config false) and cannot be set", schemaName(e))
	}
	return e, nil
}

func schemaName(e *yang.Entry) string {
	if e.Parent == nil {
		return "the root"
	}
	return e.Name
}

// deleteNode removes p from cand. Deleting what is not there is no error
// (gNMI specification 3.4.6): the path must only be in the schema and be
// configuration.
func (c *Core) deleteNode(cand *gen.Device, p *gpb.Path) error {
	if _, err := c.checkWritable(p); err != nil {
		return err
	}
	if len(p.GetElem()) == 0 {
		*cand = gen.Device{}
		return nil
	}
	if err := ytypes.DeleteNode(c.schema, cand, p); err != nil {
		return invalidf(pathString(p), "delete: %s", schemaProblem(err))
	}
	return nil
}

// setNode merges val into cand at p, after checking val against the
// schema (checkJSONValue, checkScalar).
func (c *Core) setNode(cand *gen.Device, p *gpb.Path, val *gpb.TypedValue) error {
	e, err := c.checkWritable(p)
	if err != nil {
		return err
	}
	if val == nil || val.GetValue() == nil {
		return invalidf(pathString(p), "no value")
	}
	js := val.GetJsonIetfVal()
	if js == nil {
		js = val.GetJsonVal()
	}
	if js != nil {
		if err := checkJSONValue(pathString(p), e, js); err != nil {
			return err
		}
	} else if val, err = checkScalar(pathString(p), e, val); err != nil {
		return err
	}
	if len(p.GetElem()) == 0 {
		if err := gen.Unmarshal(js, cand); err != nil {
			return invalidf("/", "%s", schemaProblem(err))
		}
		return nil
	}
	if err := ytypes.SetNode(c.schema, cand, p, val, &ytypes.InitMissingElements{}); err != nil {
		return invalidf(pathString(p), "%s", schemaProblem(err))
	}
	return nil
}
