package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/isthmus-net/isthmus/nos"
)

// Test accounts.
const (
	adminUser, adminPass   = "alice", "alice-secret"
	viewerUser, viewerPass = "victor", "victor-secret"
)

// testHashes are computed once: bcrypt is slow on purpose.
var testHashes = sync.OnceValues(func() (map[string]string, error) {
	a, err := HashPassword(adminPass)
	if err != nil {
		return nil, err
	}
	v, err := HashPassword(viewerPass)
	if err != nil {
		return nil, err
	}
	return map[string]string{adminUser: a, viewerUser: v}, nil
})

// testEnv is a core and a gNMI server listening on 127.0.0.1.
type testEnv struct {
	core    *nos.Core
	srv     *Server
	addr    string
	dataDir string
	conn    *grpc.ClientConn
	cli     gpb.GNMIClient
}

func testUsers(t testing.TB) []User {
	t.Helper()
	h, err := testHashes()
	if err != nil {
		t.Fatal(err)
	}
	return []User{
		{Name: adminUser, PasswordHash: h[adminUser], Role: RoleAdmin},
		{Name: viewerUser, PasswordHash: h[viewerUser], Role: RoleViewer},
	}
}

// newTestEnv starts a core and a TLS gNMI server with an admin and a
// viewer, and a client connection that trusts the server's self-signed
// certificate.
func newTestEnv(t testing.TB, opts ...func(*SecurityConfig)) *testEnv {
	t.Helper()
	dir := t.TempDir()
	st, err := nos.OpenStore(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	core, err := nos.New(st, nos.WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := core.Start(ctx); err != nil {
		t.Fatal(err)
	}
	sec := SecurityConfig{Users: testUsers(t)}
	for _, o := range opts {
		o(&sec)
	}
	srv := New(core, WithLogger(log), WithSecurity(sec), WithDataDir(dir))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, lis) }()
	env := &testEnv{core: core, srv: srv, addr: lis.Addr().String(), dataDir: dir}
	t.Cleanup(func() {
		if env.conn != nil {
			env.conn.Close()
		}
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	if !sec.Insecure {
		// The server creates its certificate before it accepts; wait for it.
		env.conn = env.dial(t, nil)
	} else {
		conn, err := grpc.NewClient(env.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		env.conn = conn
	}
	env.cli = gpb.NewGNMIClient(env.conn)
	return env
}

// dial connects over TLS, trusting the server's certificate in the data
// directory, with an optional client certificate.
func (e *testEnv) dial(t testing.TB, clientCert *tls.Certificate) *grpc.ClientConn {
	t.Helper()
	pool := x509.NewCertPool()
	certFile := filepath.Join(e.dataDir, selfSignedCert)
	var pemBytes []byte
	for range 200 {
		b, err := os.ReadFile(certFile)
		if err == nil && len(b) > 0 {
			pemBytes = b
			break
		}
		waitABit()
	}
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatalf("no certificate in %s", certFile)
	}
	cfg := &tls.Config{RootCAs: pool, ServerName: "localhost"}
	if clientCert != nil {
		cfg.Certificates = []tls.Certificate{*clientCert}
	}
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// as returns a context carrying user's credentials.
func as(user, pass string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "username", user, "password", pass)
}

func admin() context.Context  { return as(adminUser, adminPass) }
func viewer() context.Context { return as(viewerUser, viewerPass) }

func mustPath(t testing.TB, s string) *gpb.Path {
	t.Helper()
	p, err := ygot.StringToStructuredPath(s)
	if err != nil {
		t.Fatalf("path %q: %v", s, err)
	}
	return p
}

func ietf(js string) *gpb.TypedValue {
	return &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: []byte(js)}}
}

func str(s string) *gpb.TypedValue {
	return &gpb.TypedValue{Value: &gpb.TypedValue_StringVal{StringVal: s}}
}

func upd(t testing.TB, path string, v *gpb.TypedValue) *gpb.Update {
	return &gpb.Update{Path: mustPath(t, path), Val: v}
}

// vrfJSON is the JSON_IETF body of an L3VRF with one pool.
func vrfJSON(name, rd, pool string) string {
	return `{"config":{"name":"` + name + `","type":"L3VRF","route-distinguisher":"` + rd + `",
	  "import-route-target":["` + rd + `"],"export-route-target":["` + rd + `"]},
	  "address-pools":{"address-pool":[{"prefix":"` + pool + `","config":{"prefix":"` + pool + `"}}]}}`
}

func vrfPath(name string) string {
	return "/network-instances/network-instance[name=" + name + "]"
}

// addVRF commits a VRF through gNMI.
func (e *testEnv) addVRF(t testing.TB, name, rd, pool string) {
	t.Helper()
	_, err := e.cli.Set(admin(), &gpb.SetRequest{Update: []*gpb.Update{upd(t, vrfPath(name), ietf(vrfJSON(name, rd, pool)))}})
	if err != nil {
		t.Fatalf("add vrf %s: %v", name, err)
	}
}

// configJSON returns the whole running configuration as JSON_IETF via Get.
func (e *testEnv) configJSON(t testing.TB) string {
	t.Helper()
	resp, err := e.cli.Get(admin(), &gpb.GetRequest{Type: gpb.GetRequest_CONFIG, Encoding: gpb.Encoding_JSON_IETF, Path: []*gpb.Path{{}}})
	if err != nil {
		t.Fatalf("get config: %v", err)
	}
	b := resp.GetNotification()[0].GetUpdate()[0].GetVal().GetJsonIetfVal()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("config is not JSON: %v\n%s", err, b)
	}
	out, _ := json.Marshal(v)
	return string(out)
}

func waitABit() { time.Sleep(10 * time.Millisecond) }

func contains(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
