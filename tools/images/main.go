// Command images writes container images of Isthmus's binaries as image
// archives, without a registry or a container daemon. `make images` runs
// it; `docker load` and `ctr -n k8s.io images import` accept what it
// writes (the docker-save format, which both read).
//
//	images build -out DIR -version V [-prefix isthmus.dev/] NAME=FILE[,FILE...]...
//	images inspect ARCHIVE
//
// build makes, for each NAME, an image tagged PREFIX+NAME:V with one layer
// holding each FILE at /usr/local/bin/<base name> (mode 0755, owner root,
// a fixed time, so the same binaries give the same layer) and the first
// FILE as entrypoint, and writes it to DIR/NAME.tar. inspect reads an
// archive back and prints, as JSON, its tag, platform, entrypoint and the
// SHA-256 of every file in its layers.
package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// binDir is where binaries go in every image.
const binDir = "usr/local/bin"

// epoch is the time of every file and of the image: images of the same
// binaries are the same bytes.
var epoch = time.Unix(0, 0).UTC()

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("want a command: build or inspect")
	}
	switch args[0] {
	case "build":
		return buildCmd(args[1:], stdout, stderr)
	case "inspect":
		if len(args) != 2 {
			return errors.New("inspect: want one archive")
		}
		info, err := inspect(args[1])
		if err != nil {
			return err
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(info)
	}
	return fmt.Errorf("unknown command %q: want build or inspect", args[0])
}

func buildCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("images build", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "directory the archives are written to (required)")
	version := fs.String("version", "", "image tag (required)")
	prefix := fs.String("prefix", "isthmus.dev/", "repository prefix of every image")
	arch := fs.String("arch", runtime.GOARCH, "architecture of the binaries")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || *version == "" || fs.NArg() == 0 {
		return errors.New("build: want -out, -version and at least one NAME=FILE[,FILE...]")
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fmt.Errorf("build: %w", err)
	}
	for _, spec := range fs.Args() {
		imgName, files, ok := strings.Cut(spec, "=")
		if !ok || imgName == "" || files == "" {
			return fmt.Errorf("build: %q is not NAME=FILE[,FILE...]", spec)
		}
		tag, err := name.NewTag(*prefix + imgName + ":" + *version)
		if err != nil {
			return fmt.Errorf("build %s: %w", imgName, err)
		}
		img, err := image(strings.Split(files, ","), *arch, *version)
		if err != nil {
			return fmt.Errorf("build %s: %w", imgName, err)
		}
		dst := filepath.Join(*out, imgName+".tar")
		if err := writeArchive(dst, tag, img); err != nil {
			return fmt.Errorf("build %s: %w", imgName, err)
		}
		fmt.Fprintf(stdout, "%s: %s\n", dst, tag)
	}
	return nil
}

// image builds a one-layer image holding files under /usr/local/bin.
func image(files []string, arch, version string) (v1.Image, error) {
	layerTar, err := layer(files)
	if err != nil {
		return nil, err
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return nil, fmt.Errorf("make layer: %w", err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		return nil, fmt.Errorf("add layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Created = v1.Time{Time: epoch}
	cf.Config.Entrypoint = []string{"/" + path.Join(binDir, filepath.Base(files[0]))}
	cf.Config.Env = []string{"PATH=/usr/local/bin"}
	cf.Config.Labels = map[string]string{
		"org.opencontainers.image.title":   filepath.Base(files[0]),
		"org.opencontainers.image.version": version,
		"org.opencontainers.image.source":  "https://github.com/isthmus-net/isthmus",
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("set config: %w", err)
	}
	return img, nil
}

// layer returns the uncompressed tar of the layer: the directories down to
// binDir, a /tmp, and each file.
func layer(files []string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(p string, mode int64) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: p + "/", Mode: mode, ModTime: epoch, Format: tar.FormatPAX})
	}
	for _, d := range []string{"usr", "usr/local", binDir} {
		if err := dir(d, 0o755); err != nil {
			return nil, fmt.Errorf("write layer: %w", err)
		}
	}
	if err := dir("tmp", 0o1777); err != nil {
		return nil, fmt.Errorf("write layer: %w", err)
	}
	seen := map[string]bool{}
	for _, f := range files {
		base := filepath.Base(f)
		if seen[base] {
			return nil, fmt.Errorf("two files named %s", base)
		}
		seen[base] = true
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read binary: %w", err)
		}
		h := &tar.Header{Typeflag: tar.TypeReg, Name: path.Join(binDir, base), Mode: 0o755, Size: int64(len(b)), ModTime: epoch, Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("write layer: %w", err)
		}
		if _, err := tw.Write(b); err != nil {
			return nil, fmt.Errorf("write layer: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("write layer: %w", err)
	}
	return buf.Bytes(), nil
}

// writeArchive writes img tagged tag to dst through a temporary file, so a
// reader never sees half an archive.
func writeArchive(dst string, tag name.Tag, img v1.Image) error {
	tmp := dst + ".tmp"
	if err := tarball.WriteToFile(tmp, tag, img); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", dst, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", dst, err)
	}
	return nil
}

// Info is what inspect prints about an archive.
type Info struct {
	Tags         []string          `json:"tags"`
	OS           string            `json:"os"`
	Architecture string            `json:"architecture"`
	Entrypoint   []string          `json:"entrypoint"`
	Digest       string            `json:"digest"`
	Files        map[string]string `json:"files"` // path → sha256 hex of regular files
	Modes        map[string]string `json:"modes"` // path → octal mode
}

// inspect reads an archive back: its manifest, config and every layer.
func inspect(archive string) (Info, error) {
	var info Info
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(archive) })
	if err != nil {
		return info, fmt.Errorf("inspect %s: read manifest: %w", archive, err)
	}
	if len(m) != 1 {
		return info, fmt.Errorf("inspect %s: %d images, want 1", archive, len(m))
	}
	info.Tags = m[0].RepoTags
	sort.Strings(info.Tags)
	img, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		return info, fmt.Errorf("inspect %s: %w", archive, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return info, fmt.Errorf("inspect %s: read config: %w", archive, err)
	}
	info.OS, info.Architecture, info.Entrypoint = cf.OS, cf.Architecture, cf.Config.Entrypoint
	d, err := img.Digest()
	if err != nil {
		return info, fmt.Errorf("inspect %s: digest: %w", archive, err)
	}
	info.Digest = d.String()
	layers, err := img.Layers()
	if err != nil {
		return info, fmt.Errorf("inspect %s: layers: %w", archive, err)
	}
	if len(layers) != len(cf.RootFS.DiffIDs) {
		return info, fmt.Errorf("inspect %s: %d layers, config names %d", archive, len(layers), len(cf.RootFS.DiffIDs))
	}
	info.Files, info.Modes = map[string]string{}, map[string]string{}
	for i, l := range layers {
		if err := readLayer(l, cf.RootFS.DiffIDs[i], info); err != nil {
			return info, fmt.Errorf("inspect %s: layer %d: %w", archive, i, err)
		}
	}
	return info, nil
}

// readLayer checks the layer's compressed bytes against its digest in the
// manifest and its uncompressed bytes against diffID, the image config's
// name for it, and records its files.
func readLayer(l v1.Layer, diffID v1.Hash, info Info) error {
	if err := checkDigest(l.Compressed, l.Digest); err != nil {
		return fmt.Errorf("compressed: %w", err)
	}
	if err := checkDigest(l.Uncompressed, func() (v1.Hash, error) { return diffID, nil }); err != nil {
		return fmt.Errorf("uncompressed: %w", err)
	}
	rc, err := l.Uncompressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		info.Modes["/"+strings.TrimSuffix(h.Name, "/")] = fmt.Sprintf("%o", h.Mode)
		if h.Typeflag != tar.TypeReg {
			continue
		}
		s := sha256.New()
		if _, err := io.Copy(s, tr); err != nil {
			return err
		}
		info.Files["/"+h.Name] = hex.EncodeToString(s.Sum(nil))
	}
	return nil
}

// checkDigest hashes what open returns and compares it with want.
func checkDigest(open func() (io.ReadCloser, error), want func() (v1.Hash, error)) error {
	w, err := want()
	if err != nil {
		return err
	}
	rc, err := open()
	if err != nil {
		return err
	}
	defer rc.Close()
	s := sha256.New()
	if _, err := io.Copy(s, rc); err != nil {
		return err
	}
	if got := "sha256:" + hex.EncodeToString(s.Sum(nil)); got != w.String() {
		return fmt.Errorf("digest %s, the image says %s", got, w)
	}
	return nil
}
