package nos

import (
	"fmt"

	"github.com/isthmus-net/isthmus/gen"
)

// HistoryShown is how many recent commits /system/commits lists.
const HistoryShown = 50

// publishCommit shows a new revision under /system: as the running one and
// as the newest entry of the commit list, dropping the entry that falls off.
func (c *Core) publishCommit(ci CommitInfo) error {
	st := commitState(ci)
	if err := c.UpdateState("/system/state", &gen.IsthmusSystem_System_State{Revision: st.Revision, Time: st.Time, User: st.User}); err != nil {
		return err
	}
	if err := c.UpdateState(fmt.Sprintf("/system/commits/commit[revision=%d]/state", ci.Revision), st); err != nil {
		return err
	}
	if ci.Revision > HistoryShown {
		old := ci.Revision - HistoryShown
		var present bool
		c.Read(func(_, s *gen.Device) error {
			present = s.GetSystem().GetCommits().GetCommit(old) != nil
			return nil
		})
		if present {
			return c.DeleteState(fmt.Sprintf("/system/commits/commit[revision=%d]", old))
		}
	}
	return nil
}

// publishHistory shows the stored history under /system, at start.
func (c *Core) publishHistory() error {
	hist, err := c.History(HistoryShown)
	if err != nil {
		return err
	}
	for i := len(hist) - 1; i >= 0; i-- {
		if err := c.publishCommit(hist[i]); err != nil {
			return err
		}
	}
	return nil
}

func commitState(ci CommitInfo) *gen.IsthmusSystem_System_Commits_Commit_State {
	rev, t, user := ci.Revision, uint64(ci.Time.UnixNano()), ci.User
	return &gen.IsthmusSystem_System_Commits_Commit_State{Revision: &rev, Time: &t, User: &user}
}
