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
	c.mu.Lock()
	for _, n := range ns {
		for _, u := range n.GetUpdate() {
			full, err := util.JoinPaths(n.GetPrefix(), u.GetPath())
			if err != nil {
				c.mu.Unlock()
				return fmt.Errorf("update state %s: %w", path, err)
			}
			if err := ytypes.SetNode(c.schema, c.state, full, u.GetVal(), &ytypes.InitMissingElements{}); err != nil {
				c.mu.Unlock()
				return fmt.Errorf("update state %s: %w", pathString(full), err)
			}
			out.Update = append(out.Update, &gpb.Update{Path: full, Val: u.GetVal()})
		}
	}
	c.mu.Unlock()
	return c.publish(out)
}

// DeleteState removes the subtree at path from the state tree, for example
// the state of a VRF or neighbor that no longer exists.
func (c *Core) DeleteState(path string) error {
	p, err := ygot.StringToStructuredPath(path)
	if err != nil {
		return fmt.Errorf("delete state %s: %w", path, err)
	}
	c.mu.Lock()
	err = ytypes.DeleteNode(c.schema, c.state, p)
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("delete state %s: %w", path, err)
	}
	return c.publish(&gpb.Notification{Delete: []*gpb.Path{p}})
}
