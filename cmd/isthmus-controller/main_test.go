package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFlags(t *testing.T) {
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600)
	var out strings.Builder
	if err := run([]string{"--help"}, &out); err != nil || !strings.Contains(out.String(), "-route-reflectors") {
		t.Fatalf("--help: %v\n%s", err, out.String())
	}
	bad := []struct {
		args []string
		want string
	}{
		{[]string{"--no-such-flag"}, "no-such-flag"},
		{[]string{"--kubeconfig", kubeconfig, "--route-reflectors", "10.0.0.300", "--bgp-as", "65000"}, "10.0.0.300"},
		{[]string{"--kubeconfig", kubeconfig, "--route-reflectors", "10.0.0.1"}, "--bgp-as"},
		{[]string{"--kubeconfig", kubeconfig, "--namespace-isolation", "--bgp-as", "65000"}, "--default-network"},
		{[]string{"--kubeconfig", kubeconfig, "--gnmi-cert-file", "x.pem"}, "go together"},
		{[]string{"--kubeconfig", kubeconfig, "--gnmi-password-file", "/nonexistent"}, "gnmi password"},
		{[]string{"--kubeconfig", kubeconfig, "--log-level", "loud"}, "loud"},
		{[]string{"--kubeconfig", kubeconfig, "extra"}, "extra"},
	}
	for _, c := range bad {
		var out strings.Builder
		err := run(c.args, &out)
		if err == nil || !strings.Contains(err.Error()+out.String(), c.want) {
			t.Errorf("%v: err %v, want one naming %q", c.args, err, c.want)
		}
	}
}
