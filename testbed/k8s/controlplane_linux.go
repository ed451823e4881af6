package k8s

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ServiceCIDR is the cluster's Service address range.
const ServiceCIDR = "10.96.0.0/16"

// controlPlane starts etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler in the control-plane node and waits for the API server.
// Identities come from a token file: an admin in system:masters, each
// kubelet as system:node:<name>, the controller manager and the scheduler
// as their own users, bound by the API server's default RBAC.
func (c *Cluster) controlPlane(ctx context.Context) error {
	dir := filepath.Join(c.Dir, "control-plane")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("start control plane: %w", err)
	}
	bin := func(p string) string { return filepath.Join(c.bins, p) }
	etcdURL := "http://127.0.0.1:2379"
	peerURL := "http://127.0.0.1:2380"
	if err := c.startCP(ctx, "etcd", bin("etcd"),
		"--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "default="+peerURL,
		"--unsafe-no-fsync", "--log-level", "warn"); err != nil {
		return err
	}

	c.tokens = map[string]string{}
	var tokenFile strings.Builder
	users := []struct{ name, user, groups string }{
		{"admin", "isthmus-admin", "system:masters"},
		{"kube-controller-manager", "system:kube-controller-manager", ""},
		{"kube-scheduler", "system:kube-scheduler", ""},
	}
	for _, n := range c.nodeNames {
		users = append(users, struct{ name, user, groups string }{"kubelet-" + n, "system:node:" + n, "system:nodes"})
	}
	for _, u := range users {
		tok, err := randomHex()
		if err != nil {
			return err
		}
		c.tokens[u.name] = tok
		fmt.Fprintf(&tokenFile, "%s,%s,%s,%q\n", tok, u.user, u.user, u.groups)
	}
	tokens := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(tokenFile.String()), 0o600); err != nil {
		return fmt.Errorf("start control plane: %w", err)
	}
	saKey := filepath.Join(dir, "sa.key")
	if err := writeRSAKey(saKey); err != nil {
		return err
	}
	certDir := filepath.Join(dir, "certs")
	addr := ControlPlaneAddr.String()
	if err := c.startCP(ctx, "kube-apiserver", bin("kube-apiserver"),
		"--etcd-servers", etcdURL,
		// Every address of the node: ControlPlaneAddr and KubernetesServiceIP.
		"--bind-address", "0.0.0.0", "--advertise-address", addr,
		"--secure-port", strconv.Itoa(APIServerPort),
		"--cert-dir", certDir,
		"--token-auth-file", tokens,
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--service-account-key-file", saKey,
		"--service-account-signing-key-file", saKey,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-cluster-ip-range", ServiceCIDR,
		"--kubelet-preferred-address-types=InternalIP",
		"--allow-privileged=true",
		"--profiling=false"); err != nil {
		return err
	}
	if err := c.waitAPIServer(ctx); err != nil {
		return err
	}
	c.Kubeconfig = filepath.Join(dir, "admin.kubeconfig")
	for name, tok := range c.tokens {
		if err := os.WriteFile(filepath.Join(dir, name+".kubeconfig"), []byte(kubeconfig(c.Server, tok)), 0o600); err != nil {
			return fmt.Errorf("start control plane: %w", err)
		}
	}
	if err := c.startCP(ctx, "kube-controller-manager", bin("kube-controller-manager"),
		"--kubeconfig", filepath.Join(dir, "kube-controller-manager.kubeconfig"),
		"--use-service-account-credentials=true",
		"--service-account-private-key-file", saKey,
		"--root-ca-file", filepath.Join(certDir, "apiserver.crt"),
		"--service-cluster-ip-range", ServiceCIDR,
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--profiling=false"); err != nil {
		return err
	}
	if err := c.startCP(ctx, "kube-scheduler", bin("kube-scheduler"),
		"--kubeconfig", filepath.Join(dir, "kube-scheduler.kubeconfig"),
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--profiling=false"); err != nil {
		return err
	}
	return nil
}

// waitAPIServer polls /readyz from the control-plane node for up to 90 s.
func (c *Cluster) waitAPIServer(ctx context.Context) error {
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return c.tb.Dial(ctx, ControlPlaneNode, network, addr)
		},
	}}
	defer hc.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Server+"/readyz", nil)
		if err != nil {
			return fmt.Errorf("wait for kube-apiserver: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+c.tokens["admin"])
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kube-apiserver not ready after 90s: %s", last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func kubeconfig(server, token string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: isthmus, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: user, user: {token: %q}}]
contexts: [{name: isthmus, context: {cluster: isthmus, user: user}}]
current-context: isthmus
`, server, token)
}

func randomHex() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("make token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

func writeRSAKey(path string) error {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("make service account key: %w", err)
	}
	b := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("write service account key: %w", err)
	}
	return nil
}

// startCP starts a control-plane program and keeps it for Down.
func (c *Cluster) startCP(ctx context.Context, name string, argv ...string) error {
	p, err := c.tb.StartWith(ctx, ControlPlaneNode, name, hostMounts, argv...)
	if err != nil {
		return err
	}
	c.procs[name] = p
	return nil
}
