package nos

import (
	"fmt"

	"github.com/isthmus-net/isthmus/gen"
)

// validateEnforced refuses configuration the forwarder would accept and
// not act on as written: tags on an interface that is not a pod interface
// (tag selectors resolve the addresses of pod interfaces and address
// groups only), and a port match on port 0 alone (the classifier reads a
// zero port as no port constraint: the entry would match every port; a
// range from 0 is kept, it means what it says).
func validateEnforced(d *gen.Device, sc *scope) error {
	for _, name := range sc.keys(listIf, d) {
		intf := Interfaces(d)[name]
		if intf.GetTags() == nil || len(intf.GetTags().Tag) == 0 {
			continue
		}
		if t := intf.GetConfig().GetType(); t != gen.IsthmusTypes_InterfaceType_POD {
			return invalidf(fmt.Sprintf("/interfaces/interface[name=%s]/tags", name),
				"tags apply to pod interfaces only (this one is %s): tag selectors match pods and address groups", t)
		}
	}
	for _, name := range sc.keys(listACL, d) {
		set := aclSets(d)[name]
		entries := aclEntryMap(set)
		for _, seq := range sc.aclEntries(name, set) {
			cfg := entries[seq].GetConfig()
			base := fmt.Sprintf("/acl/acl-sets/acl-set[name=%s]/acl-entries/acl-entry[sequence-id=%d]/config", name, seq)
			for _, r := range []struct {
				name       string
				first, end *uint16
			}{{"source-port", cfg.SourcePort, cfg.SourcePortEnd}, {"destination-port", cfg.DestinationPort, cfg.DestinationPortEnd}} {
				if r.first != nil && *r.first == 0 && (r.end == nil || *r.end == 0) {
					return invalidf(base+"/"+r.name, "port 0 alone is no port a flow uses (leave %s unset to match any port, or give a range with %s-end)", r.name, r.name)
				}
			}
		}
	}
	return nil
}
