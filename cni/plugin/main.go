package plugin

import (
	"context"
	"io"
	"log/slog"
	"os"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/isthmus-net/isthmus/cni/api"
)

// About is printed when the plugin runs without CNI_COMMAND.
const About = "isthmus-cni: attaches pods to Isthmus VRFs through isthmusd"

// SupportedVersions are the CNI spec versions the plugin speaks.
var SupportedVersions = version.PluginSupports("0.4.0", "1.0.0", "1.1.0")

// Plugin runs the CNI commands. The zero value is not usable; use New.
type Plugin struct {
	log    *slog.Logger
	stdout io.Writer
}

// New returns a plugin that logs to log and prints results to stdout.
func New(log *slog.Logger, stdout io.Writer) *Plugin {
	return &Plugin{log: log, stdout: stdout}
}

// Funcs returns the plugin's commands for skel.
func (p *Plugin) Funcs() skel.CNIFuncs {
	return skel.CNIFuncs{Add: p.Add, Del: p.Del, Check: p.Check, GC: p.GC, Status: p.Status}
}

// Main runs the plugin as a CNI executable: the command comes from the
// environment, the configuration from stdin, the result goes to stdout.
func Main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	skel.PluginMainFuncs(New(log, os.Stdout).Funcs(), SupportedVersions, About)
}

// dial connects to isthmusd; ctx bounds the whole command.
func dial(conf *NetConf) (context.Context, context.CancelFunc, *api.Client, error) {
	c, err := api.NewClient(conf.Socket)
	if err != nil {
		return nil, nil, nil, types.NewError(types.ErrTryAgainLater, "isthmusd is not running or not ready", err.Error())
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	return ctx, func() { cancel(); c.Close() }, c, nil
}

// Status reports whether isthmusd can serve ADDs for the network.
func (p *Plugin) Status(args *skel.CmdArgs) error {
	req, err := parseRequest(cmdStatus, args)
	if err != nil {
		return err
	}
	conf := req.conf
	ctx, done, c, err := dial(conf)
	if err != nil {
		return types.NewError(types.ErrPluginNotAvailable, "isthmusd is not running", err.Error())
	}
	defer done()
	st, err := c.Status(ctx, &api.StatusRequest{Network: conf.Name})
	if err != nil {
		return types.NewError(types.ErrPluginNotAvailable, "isthmusd is not running", err.Error())
	}
	if !st.Ready {
		return types.NewError(types.ErrPluginNotAvailable, "isthmusd is not ready", st.Reason)
	}
	return nil
}
