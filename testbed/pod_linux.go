package testbed

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
)

// Pod is a network namespace attached to a tenant VRF on a host through
// isthmus-cni, as a container runtime would attach a pod.
type Pod struct {
	// Name is the pod's name, unique on its host.
	Name string
	// Host is the node whose isthmusd serves the pod.
	Host string
	// Tenant is the CNI network, and so the VRF.
	Tenant string
	// Netns is the pod's namespace name; it starts with the run's prefix.
	Netns string
	// Address is the address isthmusd gave the pod.
	Address netip.Addr
}

// AddPod creates a pod namespace and runs `isthmus-cni` ADD for it inside
// host, against the host's isthmusd; it returns the pod with its address.
func (tb *Testbed) AddPod(ctx context.Context, host, name, tenant string) (*Pod, error) {
	p := &Pod{Name: name, Host: host, Tenant: tenant, Netns: tb.Namespace(host) + "." + name}
	if err := tb.state.addNamespace(p.Netns); err != nil {
		return nil, fmt.Errorf("add pod %s on %s: %w", name, host, err)
	}
	for _, argv := range [][]string{{"ip", "netns", "add", p.Netns}, {"ip", "-n", p.Netns, "link", "set", "lo", "up"}} {
		if out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("add pod %s on %s: %s: %w: %s", name, host, strings.Join(argv, " "), err, out)
		}
	}
	out, err := tb.cni(ctx, "ADD", p)
	if err != nil {
		return nil, err
	}
	var res struct {
		IPs []struct {
			Address string `json:"address"`
		} `json:"ips"`
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res.IPs) == 0 {
		return nil, fmt.Errorf("add pod %s on %s: no address in the cni result %q: %v", name, host, out, err)
	}
	pfx, err := netip.ParsePrefix(res.IPs[0].Address)
	if err != nil {
		return nil, fmt.Errorf("add pod %s on %s: cni result address: %w", name, host, err)
	}
	p.Address = pfx.Addr()
	tb.log.Info("pod added", "host", host, "pod", name, "tenant", tenant, "address", p.Address)
	return p, nil
}

// DelPod runs `isthmus-cni` DEL for the pod and deletes its namespace.
func (tb *Testbed) DelPod(ctx context.Context, p *Pod) error {
	if _, err := tb.cni(ctx, "DEL", p); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "ip", "netns", "delete", p.Netns).CombinedOutput(); err != nil {
		return fmt.Errorf("delete pod %s netns: %w: %s", p.Name, err, out)
	}
	return nil
}

// cni runs the plugin inside the pod's host with the CNI environment.
func (tb *Testbed) cni(ctx context.Context, command string, p *Pod) ([]byte, error) {
	plugin := tb.Binaries().CNI
	if plugin == "" {
		return nil, fmt.Errorf("%w: no isthmus-cni binary", ErrNotAvailable)
	}
	conf, err := json.Marshal(map[string]any{
		"cniVersion": "1.1.0", "name": p.Tenant, "type": "isthmus-cni", "socket": tb.CNISocket(p.Host),
	})
	if err != nil {
		return nil, fmt.Errorf("encode cni config: %w", err)
	}
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", tb.Namespace(p.Host), plugin)
	cmd.Env = []string{
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		"CNI_COMMAND=" + command,
		"CNI_CONTAINERID=" + p.Netns,
		"CNI_NETNS=" + filepath.Join(netnsDir, p.Netns),
		"CNI_IFNAME=eth0",
		"CNI_PATH=" + filepath.Dir(plugin),
		"CNI_ARGS=K8S_POD_NAMESPACE=" + p.Tenant + ";K8S_POD_NAME=" + p.Name,
	}
	cmd.Stdin = bytes.NewReader(conf)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("cni %s pod %s on %s: %w: %s %s", command, p.Name, p.Host, err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

// PodPing sends an echo flow from pod p.
func (tb *Testbed) PodPing(ctx context.Context, p *Pod, o PingOptions) (PingStats, error) {
	return pingFrom(ctx, filepath.Join(netnsDir, p.Netns), o)
}
