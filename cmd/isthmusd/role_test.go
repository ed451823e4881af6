package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/isthmus-net/isthmus/server"
)

// bgpPath is the BGP protocol of the default instance.
const bgpPath = "/network-instances/network-instance[name=default]/protocols/protocol[identifier=BGP][name=bgp]/bgp"

// rrStartup is a route reflector's startup-config section: its AS, its
// router id from the environment, and one passive client.
const rrStartup = `startup-config:
  network-instances:
    network-instance:
      - name: default
        config: {name: default, type: DEFAULT}
        protocols:
          protocol:
            - identifier: BGP
              name: bgp
              config: {identifier: BGP, name: bgp}
              bgp:
                global:
                  config: {as: 65000, router-id: "${ISTHMUS_TEST_ROUTER_ID}"}
                neighbors:
                  neighbor:
                    - neighbor-address: 127.0.0.2
                      config: {neighbor-address: 127.0.0.2, peer-as: 65000}
                      transport: {config: {passive-mode: true}}
                      route-reflector: {config: {route-reflector-client: true}}
`

// writeConfig writes an isthmusd config file with an admin user (password
// s3cret), a data dir and a gNMI address, followed by extra.
func writeConfig(t *testing.T, dir, addr, extra string) string {
	t.Helper()
	hash, err := server.HashPassword("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`data-dir: %s
target: rr1
gnmi:
  address: %q
  users:
    - {name: admin, role: admin, password-hash: %q}
`, filepath.Join(dir, "data"), addr, hash) + extra
	p := filepath.Join(dir, "isthmusd.yaml")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// getJSON returns the JSON_IETF value at path, decoded.
func getJSON(t *testing.T, c gpb.GNMIClient, ctx context.Context, path string, typ gpb.GetRequest_DataType) map[string]any {
	t.Helper()
	p, err := ygot.StringToStructuredPath(path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.Get(ctx, &gpb.GetRequest{Path: []*gpb.Path{p}, Type: typ, Encoding: gpb.Encoding_JSON_IETF})
	if err != nil {
		t.Fatalf("get %s: %v", path, err)
	}
	var v map[string]any
	if err := json.Unmarshal(r.GetNotification()[0].GetUpdate()[0].GetVal().GetJsonIetfVal(), &v); err != nil {
		t.Fatalf("decode %s: %v", path, err)
	}
	return v
}

// field returns v[key], whether or not the key carries a module prefix.
func field(v map[string]any, key string) any {
	for k, x := range v {
		if k == key || strings.HasSuffix(k, ":"+key) {
			return x
		}
	}
	return nil
}

func setJSON(c gpb.GNMIClient, ctx context.Context, path, js string) error {
	p, err := ygot.StringToStructuredPath(path)
	if err != nil {
		return err
	}
	_, err = c.Set(ctx, &gpb.SetRequest{Update: []*gpb.Update{{Path: p, Val: &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: []byte(js)}}}}})
	return err
}

// TestStartupConfigPrecedence: a route reflector's startup config is
// committed at start (by user startup-config) and read back over gNMI Get;
// a leaf it names wins over a gNMI Set at the next start while a leaf it
// does not name keeps the gNMI value; a start that changes nothing commits
// nothing.
func TestStartupConfigPrecedence(t *testing.T) {
	bin := buildDaemon(t)
	dir := t.TempDir()
	addr := freePort(t)
	t.Setenv("ISTHMUS_TEST_ROUTER_ID", "10.255.0.1")
	cfgPath := writeConfig(t, dir, addr, "role: rr\nbgp:\n  listen-port: -1\n"+rrStartup)

	start := func() (*proc, gpb.GNMIClient, context.Context) {
		d := startDaemon(t, bin, cfgPath)
		c, ctx := dial(t, addr)
		waitReady(t, c, ctx, d)
		return d, c, ctx
	}
	global := func(c gpb.GNMIClient, ctx context.Context) (any, any) {
		v := getJSON(t, c, ctx, bgpPath+"/global/config", gpb.GetRequest_CONFIG)
		return field(v, "as"), field(v, "router-id")
	}
	system := func(c gpb.GNMIClient, ctx context.Context) (string, string) {
		v := getJSON(t, c, ctx, "/system/state", gpb.GetRequest_STATE)
		return fmt.Sprint(field(v, "revision")), fmt.Sprint(field(v, "user"))
	}
	nbr := bgpPath + "/neighbors/neighbor[neighbor-address=127.0.0.2]/config"

	d, c, ctx := start()
	if as, id := global(c, ctx); fmt.Sprint(as) != "65000" || id != "10.255.0.1" {
		t.Fatalf("after first start: as %v router-id %v, want 65000 10.255.0.1\n%s", as, id, d.logs)
	}
	if rev, user := system(c, ctx); rev != "1" || user != startupUser {
		t.Fatalf("after first start: revision %s by %s, want 1 by %s", rev, user, startupUser)
	}
	if err := setJSON(c, ctx, bgpPath+"/global/config/router-id", `"10.9.9.9"`); err != nil {
		t.Fatalf("set router-id: %v", err)
	}
	if err := setJSON(c, ctx, nbr+"/description", `"set over gnmi"`); err != nil {
		t.Fatalf("set description: %v", err)
	}
	d.stop(t)

	d, c, ctx = start()
	if _, id := global(c, ctx); id != "10.255.0.1" {
		t.Errorf("after restart: router-id %v, want the startup value 10.255.0.1", id)
	}
	if desc := field(getJSON(t, c, ctx, nbr, gpb.GetRequest_CONFIG), "description"); desc != "set over gnmi" {
		t.Errorf("after restart: description %v, want the gNMI value kept", desc)
	}
	if rev, user := system(c, ctx); rev != "4" || user != startupUser {
		t.Errorf("after restart: revision %s by %s, want 4 by %s", rev, user, startupUser)
	}
	d.stop(t)

	d, c, ctx = start()
	if rev, _ := system(c, ctx); rev != "4" {
		t.Errorf("a start with nothing to change committed: revision %s, want 4", rev)
	}
	d.stop(t)
}

// TestRouteReflectorRefusesDataplaneConfig: over gNMI, a route reflector
// refuses VRFs, interfaces, tunnel settings and static routes with
// InvalidArgument naming the role, and keeps its BGP configuration.
func TestRouteReflectorRefusesDataplaneConfig(t *testing.T) {
	bin := buildDaemon(t)
	dir := t.TempDir()
	addr := freePort(t)
	t.Setenv("ISTHMUS_TEST_ROUTER_ID", "10.255.0.2")
	// The role comes from the flag here; the file says nothing of it.
	d := startDaemon(t, bin, writeConfig(t, dir, addr, "bgp:\n  listen-port: -1\n"+rrStartup), "--role", "rr")
	c, ctx := dial(t, addr)
	waitReady(t, c, ctx, d)

	for _, tc := range []struct{ path, js string }{
		{"/network-instances/network-instance[name=red]/config",
			`{"name":"red","type":"L3VRF","route-distinguisher":"65000:7","import-route-target":["65000:7"],"export-route-target":["65000:7"]}`},
		{"/interfaces/interface[name=eth0]/config", `{"name":"eth0","type":"UNDERLAY"}`},
		{"/tunnel/config/source-address", `"192.0.2.1"`},
		{"/acl/acl-sets/acl-set[name=a]/config", `{"name":"a"}`},
	} {
		err := setJSON(c, ctx, tc.path, tc.js)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "role rr runs no dataplane") {
			t.Errorf("set %s on a route reflector: %v, want InvalidArgument naming the role", tc.path, err)
		}
	}
	v := getJSON(t, c, ctx, bgpPath+"/global/config", gpb.GetRequest_CONFIG)
	if id := field(v, "router-id"); id != "10.255.0.2" {
		t.Errorf("router-id %v after refused sets, want 10.255.0.2", id)
	}
	d.stop(t)
}

// TestBadRoleConfig: settings a role cannot act on, bad startup
// configurations and unset environment variables stop isthmusd at start
// with an error that names them, and commit nothing.
func TestBadRoleConfig(t *testing.T) {
	bin := buildDaemon(t)
	t.Setenv("ISTHMUS_TEST_ROUTER_ID", "10.255.0.3")
	startupWith := func(body string) string {
		return "startup-config:\n" + body
	}
	for _, tc := range []struct {
		name  string
		extra string
		args  []string
		want  string
	}{
		{"rr with bpffs", "role: rr\ndataplane:\n  bpffs: /sys/fs/bpf/x\n", nil, "role rr runs no dataplane and no CNI API: remove dataplane.bpffs"},
		{"rr with cni", "role: rr\ncni:\n  socket: /run/x.sock\n", nil, "remove cni"},
		{"rr with bpffs flag", "", []string{"--role", "rr", "--bpffs", "/sys/fs/bpf/x"}, "remove dataplane.bpffs"},
		{"unknown role", "role: router\n", nil, `role "router": want node or rr`},
		{"rr with tunnel in startup", "role: rr\nbgp:\n  listen-port: -1\n" +
			startupWith("  tunnel:\n    config: {source-address: 192.0.2.1}\n"), nil, "/tunnel: invalid: role rr runs no dataplane"},
		{"unknown leaf in startup", "role: rr\n" + startupWith("  tunnel:\n    config: {source-adress: 192.0.2.1}\n"), nil, "source-adress"},
		{"state in startup", "role: rr\n" + startupWith("  tunnel:\n    state: {source-address: 192.0.2.1}\n"), nil, "state (config false)"},
		{"system in startup", "role: rr\n" + startupWith("  system:\n    state: {revision: \"3\"}\n"), nil, "/system is not configuration"},
		{"bad value in startup", "role: rr\nbgp:\n  listen-port: -1\n" + strings.Replace(rrStartup, "${ISTHMUS_TEST_ROUTER_ID}", "10.1.1", 1), nil, "router-id"},
		{"unset variable", "role: rr\ntarget: ${ISTHMUS_TEST_NOT_SET}\n", nil, "environment variable ISTHMUS_TEST_NOT_SET not set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfgPath := writeConfig(t, dir, freePort(t), tc.extra)
			out, err := exec.Command(bin, append([]string{"--config", cfgPath}, tc.args...)...).CombinedOutput()
			if err == nil || !strings.Contains(string(out), tc.want) {
				t.Fatalf("exit %v, want an error containing %q:\n%s", err, tc.want, out)
			}
		})
	}
}

// TestExpandEnv: only ${NAME} is expanded, so bcrypt hashes ($2a$10$...)
// pass through; an unset name is an error.
func TestExpandEnv(t *testing.T) {
	env := map[string]string{"NODE_IP": "10.0.0.7"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	got, err := expandEnv([]byte(`id: "${NODE_IP}" hash: "$2a$10$abc" $NODE_IP`), lookup)
	if err != nil || string(got) != `id: "10.0.0.7" hash: "$2a$10$abc" $NODE_IP` {
		t.Errorf("expandEnv = %q, %v", got, err)
	}
	if _, err := expandEnv([]byte("${A} ${B}"), lookup); err == nil || !strings.Contains(err.Error(), "A, B") {
		t.Errorf("unset names: %v", err)
	}
}

// TestInstallCNI: install-cni puts the plugin (executable) and the conflist
// into the host dirs, and refuses a conflist that would not call the plugin
// without touching the host dirs.
func TestInstallCNI(t *testing.T) {
	src, bin, conf := t.TempDir(), t.TempDir(), t.TempDir()
	plugin := filepath.Join(src, "isthmus-cni")
	os.WriteFile(plugin, []byte("plugin bytes"), 0o755)
	good := filepath.Join(src, "10-isthmus.conflist")
	os.WriteFile(good, []byte(`{"cniVersion":"1.1.0","name":"isthmus","plugins":[{"type":"isthmus-cni","socket":"/run/isthmus/cni.sock"}]}`), 0o644)
	bad := filepath.Join(src, "20-bad.conflist")
	os.WriteFile(bad, []byte(`{"cniVersion":"1.1.0","name":"isthmus","plugins":[{"type":"bridge"}]}`), 0o644)

	var out, errb strings.Builder
	args := []string{"install-cni", "--plugin", plugin, "--bin-dir", bin, "--conf-dir", conf}
	if err := run(append(args, "--conflist", bad), nil, &out, &errb); err == nil || !strings.Contains(err.Error(), "no plugin of type isthmus-cni") {
		t.Fatalf("bad conflist: %v", err)
	}
	if ents, _ := os.ReadDir(bin); len(ents) != 0 {
		t.Fatalf("bad conflist left %v in the bin dir", ents)
	}
	if err := run(append(args, "--conflist", good), nil, &out, &errb); err != nil {
		t.Fatalf("install: %v", err)
	}
	st, err := os.Stat(filepath.Join(bin, "isthmus-cni"))
	if err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("installed plugin: %v %v", st, err)
	}
	if b, _ := os.ReadFile(filepath.Join(conf, "10-isthmus.conflist")); !strings.Contains(string(b), `"isthmus-cni"`) {
		t.Fatalf("installed conflist: %q", b)
	}
	if ents, _ := os.ReadDir(conf); len(ents) != 1 {
		t.Errorf("conf dir holds %d entries, want only the conflist", len(ents))
	}
}

// TestCheckConfig: check-config accepts a valid route reflector config and
// refuses one whose startup-config breaks a semantic rule (here a VRF,
// which the role refuses) or the schema, naming it, without starting
// anything.
func TestCheckConfig(t *testing.T) {
	t.Setenv("ISTHMUS_TEST_ROUTER_ID", "10.255.0.4")
	dir := t.TempDir()
	good := writeConfig(t, dir, "127.0.0.1:1", "role: rr\n"+rrStartup)
	var out, errb strings.Builder
	if err := run([]string{"check-config", "--config", good}, nil, &out, &errb); err != nil || !strings.Contains(out.String(), "role rr, startup-config valid") {
		t.Fatalf("check-config of a good config: %v %s", err, out.String())
	}
	vrf := "role: rr\nstartup-config:\n  network-instances:\n    network-instance:\n      - name: red\n        config: {name: red, type: L3VRF, route-distinguisher: \"65000:1\"}\n"
	bad := writeConfig(t, t.TempDir(), "127.0.0.1:1", vrf)
	if err := run([]string{"check-config", "--config", bad}, nil, &out, &errb); err == nil || !strings.Contains(err.Error(), "network-instance[name=red]") {
		t.Fatalf("check-config of a VRF on a route reflector: %v", err)
	}
	rd := strings.Replace(strings.Replace(vrf, "role: rr\n", "", 1), `"65000:1"`, `"65000"`, 1)
	bad = writeConfig(t, t.TempDir(), "127.0.0.1:1", rd)
	if err := run([]string{"check-config", "--config", bad}, nil, &out, &errb); err == nil || !strings.Contains(err.Error(), "route-distinguisher") {
		t.Fatalf("check-config of a bad route distinguisher: %v", err)
	}
}
