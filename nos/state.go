package nos

import (
	"fmt"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/util"
	"github.com/openconfig/ygot/ygot"
	"github.com/openconfig/ygot/ytypes"
)

// UpdateState merges st, a generated state struct, into the state tree at
// path (for example "/interfaces/interface[name=veth1]/state" with a
// *gen.IsthmusInterfaces_Interfaces_Interface_State) and streams the
// changed leaves to telemetry subscribers. Leaves that are nil in st are
// left as they were.
//
// State belongs to configuration: a write under an entry of a
// configurable list (a VRF, an interface, a neighbor) that is neither
// running nor being committed is refused with ErrNoConfig, and nothing
// of it is written. The check and the write are one step with respect
// to commits, so a writer working from a snapshot taken before a commit
// that deleted the entry cannot bring its state back.
func (c *Core) UpdateState(path string, st ygot.GoStruct) error {
	p, err := ygot.StringToStructuredPath(path)
	if err != nil {
		return fmt.Errorf("update state %s: %w", path, err)
	}
	ns, err := ygot.TogNMINotifications(st, time.Now().UnixNano(), ygot.GNMINotificationsConfig{UsePathElem: true, PathElemPrefix: p.GetElem()})
	if err != nil {
		return fmt.Errorf("update state %s: %w", path, err)
	}
	out := &gpb.Notification{}
	for _, n := range ns {
		for _, u := range n.GetUpdate() {
			full, err := util.JoinPaths(n.GetPrefix(), u.GetPath())
			if err != nil {
				return fmt.Errorf("update state %s: %w", path, err)
			}
			out.Update = append(out.Update, &gpb.Update{Path: full, Val: u.GetVal()})
		}
	}
	// pubMu keeps this write and its telemetry in one piece with respect
	// to a commit's pruning of deleted entries.
	c.pubMu.Lock()
	defer c.pubMu.Unlock()
	c.mu.Lock()
	if err := c.checkConfigured(p); err != nil {
		c.mu.Unlock()
		return err
	}
	// Entries below path (lists inside st) are checked as well; most
	// writes have none, and each distinct entry is checked once.
	checked := map[string]bool{}
	for _, u := range out.Update {
		if entry := lastKeyed(u.GetPath()); len(entry) > len(p.GetElem()) {
			k := pathString(&gpb.Path{Elem: entry})
			if !checked[k] {
				checked[k] = true
				if err := c.checkConfigured(&gpb.Path{Elem: entry}); err != nil {
					c.mu.Unlock()
					return err
				}
			}
		}
	}
	for _, u := range out.Update {
		if err := ytypes.SetNode(c.schema, c.state, u.GetPath(), u.GetVal(), &ytypes.InitMissingElements{}); err != nil {
			c.mu.Unlock()
			return fmt.Errorf("update state %s: %w", pathString(u.GetPath()), err)
		}
	}
	c.mu.Unlock()
	return c.publish(out)
}

// lastKeyed returns the elements of p up to and including its last keyed
// element, or nil.
func lastKeyed(p *gpb.Path) []*gpb.PathElem {
	elems := p.GetElem()
	for i := len(elems) - 1; i >= 0; i-- {
		if len(elems[i].GetKey()) > 0 {
			return elems[:i+1]
		}
	}
	return nil
}

// DeleteState removes the subtree at path from the state tree, for example
// the state of a VRF or neighbor that no longer exists.
func (c *Core) DeleteState(path string) error {
	p, err := ygot.StringToStructuredPath(path)
	if err != nil {
		return fmt.Errorf("delete state %s: %w", path, err)
	}
	c.pubMu.Lock()
	defer c.pubMu.Unlock()
	c.mu.Lock()
	err = ytypes.DeleteNode(c.schema, c.state, p)
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("delete state %s: %w", path, err)
	}
	return c.publish(&gpb.Notification{Delete: []*gpb.Path{p}})
}
