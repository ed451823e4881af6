// Command gnmic is the gnmic gNMI client at the version pinned in this
// module's go.mod, for the tests of the gNMI server, the testbed and the
// documentation's recipes:
//
//	bash tools/gnmic/build.sh    # prints the cached binary's path
//
// gnmic's own root command (pkg/cmd) also carries its clustered collector,
// which needs a newer github.com/openconfig/gnmic/pkg/api than any release
// of that module (gnmic builds it from its own tree), so this root wires
// every other command of gnmic's packages itself: capabilities, get, set,
// getset, subscribe (with every output, prometheus included), listen, path,
// diff, generate, processor, proxy, tree and version (cobra adds
// completion). gnmic's interactive prompt is left out with the collector.
package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/openconfig/gnmic/pkg/app"
	"github.com/openconfig/gnmic/pkg/cmd/capabilities"
	"github.com/openconfig/gnmic/pkg/cmd/diff"
	"github.com/openconfig/gnmic/pkg/cmd/generate"
	"github.com/openconfig/gnmic/pkg/cmd/get"
	"github.com/openconfig/gnmic/pkg/cmd/getset"
	"github.com/openconfig/gnmic/pkg/cmd/listener"
	"github.com/openconfig/gnmic/pkg/cmd/path"
	"github.com/openconfig/gnmic/pkg/cmd/processor"
	"github.com/openconfig/gnmic/pkg/cmd/proxy"
	"github.com/openconfig/gnmic/pkg/cmd/set"
	"github.com/openconfig/gnmic/pkg/cmd/subscribe"
	"github.com/openconfig/gnmic/pkg/cmd/tree"
	"github.com/openconfig/gnmic/pkg/cmd/version"
)

func main() {
	a := app.New()
	a.RootCmd = &cobra.Command{
		Use:               "gnmic",
		Short:             "run gNMI RPCs from the terminal",
		PersistentPreRunE: a.PreRunE,
		SilenceUsage:      true,
	}
	a.InitGlobalFlags()
	a.RootCmd.AddCommand(
		capabilities.New(a), get.New(a), getset.New(a), set.New(a), subscribe.New(a),
		listener.New(a), path.New(a), diff.New(a), generate.New(a),
		processor.New(a), proxy.New(a), tree.New(a), version.New(a),
	)
	// The configuration file (--config, or ~/gnmic.yaml and the like) and
	// GNMIC_* variables are read once the flags are parsed; no file is fine.
	cobra.OnInitialize(func() {
		var perr *fs.PathError
		if err := a.Config.Load(a.Context()); err != nil && !errors.As(err, &perr) {
			fmt.Fprintf(os.Stderr, "load config file: %v\n", err)
		}
	})
	go stopOnSignal(a)
	if err := a.RootCmd.Execute(); err != nil {
		os.Exit(1)
	}
}

// stopOnSignal ends gnmic on SIGINT or SIGTERM: outputs and plugins are
// closed through the app's context before the process exits.
func stopOnSignal(a *app.App) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	a.CleanupPlugins()
	a.Cfn()
	os.Exit(0)
}
