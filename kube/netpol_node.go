package kube

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
)

// policyWorker brings one node's policy configuration (pod interface tags
// and ACL attachments, the controller's ACL sets, address groups and tag
// keys) to the latest intent, next to the node's nodeWorker: one
// goroutine per node. It reads the node before every change, because pod
// interfaces come and go with the node's CNI, not with the controller.
type policyWorker struct {
	gnmiWorker
	sets *countingSets

	mu   sync.Mutex // guards want
	want *nodePolicy
}

// errPodsPending says pods of the intent that have an address have no
// interface on the node (yet): the worker looks again with backoff.
var errPodsPending = errors.New("pods without an interface on the node yet")

func newPolicyWorker(name, addr string, cfg *Config, sets *countingSets) *policyWorker {
	w := &policyWorker{sets: sets}
	w.gnmiWorker = newGNMIWorker(name, addr, cfg, cfg.Logger.With("node", name, "gnmi", addr, "part", "policy"),
		"configure node policy", 10*time.Second, errPodsPending)
	w.pass = w.configure
	return w
}

// set hands the worker a new intent. A pod's address is part of it, so
// the pod's status after its CNI ADD (the interface is there by then)
// wakes the worker.
func (w *policyWorker) set(np *nodePolicy) {
	w.mu.Lock()
	same := w.want != nil && w.want.equal(np)
	w.want = np
	w.mu.Unlock()
	if !same {
		w.poke()
	}
}

// configure is the worker's pass: it applies the intent on every change
// and at every resync; failures and pods still without interfaces retry
// with backoff.
func (w *policyWorker) configure(ctx context.Context, c gpb.GNMIClient, _ bool) error {
	w.mu.Lock()
	want := w.want
	w.mu.Unlock()
	if want == nil {
		return nil
	}
	return w.apply(ctx, c, want)
}

// apply reads the node and sends one Set with the difference.
func (w *policyWorker) apply(ctx context.Context, c gpb.GNMIClient, want *nodePolicy) error {
	rctx, cancel := context.WithTimeout(ctx, w.cfg.GNMI.Timeout)
	have, err := readNodePolicy(rctx, c)
	cancel()
	if err != nil {
		return fmt.Errorf("read node %s policy: %w", w.name, err)
	}
	req, pending, err := policySetRequest(have, want)
	if err != nil {
		return err
	}
	if req != nil {
		sctx, cancel := context.WithTimeout(ctx, w.cfg.GNMI.Timeout)
		_, err = c.Set(sctx, req)
		cancel()
		w.sets.add()
		if err != nil {
			return setError(w.name, "policy", err)
		}
		w.log.Debug("configured node policy", "deleted", len(req.Delete), "replaced", len(req.Replace))
	}
	if pending > 0 {
		return fmt.Errorf("%w: %d", errPodsPending, pending)
	}
	return nil
}

// podInterface is a pod interface as read from the node.
type podInterface struct {
	pod  string // namespace/name
	tags map[string]string
	acl  *gen.IsthmusInterfaces_Interfaces_Interface_Acl_Config
}

// nodePolicyState is the policy part of a node's configuration.
type nodePolicyState struct {
	ifaces  map[string]podInterface // by interface name
	sets    map[string]*aclSetT     // the controller's
	groups  map[string]*addrGroupT  // the controller's
	tagKeys map[string]bool         // every declared key
}

var (
	ifacesPath = mustPath("/interfaces")
	aclPath    = mustPath("/acl")
)

func readNodePolicy(ctx context.Context, c gpb.GNMIClient) (nodePolicyState, error) {
	st := nodePolicyState{ifaces: map[string]podInterface{}, sets: map[string]*aclSetT{},
		groups: map[string]*addrGroupT{}, tagKeys: map[string]bool{}}
	var ifs gen.IsthmusInterfaces_Interfaces
	if err := getConfig(ctx, c, ifacesPath, &ifs); err != nil {
		return st, fmt.Errorf("get interfaces: %w", err)
	}
	for name, i := range ifs.Interface {
		pod := i.GetConfig().GetPod()
		if i.GetConfig().GetType() != gen.IsthmusTypes_InterfaceType_POD || pod.GetNamespace() == "" || pod.GetName() == "" {
			continue
		}
		pi := podInterface{pod: podKey(pod.GetNamespace(), pod.GetName()), tags: map[string]string{}, acl: i.GetAcl().GetConfig()}
		if i.GetTags() != nil {
			for k, t := range i.GetTags().Tag {
				pi.tags[k] = t.GetConfig().GetValue()
			}
		}
		st.ifaces[name] = pi
	}
	var acl gen.IsthmusAcl_Acl
	if err := getConfig(ctx, c, aclPath, &acl); err != nil {
		return st, fmt.Errorf("get acl: %w", err)
	}
	if acl.AclSets != nil {
		for name, s := range acl.AclSets.AclSet {
			if strings.HasPrefix(name, aclSetPrefix) && strings.HasPrefix(s.GetConfig().GetDescription(), ownerMark) {
				st.sets[name] = s
			}
		}
	}
	if acl.AddressGroups != nil {
		for name, g := range acl.AddressGroups.AddressGroup {
			if strings.HasPrefix(name, groupPrefix) && strings.HasPrefix(g.GetConfig().GetDescription(), ownerMark) {
				st.groups[name] = g
			}
		}
	}
	if acl.TagKeys != nil {
		for name := range acl.TagKeys.TagKey {
			st.tagKeys[name] = true
		}
	}
	return st, nil
}

// policySetRequest is the one transaction from have to want (nil when
// nothing differs), and how many pods of want have no interface yet. Tag
// keys are declared and never removed (an operator's selector may use
// them too); everything else the controller owns that want lacks goes.
func policySetRequest(have nodePolicyState, want *nodePolicy) (*gpb.SetRequest, int, error) {
	req := &gpb.SetRequest{}
	replace := func(p *gpb.Path, s ygot.GoStruct) error {
		val, err := plainJSONVal(s)
		if err != nil {
			return err
		}
		req.Replace = append(req.Replace, &gpb.Update{Path: p, Val: val})
		return nil
	}
	for _, k := range want.tagKeys {
		if have.tagKeys[k] {
			continue
		}
		tk := &gen.IsthmusAcl_Acl_TagKeys_TagKey{Name: ygot.String(k)}
		tk.GetOrCreateConfig().Name = ygot.String(k)
		if err := replace(aclListPath("tag-keys", "tag-key", "name", k), tk); err != nil {
			return nil, 0, err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(want.groups)) {
		if g := want.groups[name]; have.groups[name] == nil || jsonString(g) != jsonString(have.groups[name]) {
			if err := replace(aclListPath("address-groups", "address-group", "name", name), g); err != nil {
				return nil, 0, err
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(want.sets)) {
		if s := want.sets[name]; have.sets[name] == nil || jsonString(s) != jsonString(have.sets[name]) {
			if err := replace(aclListPath("acl-sets", "acl-set", "name", name), s); err != nil {
				return nil, 0, err
			}
		}
	}
	found := map[string]bool{}
	for _, ifname := range slices.Sorted(maps.Keys(have.ifaces)) {
		pi := have.ifaces[ifname]
		att, ok := want.pods[pi.pod]
		found[pi.pod] = found[pi.pod] || ok
		if !maps.Equal(pi.tags, att.tags) {
			if len(att.tags) == 0 {
				req.Delete = append(req.Delete, ifacePath(ifname, "tags"))
			} else if err := replace(ifacePath(ifname, "tags"), tagsTree(att.tags)); err != nil {
				return nil, 0, err
			}
		}
		wantACL := aclAttachment(att)
		if !sameACL(pi.acl, wantACL) {
			if wantACL == nil {
				req.Delete = append(req.Delete, ifacePath(ifname, "acl"))
			} else if err := replace(ifacePath(ifname, "acl"), &ifaceACLT{Config: wantACL}); err != nil {
				return nil, 0, err
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(have.sets)) {
		if want.sets[name] == nil {
			req.Delete = append(req.Delete, aclListPath("acl-sets", "acl-set", "name", name))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(have.groups)) {
		if want.groups[name] == nil {
			req.Delete = append(req.Delete, aclListPath("address-groups", "address-group", "name", name))
		}
	}
	// Pods without an address have not been through CNI ADD yet: the
	// address arriving wakes the worker, no need to look for them.
	pending := 0
	for k, att := range want.pods {
		if !found[k] && att.addr.IsValid() {
			pending++
		}
	}
	if len(req.Delete) == 0 && len(req.Replace) == 0 {
		return nil, pending, nil
	}
	return req, pending, nil
}

// aclAttachment is the acl config of a pod interface (nil: nothing
// attached, so everything passes).
func aclAttachment(att podAttachment) *gen.IsthmusInterfaces_Interfaces_Interface_Acl_Config {
	if att.ingress == "" && att.egress == "" {
		return nil
	}
	cf := &gen.IsthmusInterfaces_Interfaces_Interface_Acl_Config{}
	if att.ingress != "" {
		cf.IngressAclSet = []string{att.ingress}
		cf.IngressDefaultAction = gen.IsthmusAcl_AclAction_DROP
	}
	if att.egress != "" {
		cf.EgressAclSet = []string{att.egress}
		cf.EgressDefaultAction = gen.IsthmusAcl_AclAction_DROP
	}
	return cf
}

func sameACL(a, b *gen.IsthmusInterfaces_Interfaces_Interface_Acl_Config) bool {
	empty := func(c *gen.IsthmusInterfaces_Interfaces_Interface_Acl_Config) bool {
		return c == nil || (len(c.IngressAclSet) == 0 && len(c.EgressAclSet) == 0 &&
			c.IngressDefaultAction == gen.IsthmusAcl_AclAction_UNSET && c.EgressDefaultAction == gen.IsthmusAcl_AclAction_UNSET)
	}
	if empty(a) || empty(b) {
		return empty(a) && empty(b)
	}
	return slices.Equal(a.IngressAclSet, b.IngressAclSet) && slices.Equal(a.EgressAclSet, b.EgressAclSet) &&
		a.IngressDefaultAction == b.IngressDefaultAction && a.EgressDefaultAction == b.EgressDefaultAction
}

// plainJSONVal is s as JSON without module names: the isthmus-acl
// groupings used under /interfaces make a module-qualified member name
// ambiguous to the node's schema check, and unqualified members are
// valid below the top level of a value.
func plainJSONVal(s ygot.GoStruct) (*gpb.TypedValue, error) {
	js, err := ygot.Marshal7951(s)
	if err != nil {
		return nil, fmt.Errorf("marshal %T: %w", s, err)
	}
	return &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: js}}, nil
}

func tagsTree(tags map[string]string) *ifaceTagsT {
	t := &ifaceTagsT{}
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		cf := t.GetOrCreateTag(k).GetOrCreateConfig()
		cf.Key, cf.Value = ygot.String(k), ygot.String(tags[k])
	}
	return t
}

func aclListPath(container, list, key, name string) *gpb.Path {
	return &gpb.Path{Elem: []*gpb.PathElem{{Name: "acl"}, {Name: container}, {Name: list, Key: map[string]string{key: name}}}}
}

func ifacePath(ifname, leaf string) *gpb.Path {
	return &gpb.Path{Elem: []*gpb.PathElem{{Name: "interfaces"}, {Name: "interface", Key: map[string]string{"name": ifname}}, {Name: leaf}}}
}
