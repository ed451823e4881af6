package testbed

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrNotAvailable is returned by scenarios that need daemons not built yet.
var ErrNotAvailable = errors.New("scenario not yet available")

// Scenario is one end-to-end check against a running testbed. The command
// and the Go tests run the same scenarios.
type Scenario struct {
	// Name is what `isthmus-testbed run NAME` takes.
	Name string
	// Title says what the scenario proves.
	Title string
	// Short names it in a summary table ("tenant isolation").
	Short string
	// Run executes the scenario and gives its account to r.
	Run func(ctx context.Context, tb *Testbed, r *Report) error
}

// Scenarios lists every scenario in the order `make demo` runs them.
func Scenarios() []Scenario {
	return []Scenario{
		{Name: "underlay", Short: "underlay", Title: "every host reaches every other host's underlay address by plain IP routing", Run: runUnderlay},
		{Name: "a", Short: "cloud pod ↔ DC pod", Title: "pod on c1 ↔ pod on d1 over MPLSoUDP, routes learnt over BGP; only UDP crosses the VPC gateway", Run: runPodToPod},
		{Name: "b", Short: "tenant isolation", Title: "two tenants with overlapping pod addresses stay isolated", Run: runTenantIsolation},
		{Name: "c", Short: "DC gateway routes", Title: "FRR on dcgw holds the pods' /32s by route target; its own prefix reaches the VRF", Run: runDCGateway},
		{Name: "d", Short: "MPLS over MPLS", Title: "MPLSoMPLS between two hosts on one L2 segment", Run: runMPLSoMPLS},
		{Name: "service", Short: "service VIP", Title: "a service address with backends on c1 and c2, reached from a DC pod on d1; c1's route goes with its backend", Run: runService},
		{Name: "external", Short: "source NAT", Title: "pods of red and blue on c1 (overlapping pools) reach an address behind the core router at once through SNAT; vpcgw's uplink shows only c1's address", Run: runExternal},
		{Name: "floating", Short: "floating IP", Title: "a DC pod on d1 reaches a pod of blue on c1 by its floating IP, advertised as VPNv4 in an external VRF; the binding moves to a pod on c2 and the same address reaches it", Run: runFloating},
		{Name: "policy", Short: "tier policy", Title: "app=web reaches app=db on TCP 5432 and nothing else, enforced across the tunnel both ways (egress at the sender, ingress after decapsulation)", Run: runPolicy},
		{Name: "e", Short: "daemon restart", Title: "isthmusd on c1 restarted under a 10ms ping flow loses nothing", Run: runRestart},
		{Name: "f", Short: "server removed", Title: "a data-center server removed: its routes are withdrawn, traffic moves to the survivor; restored, it is reached again", Run: runServerRemoved},
	}
}

// LookupScenario returns the scenario called name.
func LookupScenario(name string) (Scenario, error) {
	for _, s := range Scenarios() {
		if s.Name == name {
			return s, nil
		}
	}
	return Scenario{}, fmt.Errorf("unknown scenario %q", name)
}

// runUnderlay pings between every pair of hosts.
func runUnderlay(ctx context.Context, tb *Testbed, r *Report) error {
	hosts := tb.topo.NodesWithRole(RoleHost)
	var errs []error
	var all PingStats
	for _, from := range hosts {
		for _, to := range hosts {
			if from == to {
				continue
			}
			addr, err := tb.topo.UnderlayAddr(to)
			if err != nil {
				return err
			}
			st, err := tb.PingFlow(ctx, from, PingOptions{To: addr.String(), Count: 3, Interval: 50 * time.Millisecond})
			if err != nil {
				return err
			}
			verdict := "ok"
			if st.Received != st.Sent {
				verdict = "LOST"
				errs = append(errs, fmt.Errorf("%s → %s (%s): %d of %d lost", from, to, addr, st.Sent-st.Received, st.Sent))
			}
			r.Printf("%-3s → %-3s %-12s %d/%d replies, rtt avg %s  %s", from, to, addr, st.Received, st.Sent, ms(st.RTTAvg), verdict)
			all = mergePings(all, st)
		}
	}
	r.Flows = append(r.Flows, Flow{
		From: Endpoint{Host: strings.Join(hosts, " ")}, To: Endpoint{Host: "each other"},
		Encap: EncapPlain, Ping: &all,
	})
	r.Observe("%d host pairs reach each other through vpcgw, core and dcgw by plain IP routing", len(hosts)*(len(hosts)-1))
	return errors.Join(errs...)
}
