package kubetest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/isthmus-net/isthmus/internal/testenv"
)

// repoRoot is the clone's top directory, found from this file's path.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// BinDir returns the cache directory of etcd and kube-apiserver exactly as
// tools/kube/build.sh computes it: $ISTHMUS_KUBE_CACHE (default
// /var/cache/isthmus/kube) / first 16 hex digits of sha256(tools/kube/go.sum).
func BinDir() (string, error) {
	sum, err := os.ReadFile(filepath.Join(repoRoot(), "tools", "kube", "go.sum"))
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

// Binaries returns the paths of etcd and kube-apiserver, skipping t (or
// failing it under CI) when they are not built.
func Binaries(t testing.TB) (etcd, apiserver string) {
	t.Helper()
	dir, err := BinDir()
	if err != nil {
		t.Fatal(err)
	}
	etcd, apiserver = filepath.Join(dir, "etcd"), filepath.Join(dir, "kube-apiserver")
	for _, b := range []string{etcd, apiserver} {
		if _, err := os.Stat(b); err != nil {
			testenv.Unavailable(t, fmt.Sprintf("%s is not built (run `make kube-bins`)", b))
		}
	}
	return etcd, apiserver
}
