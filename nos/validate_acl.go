package nos

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/isthmus-net/isthmus/gen"
)

// addressGroups returns the named prefix lists ACL entries match on.
func addressGroups(d *gen.Device) map[string]*gen.IsthmusAcl_Acl_AddressGroups_AddressGroup {
	if d.GetAcl().GetAddressGroups() == nil {
		return nil
	}
	return d.GetAcl().GetAddressGroups().AddressGroup
}

// tagKeys returns the tag keys that selectors may use.
func tagKeys(d *gen.Device) map[string]*gen.IsthmusAcl_Acl_TagKeys_TagKey {
	if d.GetAcl().GetTagKeys() == nil {
		return nil
	}
	return d.GetAcl().GetTagKeys().TagKey
}

// ParseTagTerm splits a tag selector term ("key=value", "key!=value",
// "key", "!key") into its key, its value and its operator: "=", "!=",
// "exists" or "absent".
func ParseTagTerm(term string) (key, value, op string) {
	if k, v, ok := strings.Cut(term, "!="); ok {
		return k, v, "!="
	}
	if k, v, ok := strings.Cut(term, "="); ok {
		return k, v, "="
	}
	if k, ok := strings.CutPrefix(term, "!"); ok {
		return k, "", "absent"
	}
	return term, "", "exists"
}

// validateACLs checks ACL sets, address groups and every reference to
// them: prefixes without host bits (10.0.0.1/24 is a mistake, not a match
// on 10.0.0.0/24), port ranges in order and only with TCP or UDP, an ICMP
// type only with ICMP, reject-with only with REJECT, address groups and
// tag keys that exist, address groups scoped to existing L3VRFs, and
// attachment points that name existing sets.
func validateACLs(d *gen.Device, sc *scope) error {
	groups := addressGroups(d)
	for _, name := range sc.keys(listAddressGroup, d) {
		if err := validateAddressGroup(d, name, groups[name].GetConfig()); err != nil {
			return err
		}
	}
	keys := tagKeys(d)
	for _, name := range sc.keys(listACL, d) {
		set := aclSets(d)[name]
		entries := aclEntryMap(set)
		for _, seq := range sc.aclEntries(name, set) {
			base := fmt.Sprintf("/acl/acl-sets/acl-set[name=%s]/acl-entries/acl-entry[sequence-id=%d]/config", name, seq)
			if err := validateACLEntry(base, entries[seq].GetConfig(), groups, keys); err != nil {
				return err
			}
		}
	}
	for _, name := range sc.keys(listNI, d) {
		cfg := NetworkInstances(d)[name].GetConfig()
		path := fmt.Sprintf("/network-instances/network-instance[name=%s]/config/tunnel-ingress-acl-set", name)
		if err := checkSetNames(d, path, cfg.GetTunnelIngressAclSet()); err != nil {
			return err
		}
		if (len(cfg.GetTunnelIngressAclSet()) > 0 || cfg.GetTunnelIngressDefaultAction() != gen.IsthmusAcl_AclAction_UNSET) &&
			cfg.GetType() != gen.IsthmusTypes_NetworkInstanceType_L3VRF {
			return invalidf(path, "only an L3VRF receives from the tunnel")
		}
	}
	for _, name := range sc.keys(listIf, d) {
		intf := Interfaces(d)[name]
		cfg := intf.GetAcl().GetConfig()
		if cfg == nil {
			continue
		}
		base := fmt.Sprintf("/interfaces/interface[name=%s]/acl/config", name)
		if intf.GetConfig().GetType() != gen.IsthmusTypes_InterfaceType_POD {
			return invalidf(base, "ACL sets attach to pod interfaces only")
		}
		if err := checkSetNames(d, base+"/ingress-acl-set", cfg.GetIngressAclSet()); err != nil {
			return err
		}
		if err := checkSetNames(d, base+"/egress-acl-set", cfg.GetEgressAclSet()); err != nil {
			return err
		}
	}
	return nil
}

// checkSetNames refuses a reference to an ACL set that does not exist.
func checkSetNames(d *gen.Device, path string, names []string) error {
	for _, n := range names {
		if aclSets(d)[n] == nil {
			return invalidf(path, "ACL set %q does not exist", n)
		}
	}
	return nil
}

// validateAddressGroup checks one group: its prefixes and except
// prefixes, and the L3VRF its tags are scoped to (a group scoped to a VRF
// that is missing, or is not an L3VRF, would select nothing by its tags).
func validateAddressGroup(d *gen.Device, name string, cfg *gen.IsthmusAcl_Acl_AddressGroups_AddressGroup_Config) error {
	base := fmt.Sprintf("/acl/address-groups/address-group[name=%s]/config", name)
	if cfg.GetNetworkInstance() != "" {
		ni := NetworkInstances(d)[cfg.GetNetworkInstance()]
		if ni == nil {
			return invalidf(base+"/network-instance", "network instance %q does not exist", cfg.GetNetworkInstance())
		}
		if ni.GetConfig().GetType() != gen.IsthmusTypes_NetworkInstanceType_L3VRF {
			return invalidf(base+"/network-instance", "network instance %q is not an L3VRF (tags select pod addresses in an L3VRF only)", cfg.GetNetworkInstance())
		}
	}
	var prefixes []netip.Prefix
	for _, s := range cfg.GetPrefix() {
		p, err := netip.ParsePrefix(s)
		if err != nil || p != p.Masked() {
			return invalidf(base+"/prefix", "%q is not a network prefix (host bits must be zero)", s)
		}
		prefixes = append(prefixes, p)
	}
	for _, s := range cfg.GetExcept() {
		p, err := netip.ParsePrefix(s)
		if err != nil || p != p.Masked() {
			return invalidf(base+"/except", "%q is not a network prefix (host bits must be zero)", s)
		}
		inside := false
		for _, q := range prefixes {
			inside = inside || (q.Bits() <= p.Bits() && q.Contains(p.Addr()))
		}
		if !inside {
			return invalidf(base+"/except", "%s is inside none of the group's prefixes", s)
		}
	}
	return nil
}

func validateACLEntry(base string, cfg *gen.IsthmusAcl_Acl_AclSets_AclSet_AclEntries_AclEntry_Config,
	groups map[string]*gen.IsthmusAcl_Acl_AddressGroups_AddressGroup, keys map[string]*gen.IsthmusAcl_Acl_TagKeys_TagKey) error {
	for _, leaf := range []struct {
		name string
		val  *string
	}{{"source-address", cfg.SourceAddress}, {"destination-address", cfg.DestinationAddress}} {
		if leaf.val == nil {
			continue
		}
		if p, err := netip.ParsePrefix(*leaf.val); err != nil || p != p.Masked() {
			return invalidf(base+"/"+leaf.name, "%q is not a network prefix (host bits must be zero)", *leaf.val)
		}
	}
	for _, leaf := range []struct {
		name string
		val  *string
	}{{"source-address-group", cfg.SourceAddressGroup}, {"destination-address-group", cfg.DestinationAddressGroup}} {
		if leaf.val != nil && groups[*leaf.val] == nil {
			return invalidf(base+"/"+leaf.name, "address group %q does not exist", *leaf.val)
		}
	}
	for _, leaf := range []struct {
		name  string
		terms []string
	}{{"source-tag-selector", cfg.SourceTagSelector}, {"destination-tag-selector", cfg.DestinationTagSelector}} {
		for _, term := range leaf.terms {
			if k, _, _ := ParseTagTerm(term); keys[k] == nil {
				return invalidf(base+"/"+leaf.name, "tag key %q is not declared in /acl/tag-keys", k)
			}
		}
	}
	proto := cfg.GetProtocol()
	for _, r := range []struct {
		name       string
		first, end *uint16
	}{{"source-port", cfg.SourcePort, cfg.SourcePortEnd}, {"destination-port", cfg.DestinationPort, cfg.DestinationPortEnd}} {
		if r.end != nil && r.first == nil {
			return invalidf(base+"/"+r.name+"-end", "a range needs its first port in %s", r.name)
		}
		if r.first != nil && r.end != nil && *r.end < *r.first {
			return invalidf(base+"/"+r.name+"-end", "port range %d..%d is reversed", *r.first, *r.end)
		}
		if r.first != nil && (cfg.Protocol == nil || (proto != 6 && proto != 17)) {
			return invalidf(base+"/"+r.name, "ports need protocol 6 (TCP) or 17 (UDP)")
		}
	}
	if cfg.IcmpType != nil && (cfg.Protocol == nil || proto != 1) {
		return invalidf(base+"/icmp-type", "an ICMP type needs protocol 1 (ICMP)")
	}
	if cfg.GetAction() == gen.IsthmusAcl_AclAction_UNSET {
		return invalidf(base+"/action", "action is required (ACCEPT, DROP or REJECT)")
	}
	if cfg.RejectWith != gen.IsthmusAcl_RejectKind_UNSET && cfg.GetAction() != gen.IsthmusAcl_AclAction_REJECT {
		return invalidf(base+"/reject-with", "reject-with needs action REJECT (the action is %s)", cfg.GetAction())
	}
	return nil
}
