package k8s

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// madeDirsFile, in a cluster's Dir, lists the machine-wide directories the
// cluster made (kubeletHostDirs, shimHostDirs, runIsthmus), so that a teardown from the
// run directory alone (DownKept) removes them as Down does.
const madeDirsFile = "made-host-dirs"

// containerLogDir is where every kubelet links its containers' logs,
// whatever its podLogsDir.
const containerLogDir = "/var/log/containers"

// saveMadeDirs writes madeDirsFile.
func (c *Cluster) saveMadeDirs() error {
	dirs := slices.Clone(c.madeHostDirs)
	if c.madeRunIsthmus {
		dirs = append(dirs, runIsthmus)
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return fmt.Errorf("record host dirs: %w", err)
	}
	if err := os.WriteFile(filepath.Join(c.Dir, madeDirsFile), []byte(strings.Join(dirs, "\n")+"\n"), 0o644); err != nil {
		return fmt.Errorf("record host dirs: %w", err)
	}
	return nil
}

// loadMadeDirs reads madeDirsFile; it takes only the paths a cluster can
// make, so that a damaged file never names something else to remove.
func (c *Cluster) loadMadeDirs() error {
	b, err := os.ReadFile(filepath.Join(c.Dir, madeDirsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read host dirs of %s: %w", c.Dir, err)
	}
	for _, d := range strings.Fields(string(b)) {
		switch {
		case d == runIsthmus:
			c.madeRunIsthmus = true
		case (slices.Contains(kubeletHostDirs, d) || slices.Contains(shimHostDirs, d)) && !slices.Contains(c.madeHostDirs, d):
			c.madeHostDirs = append(c.madeHostDirs, d)
		}
	}
	return nil
}

// removeContainerLogLinks removes the links in containerLogDir that point
// into Dir (the nodes' pod logs): a kubelet leaves those of containers it
// has not yet collected, and the directory may be older than the cluster.
func (c *Cluster) removeContainerLogLinks() error {
	ents, err := os.ReadDir(containerLogDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list container logs: %w", err)
	}
	var errs []error
	for _, e := range ents {
		p := filepath.Join(containerLogDir, e.Name())
		target, err := os.Readlink(p)
		if err != nil || !strings.HasPrefix(target, c.Dir+"/") {
			continue // not a link, or another kubelet's
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove container log link: %w", err))
		}
	}
	return errors.Join(errs...)
}

// removeMadeDir removes d, a directory the cluster made: the kubelet's
// with all it holds, a shim directory only when empty (shimHostDirs): one
// that holds something is kept without error.
func removeMadeDir(d string) error {
	if !slices.Contains(shimHostDirs, d) {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("remove %s: %w", d, err)
		}
		return nil
	}
	err := os.Remove(d)
	if err == nil || errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTEMPTY) {
		return nil // gone, or in use by sockets that are not the cluster's (Leftovers names its own)
	}
	return fmt.Errorf("remove %s: %w", d, err)
}
