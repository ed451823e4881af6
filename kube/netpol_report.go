package kube

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Reasons of the Warning Events a NetworkPolicy gets when the controller
// does not enforce all of it.
const (
	// ReasonPolicyNotApplied: the policy's namespace is one of the
	// excluded namespaces, whose pods no policy isolates (they remain
	// peers of the other namespaces' policies).
	ReasonPolicyNotApplied = "IsthmusPolicyNotApplied"
	// ReasonPolicyPartlyTranslated: some ports of the policy cannot be
	// matched by the forwarder (SCTP ports) and allow nothing.
	ReasonPolicyPartlyTranslated = "IsthmusPolicyPartlyTranslated"
	// ReasonPolicyNotTranslated: rules of the policy could not be
	// translated (bad selector, CIDR or port); they allow nothing, and the
	// pods the policy selects are isolated all the same.
	ReasonPolicyNotTranslated = "IsthmusPolicyNotTranslated"
)

// maxEventMessage bounds an Event's message (the API keeps messages short).
const maxEventMessage = 1024

// clip cuts s to at most n bytes, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

// policyNotice is what a NetworkPolicy's Warning Event says.
type policyNotice struct {
	np      *networkingv1.NetworkPolicy
	reason  string
	message string
}

// policyNotices lists, by "namespace/name", the policies the controller
// does not enforce in full, and why: a policy of an excluded namespace is
// not applied at all; an SCTP port allows nothing (the ACL model and the
// forwarder match ports of TCP and UDP only, so an SCTP port is never
// widened to every SCTP port); errs are the rules compilePolicies could
// not translate. Pure.
func policyNotices(c *policyCluster, errs policyErrors) map[string]policyNotice {
	out := map[string]policyNotice{}
	for _, np := range c.policies {
		key := np.Namespace + "/" + np.Name
		if c.excluded[np.Namespace] {
			out[key] = policyNotice{np: np, reason: ReasonPolicyNotApplied, message: fmt.Sprintf(
				"namespace %s is excluded from Isthmus networks (isthmus-controller --excluded-namespaces): "+
					"no policy isolates its pods, so this one is not applied; its pods remain peers of other namespaces' policies", np.Namespace)}
			continue
		}
		var parts []string
		reason := ReasonPolicyPartlyTranslated
		if err := errs[key]; err != nil {
			reason = ReasonPolicyNotTranslated
			parts = append(parts, fmt.Sprintf("not translated: %v (the pods it selects are isolated all the same; that rule allows nothing)", err))
		}
		var sctp []string
		if hasType(np, networkingv1.PolicyTypeIngress) {
			for i, r := range np.Spec.Ingress {
				sctp = append(sctp, sctpPorts("ingress", i, r.Ports)...)
			}
		}
		if hasType(np, networkingv1.PolicyTypeEgress) {
			for i, r := range np.Spec.Egress {
				sctp = append(sctp, sctpPorts("egress", i, r.Ports)...)
			}
		}
		if len(sctp) > 0 {
			parts = append(parts, "SCTP ports allow nothing (the forwarder matches ports of TCP and UDP only; "+
				"SCTP without a port is matched): "+strings.Join(sctp, ", "))
		}
		if len(parts) > 0 {
			out[key] = policyNotice{np: np, reason: reason, message: strings.Join(parts, "; ")}
		}
	}
	return out
}

// sctpPorts names the SCTP ports of one rule ("ingress rule 0 port 1
// (SCTP 3868)").
func sctpPorts(dir string, rule int, ports []networkingv1.NetworkPolicyPort) []string {
	var out []string
	for i, p := range ports {
		if p.Protocol == nil || *p.Protocol != corev1.ProtocolSCTP || p.Port == nil {
			continue
		}
		port := p.Port.String()
		if p.EndPort != nil {
			port += fmt.Sprintf("-%d", *p.EndPort)
		}
		out = append(out, fmt.Sprintf("%s rule %d port %d (SCTP %s)", dir, rule, i, port))
	}
	return out
}

// reportPolicies records a Warning Event on each policy whose notice is
// new or changed since this leader last recorded one for it; a policy
// recreated (new UID) gets one again. A failed Event is tried again on
// the next pass.
func (l *leader) reportPolicies(ctx context.Context, notices map[string]policyNotice) {
	seen := map[string]bool{}
	for _, key := range slices.Sorted(maps.Keys(notices)) {
		n := notices[key]
		id := key + "/" + string(n.np.UID)
		seen[id] = true
		if l.pol.noticed[id] == n.reason+"\x00"+n.message {
			continue
		}
		if err := l.policyEvent(ctx, n); err != nil {
			l.c.log.Warn("record network policy event", "policy", key, "err", err)
			continue
		}
		l.pol.noticed[id] = n.reason + "\x00" + n.message
	}
	for id := range l.pol.noticed {
		if !seen[id] {
			delete(l.pol.noticed, id)
		}
	}
}

// policyEvent creates the Warning Event of notice n.
func (l *leader) policyEvent(ctx context.Context, n policyNotice) error {
	now := metav1.NewTime(time.Now())
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{GenerateName: n.np.Name + ".", Namespace: n.np.Namespace},
		InvolvedObject: corev1.ObjectReference{Kind: "NetworkPolicy", APIVersion: "networking.k8s.io/v1",
			Namespace: n.np.Namespace, Name: n.np.Name, UID: n.np.UID, ResourceVersion: n.np.ResourceVersion},
		Reason:         n.reason,
		Message:        clip(n.message, maxEventMessage),
		Type:           corev1.EventTypeWarning,
		Source:         corev1.EventSource{Component: "isthmus-controller"},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
	}
	ctx, cancel := context.WithTimeout(ctx, l.cfg.GNMI.Timeout)
	defer cancel()
	if _, err := l.c.kc.CoreV1().Events(n.np.Namespace).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create event on %s/%s: %w", n.np.Namespace, n.np.Name, err)
	}
	return nil
}
