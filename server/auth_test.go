package server

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

func TestAuthentication(t *testing.T) {
	e := newTestEnv(t)
	set := &gpb.SetRequest{Update: []*gpb.Update{upd(t, vrfPath("red"), ietf(vrfJSON("red", "65000:1", "10.1.0.0/24")))}}
	get := &gpb.GetRequest{Path: []*gpb.Path{{}}}
	for _, c := range []struct {
		name string
		ctx  context.Context
		code codes.Code
	}{
		{"no credentials", context.Background(), codes.Unauthenticated},
		{"wrong password", as(adminUser, "nope"), codes.Unauthenticated},
		{"unknown user", as("mallory", adminPass), codes.Unauthenticated},
		{"empty password", as(adminUser, ""), codes.Unauthenticated},
	} {
		if _, err := e.cli.Set(c.ctx, set); status.Code(err) != c.code {
			t.Errorf("set, %s: %v, want %s", c.name, err, c.code)
		}
		if _, err := e.cli.Get(c.ctx, get); status.Code(err) != c.code {
			t.Errorf("get, %s: %v, want %s", c.name, err, c.code)
		}
		if _, err := e.cli.Capabilities(c.ctx, &gpb.CapabilityRequest{}); status.Code(err) != c.code {
			t.Errorf("capabilities, %s: %v, want %s", c.name, err, c.code)
		}
		sub, err := e.cli.Subscribe(c.ctx)
		if err == nil {
			_, err = sub.Recv()
		}
		if status.Code(err) != c.code {
			t.Errorf("subscribe, %s: %v, want %s", c.name, err, c.code)
		}
	}
	// A viewer reads but may not write.
	_, err := e.cli.Set(viewer(), set)
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), viewerUser) {
		t.Errorf("viewer set: %v, want PermissionDenied naming the user", err)
	}
	if _, err := e.cli.Get(viewer(), get); err != nil {
		t.Errorf("viewer get: %v", err)
	}
	// The admin writes, and the commit history names them.
	if _, err := e.cli.Set(admin(), set); err != nil {
		t.Fatalf("admin set: %v", err)
	}
	hist, err := e.core.History(1)
	if err != nil || len(hist) != 1 || hist[0].User != adminUser {
		t.Errorf("history = %v, %v; want one commit by %s", hist, err, adminUser)
	}
}

func TestInsecureWithoutUsers(t *testing.T) {
	e := newTestEnv(t, func(s *SecurityConfig) { s.Insecure, s.Users = true, nil })
	if _, err := e.cli.Set(context.Background(), &gpb.SetRequest{Update: []*gpb.Update{upd(t, vrfPath("red"), ietf(vrfJSON("red", "65000:1", "10.1.0.0/24")))}}); err != nil {
		t.Fatalf("insecure set without credentials: %v", err)
	}
}

func TestInsecureWithUsers(t *testing.T) {
	e := newTestEnv(t, func(s *SecurityConfig) { s.Insecure = true })
	if _, err := e.cli.Get(context.Background(), &gpb.GetRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("insecure with users, no credentials: %v", err)
	}
	if _, err := e.cli.Get(viewer(), &gpb.GetRequest{}); err != nil {
		t.Errorf("insecure with users, viewer: %v", err)
	}
}

func TestBadUsersRefuseToServe(t *testing.T) {
	for _, users := range [][]User{
		{{Name: "a", PasswordHash: "plain", Role: RoleAdmin}},
		{{Name: "a", PasswordHash: testUsers(t)[0].PasswordHash, Role: "root"}},
		{{Name: "", PasswordHash: testUsers(t)[0].PasswordHash, Role: RoleAdmin}},
		{testUsers(t)[0], testUsers(t)[0]},
	} {
		s := New(nil, WithSecurity(SecurityConfig{Users: users, Insecure: true}))
		if _, err := s.grpcServer(context.Background()); err == nil {
			t.Errorf("users %v accepted", users)
		}
	}
}

func TestHashPassword(t *testing.T) {
	h, err := HashPassword("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$2") || strings.Contains(h, "s3cret") {
		t.Errorf("hash = %q", h)
	}
	if _, err := HashPassword(""); err == nil {
		t.Error("empty password hashed")
	}
}

// TestSelfSignedCertificateKept checks that the certificate created on
// first start is reused on the next.
func TestSelfSignedCertificateKept(t *testing.T) {
	dir := t.TempDir()
	c1, k1, err := ensureSelfSigned(dir)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := os.ReadFile(c1)
	if fi, err := os.Stat(k1); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode: %v, %v", fi, err)
	}
	c2, _, err := ensureSelfSigned(dir)
	if err != nil {
		t.Fatal(err)
	}
	second, _ := os.ReadFile(c2)
	if !bytes.Equal(first, second) {
		t.Error("certificate recreated on second start")
	}
	block, _ := pem.Decode(first)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || cert.VerifyHostname("localhost") != nil || cert.VerifyHostname("127.0.0.1") != nil {
		t.Errorf("certificate: key %T, names %v %v", cert.PublicKey, cert.DNSNames, cert.IPAddresses)
	}
}

// TestMutualTLS requires a client certificate signed by the configured CA.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	caCert, caKey := newCA(t)
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caCert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newTestEnv(t, func(s *SecurityConfig) { s.ClientCA = caFile })

	good := e.dial(t, clientCert(t, caCert, caKey))
	defer good.Close()
	if _, err := gpb.NewGNMIClient(good).Capabilities(viewer(), &gpb.CapabilityRequest{}); err != nil {
		t.Errorf("with a client certificate: %v", err)
	}
	// e.cli has no client certificate.
	if _, err := e.cli.Capabilities(viewer(), &gpb.CapabilityRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("without a client certificate: %v, want Unavailable (handshake refused)", err)
	}
	otherCA, otherKey := newCA(t)
	bad := e.dial(t, clientCert(t, otherCA, otherKey))
	defer bad.Close()
	if _, err := gpb.NewGNMIClient(bad).Capabilities(viewer(), &gpb.CapabilityRequest{}); err == nil {
		t.Error("a certificate from another CA was accepted")
	}
}

func newCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func clientCert(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "client"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestServeStopsWithOpenStream checks that cancelling Serve's context ends
// a subscription instead of waiting for it.
func TestServeStopsWithOpenStream(t *testing.T) {
	e := newTestEnv(t)
	e.addVRF(t, "red", "65000:1", "10.1.0.0/24")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- e.srv.Serve(ctx, lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{InsecureSkipVerify: true})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sub, err := gpb.NewGNMIClient(conn).Subscribe(viewer())
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Send(&gpb.SubscribeRequest{Request: &gpb.SubscribeRequest_Subscribe{Subscribe: &gpb.SubscriptionList{
		Mode:         gpb.SubscriptionList_STREAM,
		Subscription: []*gpb.Subscription{{Path: mustPath(t, vrfPath("red")), Mode: gpb.SubscriptionMode_ON_CHANGE}},
	}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Recv(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(stopGrace - time.Second):
		t.Fatal("Serve waited for the subscription")
	}
	t.Logf("stopped in %v", time.Since(start))
}
