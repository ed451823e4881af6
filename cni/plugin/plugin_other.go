//go:build !linux

package plugin

import (
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
)

func unsupported() error {
	return types.NewError(types.ErrInternal, "isthmus-cni runs on Linux only", "")
}

// Add is Linux-only.
func (p *Plugin) Add(*skel.CmdArgs) error { return unsupported() }

// Del is Linux-only.
func (p *Plugin) Del(*skel.CmdArgs) error { return unsupported() }

// Check is Linux-only.
func (p *Plugin) Check(*skel.CmdArgs) error { return unsupported() }

// GC is Linux-only.
func (p *Plugin) GC(*skel.CmdArgs) error { return unsupported() }
