package kube_test

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/kube/apis/v1alpha1"
	"github.com/isthmus-net/isthmus/kube/kubetest"
	"github.com/isthmus-net/isthmus/kube/netpoltest"
)

// TestNetworkPolicyConfig: on two real isthmusd nodes, the controller
// tags each pod's interface with its pod and namespace labels, attaches
// the ACL sets of a NetworkPolicy to the pod it selects (default DROP),
// describes the pod of the other node that the policy's selector matches
// as a tagged address group, declares the tag keys, follows a namespace
// label change into the tags, and removes sets, groups and attachments
// when the policy goes. Every Set passes the node's validation.
func TestNetworkPolicyConfig(t *testing.T) {
	e := newEnv(t, 2)
	n0, n1 := e.nodes[0], e.nodes[1]
	e.runController(e.config("a"))
	e.mustCreateNetwork(network("pol", 301, "65000:301", "10.78.0.0/16"))
	e.createNamespace("x", map[string]string{"ns": "x", "team": "blue", v1alpha1.NetworkLabel: "pol"})
	e.createNamespace("y", map[string]string{"ns": "y", v1alpha1.NetworkLabel: "pol"})
	e.waitVRF(e.nodes, "pol", true, 30*time.Second)
	e.waitNamespaceMapping("x", "pol", 20*time.Second)
	e.waitNamespaceMapping("y", "pol", 20*time.Second)
	a := e.attachPod(n0, netpoltest.NewPod("x", "a", netip.Addr{}))
	b := e.attachPod(n1, netpoltest.NewPod("y", "b", netip.Addr{}))

	tcp := corev1.ProtocolTCP
	p80 := intstr.FromInt32(80)
	pol := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "web"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"pod": "a"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{
					NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"ns": "y"}},
					PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"pod": "b"}},
				}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &p80}},
			}},
			Egress: []networkingv1.NetworkPolicyEgressRule{{
				To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{"10.78.0.0/16"}}}},
			}},
		},
	}
	if _, err := e.c.Client.NetworkingV1().NetworkPolicies("x").Create(context.Background(), pol, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tagsA := map[string]string{"k8s.pod/pod": "a", "k8s.pod/tier": "web", "k8s.ns/ns": "x", "k8s.ns/team": "blue",
		"k8s.ns/kubernetes.io/metadata.name": "x", "k8s.ns/" + v1alpha1.NetworkLabel: "pol"}
	tagsB := map[string]string{"k8s.pod/pod": "b", "k8s.pod/tier": "db", "k8s.ns/ns": "y",
		"k8s.ns/kubernetes.io/metadata.name": "y", "k8s.ns/" + v1alpha1.NetworkLabel: "pol"}
	eventually(t, 20*time.Second, func() (bool, string) {
		pc, err := readPolicyConfig(n0)
		if err != nil {
			return false, err.Error()
		}
		ia := pc.pods["x/a"]
		if ia == nil || !maps.Equal(tagsOf(ia.GetTags()), tagsA) {
			return false, fmt.Sprintf("x/a interface tags %v, want %v", tagsOf(ia.GetTags()), tagsA)
		}
		acl := ia.GetAcl().GetConfig()
		if !slices.Equal(acl.GetIngressAclSet(), []string{"k8s/x/a/ingress"}) || acl.GetIngressDefaultAction() != gen.IsthmusAcl_AclAction_DROP ||
			!slices.Equal(acl.GetEgressAclSet(), []string{"k8s/x/a/egress"}) || acl.GetEgressDefaultAction() != gen.IsthmusAcl_AclAction_DROP {
			return false, fmt.Sprintf("x/a attachments %+v", acl)
		}
		in := pc.acl.GetAclSets().GetAclSet("k8s/x/a/ingress").GetAclEntries().GetAclEntry(10).GetConfig()
		wantSel := []string{"k8s.ns/kubernetes.io/metadata.name", "k8s.ns/ns=y", "k8s.pod/pod=b"}
		if in.GetAction() != gen.IsthmusAcl_AclAction_ACCEPT || in.GetProtocol() != 6 || in.GetDestinationPort() != 80 ||
			!slices.Equal(in.SourceTagSelector, wantSel) || in.GetDescription() != "x/web" {
			return false, fmt.Sprintf("ingress entry %+v, want ACCEPT tcp/80 from %v", in, wantSel)
		}
		out := pc.acl.GetAclSets().GetAclSet("k8s/x/a/egress").GetAclEntries().GetAclEntry(10).GetConfig()
		block := pc.acl.GetAddressGroups().GetAddressGroup(out.GetDestinationAddressGroup()).GetConfig()
		if !slices.Equal(block.GetPrefix(), []string{"10.0.0.0/8"}) || !slices.Equal(block.GetExcept(), []string{"10.78.0.0/16"}) || out.Protocol != nil {
			return false, fmt.Sprintf("egress entry %+v to group %+v", out, block)
		}
		remote := pc.acl.GetAddressGroups().GetAddressGroup("k8s.pod/y/b")
		if !slices.Equal(remote.GetConfig().GetPrefix(), []string{b.Addr.String() + "/32"}) || remote.GetConfig().GetNetworkInstance() != "pol" ||
			!maps.Equal(groupTagsOf(remote.GetTags()), tagsB) {
			return false, fmt.Sprintf("group of remote pod y/b: %+v tags %v", remote.GetConfig(), groupTagsOf(remote.GetTags()))
		}
		for _, k := range wantSel {
			if k, _, _ := strings.Cut(k, "="); pc.acl.GetTagKeys().GetTagKey(k) == nil {
				return false, "tag key " + k + " not declared"
			}
		}
		return true, ""
	})
	eventually(t, 10*time.Second, func() (bool, string) {
		pc, err := readPolicyConfig(n1)
		if err != nil {
			return false, err.Error()
		}
		ib := pc.pods["y/b"]
		sets := 0
		if pc.acl.GetAclSets() != nil {
			sets = len(pc.acl.GetAclSets().AclSet)
		}
		return ib != nil && maps.Equal(tagsOf(ib.GetTags()), tagsB) && ib.GetAcl() == nil && sets == 0,
			fmt.Sprintf("y/b on %s: tags %v, acl %+v, %d sets; want its tags, no acl, no set", n1.Name, tagsOf(ib.GetTags()), ib.GetAcl(), sets)
	})

	// A namespace label change reaches the tags.
	ns, err := e.c.Client.CoreV1().Namespaces().Get(context.Background(), "x", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ns.Labels["team"] = "red"
	if _, err := e.c.Client.CoreV1().Namespaces().Update(context.Background(), ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() (bool, string) {
		pc, err := readPolicyConfig(n0)
		if err != nil {
			return false, err.Error()
		}
		got := tagsOf(pc.pods["x/a"].GetTags())["k8s.ns/team"]
		return got == "red", fmt.Sprintf("x/a tag k8s.ns/team = %q, want red", got)
	})

	// The policy goes: attachments, sets and groups go with it.
	if err := e.c.Client.NetworkingV1().NetworkPolicies("x").Delete(context.Background(), "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() (bool, string) {
		pc, err := readPolicyConfig(n0)
		if err != nil {
			return false, err.Error()
		}
		sets, groups := 0, 0
		if pc.acl.GetAclSets() != nil {
			sets = len(pc.acl.GetAclSets().AclSet)
		}
		if pc.acl.GetAddressGroups() != nil {
			groups = len(pc.acl.GetAddressGroups().AddressGroup)
		}
		ia := pc.pods["x/a"]
		return ia != nil && ia.GetAcl() == nil && sets == 0 && groups == 0 && len(tagsOf(ia.GetTags())) == len(tagsA),
			fmt.Sprintf("after the policy went: x/a acl %+v, %d sets, %d groups", ia.GetAcl(), sets, groups)
	})
	_ = a
}

// attachPod plays the kubelet for pod spec on node nd: the Pod object,
// CNI ADD on the node (network k8s-pod-network), then status.podIP.
func (e *env) attachPod(nd *kubetest.Node, spec *corev1.Pod) *kubetest.Pod {
	e.t.Helper()
	return e.attachPodIn(nd, "k8s-pod-network", spec)
}

// policyConfig is a node's ACL configuration and its pod interfaces by
// "namespace/name".
type policyConfig struct {
	acl  gen.IsthmusAcl_Acl
	pods map[string]*gen.IsthmusInterfaces_Interfaces_Interface
}

func readPolicyConfig(nd *kubetest.Node) (policyConfig, error) {
	pc := policyConfig{pods: map[string]*gen.IsthmusInterfaces_Interfaces_Interface{}}
	if err := getNodeConfig(nd, "/acl", &pc.acl); err != nil {
		return pc, err
	}
	var ifs gen.IsthmusInterfaces_Interfaces
	if err := getNodeConfig(nd, "/interfaces", &ifs); err != nil {
		return pc, err
	}
	for _, i := range ifs.Interface {
		if pod := i.GetConfig().GetPod(); pod.GetName() != "" {
			pc.pods[pod.GetNamespace()+"/"+pod.GetName()] = i
		}
	}
	return pc, nil
}

// tagsOf flattens a pod interface's tags.
func tagsOf(t *gen.IsthmusInterfaces_Interfaces_Interface_Tags) map[string]string {
	out := map[string]string{}
	if t != nil {
		for k, tg := range t.Tag {
			out[k] = tg.GetConfig().GetValue()
		}
	}
	return out
}

// groupTagsOf flattens an address group's tags.
func groupTagsOf(t *gen.IsthmusAcl_Acl_AddressGroups_AddressGroup_Tags) map[string]string {
	out := map[string]string{}
	if t != nil {
		for k, tg := range t.Tag {
			out[k] = tg.GetConfig().GetValue()
		}
	}
	return out
}

// getNodeConfig reads a configuration subtree of the node into s.
func getNodeConfig(nd *kubetest.Node, path string, s ygot.GoStruct) error {
	ctx, cancel := context.WithTimeout(nd.Context(), 5*time.Second)
	defer cancel()
	p, err := ygot.StringToStructuredPath(path)
	if err != nil {
		return err
	}
	resp, err := nd.Client().Get(ctx, &gpb.GetRequest{Path: []*gpb.Path{p}, Type: gpb.GetRequest_CONFIG, Encoding: gpb.Encoding_JSON_IETF})
	if status.Code(err) == codes.NotFound {
		return nil
	}
	if err != nil {
		return fmt.Errorf("get %s: %w", path, err)
	}
	for _, n := range resp.GetNotification() {
		for _, u := range n.GetUpdate() {
			if err := gen.Unmarshal(u.GetVal().GetJsonIetfVal(), s); err != nil {
				return fmt.Errorf("parse %s: %w", path, err)
			}
		}
	}
	return nil
}
