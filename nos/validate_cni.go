package nos

import (
	"fmt"

	"github.com/isthmus-net/isthmus/gen"
)

// validateCNI checks the namespace to VRF mapping the CNI daemon reads:
// each entry names an existing L3VRF.
func validateCNI(d *gen.Device, sc *scope) error {
	nss := cniNamespaces(d)
	for _, name := range sc.keys(listCNI, d) {
		base := fmt.Sprintf("/cni/namespaces/namespace[name=%s]", name)
		cfg := nss[name].GetConfig()
		if cfg.GetName() != name {
			return invalidf(base+"/config/name", "name %q differs from the key %q", cfg.GetName(), name)
		}
		vrf := cfg.GetNetworkInstance()
		if vrf == "" {
			return invalidf(base+"/config/network-instance", "a namespace needs a network instance")
		}
		ni := d.GetNetworkInstances().GetNetworkInstance(vrf)
		if ni == nil {
			return invalidf(base+"/config/network-instance", "network instance %q does not exist", vrf)
		}
		if ni.GetConfig().GetType() != gen.IsthmusTypes_NetworkInstanceType_L3VRF {
			return invalidf(base+"/config/network-instance", "%q is not an L3VRF", vrf)
		}
	}
	return nil
}
