package k8s

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
)

// Programs are the binaries tools/kube/build.sh puts in the cache
// directory, all of which the cluster runs.
var Programs = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kubectl", "loopback"}

// RepoRoot is the clone's top directory, found from this file's path.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// BinDir returns the directory tools/kube/build.sh builds into:
// $ISTHMUS_KUBE_CACHE (default /var/cache/isthmus/kube) / the first 16 hex
// digits of sha256(tools/kube/go.sum).
func BinDir(repo string) (string, error) {
	sum, err := os.ReadFile(filepath.Join(repo, "tools", "kube", "go.sum"))
	if err != nil {
		return "", fmt.Errorf("read tools/kube/go.sum: %w", err)
	}
	h := sha256.Sum256(sum)
	root := os.Getenv("ISTHMUS_KUBE_CACHE")
	if root == "" {
		root = "/var/cache/isthmus/kube"
	}
	return filepath.Join(root, hex.EncodeToString(h[:])[:16]), nil
}

// CheckBinaries returns an error naming the first program missing from dir.
func CheckBinaries(dir string) error {
	for _, p := range Programs {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			return fmt.Errorf("%s is not built (run `make kube-bins`): %w", p, err)
		}
	}
	return nil
}
