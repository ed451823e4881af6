package nos

import (
	"strings"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ytypes"
)

// Applied configuration is state too, as OpenConfig has it: every leaf
// under a `config` container appears under its `state` sibling once it
// is committed, beside the operational leaves the reconcilers write
// there. The core does this for every module at once: the leaves a
// commit changes (its telemetry diff) are written again at their state
// path, into the state tree and to telemetry, when the schema has the
// same leaf there; deleted leaves go from state as well. Get and
// Subscribe then read one state tree. A reconciler that writes such a
// leaf with what is in effect (an address in use) overrides the mirror
// until the next commit that changes it.

// mirrorConfig writes the changes of n, a commit's configuration diff,
// into the state tree under the state siblings of their config
// containers, and adds them to n for telemetry. A leaf that cannot be
// written or removed there is logged at warning level with its path and
// counted in /system/state/mirror-failures, which the first call (the
// start) publishes as zero and every call with a failure publishes
// again. pubMu is held.
func (c *Core) mirrorConfig(n *gpb.Notification) {
	var ups []*gpb.Update
	var dels []*gpb.Path
	failed := uint64(0)
	c.mu.Lock()
	for _, u := range n.GetUpdate() {
		sp := c.statePathOf(u.GetPath())
		if sp == nil {
			continue
		}
		if err := ytypes.SetNode(c.schema, c.state, sp, u.GetVal(), &ytypes.InitMissingElements{}); err != nil {
			c.log.Warn("mirror config leaf to state", "path", pathString(sp), "err", err)
			failed++
			continue
		}
		ups = append(ups, &gpb.Update{Path: sp, Val: u.GetVal()})
	}
	for _, d := range n.GetDelete() {
		sp := c.statePathOf(d)
		if sp == nil {
			continue
		}
		if err := ytypes.DeleteNode(c.schema, c.state, sp); err != nil {
			c.log.Warn("remove mirrored state leaf", "path", pathString(sp), "err", err)
			failed++
			continue
		}
		dels = append(dels, sp)
	}
	if up := c.countMirrorFailures(failed); up != nil {
		ups = append(ups, up)
	}
	c.mu.Unlock()
	n.Update = append(n.Update, ups...)
	n.Delete = append(n.Delete, dels...)
}

// mirrorFailuresPath is where the state tree counts mirror failures.
var mirrorFailuresPath = &gpb.Path{Elem: []*gpb.PathElem{{Name: "system"}, {Name: "state"}, {Name: "mirror-failures"}}}

// countMirrorFailures adds failed to /system/state/mirror-failures and
// returns its telemetry update, or nil when the counter is already
// published and nothing failed. mu is held.
func (c *Core) countMirrorFailures(failed uint64) *gpb.Update {
	st := c.state.GetOrCreateSystem().GetOrCreateState()
	if st.MirrorFailures != nil && failed == 0 {
		return nil
	}
	total := st.GetMirrorFailures() + failed
	st.MirrorFailures = &total
	return &gpb.Update{Path: mirrorFailuresPath, Val: &gpb.TypedValue{Value: &gpb.TypedValue_UintVal{UintVal: total}}}
}

// statePathOf returns the state path that mirrors the configuration
// leaf at p (its last `config` element replaced by `state`), or nil when
// p is not under a config container or the schema has no such state
// leaf.
func (c *Core) statePathOf(p *gpb.Path) *gpb.Path {
	elems := p.GetElem()
	at := -1
	for i := len(elems) - 2; i >= 0; i-- {
		if elems[i].GetName() == "config" && len(elems[i].GetKey()) == 0 {
			at = i
			break
		}
	}
	if at < 0 {
		return nil
	}
	out := make([]*gpb.PathElem, len(elems))
	copy(out, elems)
	out[at] = &gpb.PathElem{Name: "state"}
	if !c.mirrored(out) {
		return nil
	}
	return &gpb.Path{Elem: out}
}

// mirrored reports whether the schema has a state leaf (or leaf-list) at
// elems; answers are remembered per schema path.
func (c *Core) mirrored(elems []*gpb.PathElem) bool {
	var b strings.Builder
	for _, e := range elems {
		b.WriteByte('/')
		b.WriteString(e.GetName())
	}
	key := b.String()
	if v, ok := c.mirrorable.Load(key); ok {
		return v.(bool)
	}
	e := c.schema
	for _, el := range elems {
		if e = e.Dir[el.GetName()]; e == nil {
			break
		}
	}
	ok := e != nil && e.IsLeaf() || e != nil && e.IsLeafList()
	ok = ok && e.ReadOnly()
	c.mirrorable.Store(key, ok)
	return ok
}
