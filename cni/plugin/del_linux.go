package plugin

import (
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"

	"github.com/isthmus-net/isthmus/cni/api"
)

// Del detaches the pod. It is idempotent: a missing attachment, namespace
// or link is fine. The host end of the veth is deleted even when isthmusd
// cannot be reached; the error then tells the runtime to try again, so the
// address is released later.
func (p *Plugin) Del(args *skel.CmdArgs) error {
	req, err := parseRequest(cmdDel, args)
	if err != nil {
		return err
	}
	conf, id := req.conf, req.id
	var daemonErr error
	ctx, done, client, err := dial(conf)
	if err != nil {
		daemonErr = err
	} else {
		defer done()
		_, daemonErr = client.Del(ctx, &api.DelRequest{AttachmentID: id, Network: conf.Name})
	}
	if err := deleteLink(HostIfName(id.ContainerID, id.IfName)); err != nil {
		return types.NewError(types.ErrInternal, "delete veth", err.Error())
	}
	return cniError("delete pod", daemonErr)
}

// GC removes every attachment of this network that is not in
// cni.dev/valid-attachments: first those isthmusd recorded, then host veths
// the plugin created (known by their alias) that the daemon never recorded.
func (p *Plugin) GC(args *skel.CmdArgs) error {
	req, err := parseRequest(cmdGC, args)
	if err != nil {
		return err
	}
	conf := req.conf
	valid := make([]api.AttachmentID, 0, len(conf.ValidAttachments))
	keep := make(map[string]bool, len(conf.ValidAttachments))
	for _, a := range conf.ValidAttachments {
		valid = append(valid, api.AttachmentID{ContainerID: a.ContainerID, IfName: a.IfName})
		keep[HostIfName(a.ContainerID, a.IfName)] = true
	}
	ctx, done, client, err := dial(conf)
	if err != nil {
		return err
	}
	defer done()
	resp, err := client.GC(ctx, &api.GCRequest{Network: conf.Name, Valid: valid})
	if err != nil {
		return cniError("collect stale pods", err)
	}
	for _, a := range resp.Removed {
		if err := deleteLink(a.HostIfName); err != nil {
			return types.NewError(types.ErrInternal, "delete stale veth", err.Error())
		}
	}
	links, err := retryDump(func() ([]netlink.Link, error) { return netlink.LinkList() })
	if err != nil {
		return types.NewError(types.ErrInternal, "list links", err.Error())
	}
	prefix := aliasPrefix + conf.Name + "/"
	for _, l := range links {
		name := l.Attrs().Name
		if !strings.HasPrefix(l.Attrs().Alias, prefix) || keep[name] {
			continue
		}
		if err := deleteLink(name); err != nil {
			return types.NewError(types.ErrInternal, "delete stray veth", err.Error())
		}
		p.log.Info("stray veth deleted", "interface", name, "alias", l.Attrs().Alias)
	}
	return nil
}
