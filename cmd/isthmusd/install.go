package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// installCNI is `isthmusd install-cni`: the DaemonSet's init container
// copies the isthmus-cni plugin shipped in the image into the host's CNI
// bin dir and the network configuration list into its conf dir, each by
// writing a temporary file next to the target and renaming it, so the
// container runtime never reads half a file.
func installCNI(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("isthmusd install-cni", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		plugin   = fs.String("plugin", "/usr/local/bin/isthmus-cni", "the plugin binary to install")
		binDir   = fs.String("bin-dir", "/host/opt/cni/bin", "the host's CNI bin dir (mounted)")
		conflist = fs.String("conflist", "", "the network configuration list to install (required)")
		confDir  = fs.String("conf-dir", "/host/etc/cni/net.d", "the host's CNI conf dir (mounted)")
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("install-cni: unexpected argument %q", fs.Arg(0))
	}
	if *conflist == "" {
		return errors.New("install-cni: --conflist is required")
	}
	conf, err := os.ReadFile(*conflist)
	if err != nil {
		return fmt.Errorf("install-cni: read conflist: %w", err)
	}
	if err := checkConflist(conf); err != nil {
		return fmt.Errorf("install-cni: conflist %s: %w", *conflist, err)
	}
	bin, err := os.ReadFile(*plugin)
	if err != nil {
		return fmt.Errorf("install-cni: read plugin: %w", err)
	}
	binDst := filepath.Join(*binDir, "isthmus-cni")
	if err := writeAtomic(binDst, bin, 0o755); err != nil {
		return fmt.Errorf("install-cni: %w", err)
	}
	confDst := filepath.Join(*confDir, filepath.Base(*conflist))
	if err := writeAtomic(confDst, conf, 0o644); err != nil {
		return fmt.Errorf("install-cni: %w", err)
	}
	fmt.Fprintf(stdout, "installed %s and %s\n", binDst, confDst)
	return nil
}

// checkConflist refuses a configuration list the runtime would reject or
// that would not call isthmus-cni.
func checkConflist(b []byte) error {
	var c struct {
		CNIVersion string `json:"cniVersion"`
		Name       string `json:"name"`
		Plugins    []struct {
			Type string `json:"type"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return fmt.Errorf("parse: %w", err)
	}
	if c.CNIVersion == "" || c.Name == "" {
		return errors.New("cniVersion and name are required")
	}
	for _, p := range c.Plugins {
		if p.Type == "isthmus-cni" {
			return nil
		}
	}
	return errors.New("no plugin of type isthmus-cni")
}

// writeAtomic writes b to path through a temporary file in the same dir.
func writeAtomic(path string, b []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Chmod(mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
