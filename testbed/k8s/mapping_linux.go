package k8s

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// MapNamespace makes isthmusd on every node put the pods of Kubernetes
// namespace ns in VRF vrf: one gNMI Set of /cni/namespaces/namespace, the
// entry isthmus-controller writes for a namespace mapped to a network.
func (c *Cluster) MapNamespace(ctx context.Context, ns, vrf string) error {
	gnmic := c.tb.Binaries().Gnmic
	if gnmic == "" {
		return fmt.Errorf("map namespace %s: no gnmic binary", ns)
	}
	req, err := json.Marshal(map[string]any{"updates": []any{map[string]any{
		"path":     "/cni/namespaces/namespace[name=" + ns + "]/config",
		"encoding": "json_ietf",
		"value":    map[string]string{"name": ns, "network-instance": vrf},
	}}})
	if err != nil {
		return fmt.Errorf("map namespace %s: %w", ns, err)
	}
	file := filepath.Join(c.Dir, "map-"+ns+".json")
	if err := os.WriteFile(file, req, 0o644); err != nil {
		return fmt.Errorf("map namespace %s: %w", ns, err)
	}
	for _, n := range c.nodeNames {
		target, err := c.tb.GNMIAddr(n)
		if err != nil {
			return err
		}
		if _, err := c.tb.Gnmic(ctx, gnmic, n, target, "set", "--request-file", file); err != nil {
			return fmt.Errorf("map namespace %s to vrf %s on %s: %w", ns, vrf, n, err)
		}
	}
	return nil
}
