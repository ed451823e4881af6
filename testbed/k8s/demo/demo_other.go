//go:build !linux

package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
)

var errLinux = errors.New("the Kubernetes demo needs Linux (network namespaces, cgroups, containerd)")

func demo(context.Context, *slog.Logger, io.Writer, string, string, string, bool) error {
	return errLinux
}

func down(context.Context, *slog.Logger, string) error { return errLinux }

func daemonsetDemo(context.Context, *slog.Logger, io.Writer, string, string, string) error {
	return errLinux
}
