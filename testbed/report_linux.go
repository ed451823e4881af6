package testbed

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Endpoint is one end of a flow: a pod, or a host's underlay address when
// Pod is empty.
type Endpoint struct {
	// Host is the node that serves the pod, or the node itself.
	Host string
	// Pod names the pod on Host; empty for the host.
	Pod string
	// Addr is the address the traffic went to or came from.
	Addr netip.Addr
}

// PodEndpoint returns the endpoint of pod p.
func PodEndpoint(p *Pod) Endpoint {
	return Endpoint{Host: p.Host, Pod: p.Name, Addr: p.Address}
}

// String is "c1/pa 10.1.1.1" for a pod and "c1 10.10.0.11" for a host.
func (e Endpoint) String() string {
	name := e.Host
	if e.Pod != "" {
		name += "/" + e.Pod
	}
	if !e.Addr.IsValid() {
		return name
	}
	return name + " " + e.Addr.String()
}

// Flow is traffic a scenario sent from one endpoint to another, and what
// came back.
type Flow struct {
	// From and To are the ends; To may carry only an address.
	From, To Endpoint
	// VRF is the tenant the traffic ran in; empty for the underlay.
	VRF string
	// Encap is how the traffic crossed between hosts ("MPLS over UDP").
	Encap string
	// Ping is the echo flow's outcome; nil when the scenario sent none.
	Ping *PingStats
	// Throughput is a bulk TCP transfer's outcome; nil when none ran.
	Throughput *TCPResult
	// WantNoReply marks a flow that must not be answered (isolation).
	WantNoReply bool
	// Note says what else the flow showed ("answered by d1/red/rb").
	Note string
}

// String is the flow's line in a scenario's account.
func (f Flow) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s → %s", f.From, f.To)
	if f.VRF != "" {
		fmt.Fprintf(&b, " (vrf %s, %s)", f.VRF, f.Encap)
	} else if f.Encap != "" {
		fmt.Fprintf(&b, " (%s)", f.Encap)
	}
	if f.Ping != nil {
		fmt.Fprintf(&b, ": %d/%d replies", f.Ping.Received, f.Ping.Sent)
		if f.Ping.Received > 0 {
			fmt.Fprintf(&b, ", rtt avg %s", ms(f.Ping.RTTAvg))
		}
	}
	if f.Throughput != nil {
		fmt.Fprintf(&b, ", tcp %.0f Mbit/s", f.Throughput.Mbps())
	}
	if f.Note != "" {
		fmt.Fprintf(&b, ", %s", f.Note)
	}
	return b.String()
}

// Encapsulation names as reports show them.
const (
	EncapUDP   = "MPLS over UDP"
	EncapMPLS  = "MPLS over MPLS"
	EncapPlain = "plain IPv4"
)

// tenantEncap returns how tenant's traffic crosses between hosts.
func tenantEncap(t *Topology, tenant string) string {
	for _, tn := range t.Tenants {
		if tn.Name == tenant && tn.Encapsulation == "MPLS_OVER_MPLS" {
			return EncapMPLS
		}
	}
	return EncapUDP
}

// Report is a scenario's account: it writes readable lines as the scenario
// goes, and keeps the flows and observations that the summary tabulates.
type Report struct {
	w io.Writer
	// Flows is the traffic the scenario sent, in order.
	Flows []Flow
	// Observed are one-line findings besides the flows.
	Observed []string
}

// NewReport returns a report that writes its lines to w.
func NewReport(w io.Writer) *Report { return &Report{w: w} }

// Printf writes a progress line that the summary leaves out.
func (r *Report) Printf(format string, args ...any) {
	fmt.Fprintf(r.w, "  "+format+"\n", args...)
}

// Observe writes a finding and keeps it for the summary.
func (r *Report) Observe(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	r.Observed = append(r.Observed, line)
	fmt.Fprintf(r.w, "  %s\n", line)
}

// AddFlow writes a flow's line and keeps it for the summary.
func (r *Report) AddFlow(f Flow) {
	r.Flows = append(r.Flows, f)
	fmt.Fprintf(r.w, "  %s\n", f)
}

// Outcome is how one scenario ended, for the summary.
type Outcome struct {
	// Scenario is the one that ran.
	Scenario Scenario
	// Report is its account.
	Report *Report
	// Err is nil when it passed.
	Err error
	// Took is how long it ran.
	Took time.Duration
}

// Verdict is "pass", "FAIL" or "n/a" (ErrNotAvailable).
func (o Outcome) Verdict() string {
	switch {
	case o.Err == nil:
		return "pass"
	case errors.Is(o.Err, ErrNotAvailable):
		return "n/a"
	default:
		return "FAIL"
	}
}

// WriteSummary writes the outcomes as two aligned tables: the scenarios
// with their verdicts and findings, and every flow with its encapsulation,
// ping loss, round-trip times and TCP throughput.
func WriteSummary(w io.Writer, outcomes []Outcome) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\t\tRESULT\tTIME\tOBSERVED")
	for _, o := range outcomes {
		lines := o.Report.Observed
		if o.Err != nil {
			lines = append([]string{o.Err.Error()}, lines...)
		}
		if len(lines) == 0 {
			lines = []string{""}
		}
		for i, l := range lines {
			if i == 0 {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%.1fs\t%s\n", o.Scenario.Name, o.Scenario.Short, o.Verdict(), o.Took.Seconds(), l)
			} else {
				fmt.Fprintf(tw, "\t\t\t\t%s\n", l)
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "SCN\tFROM (host/pod address)\tTO (host/pod address)\tVRF\tENCAP\tPING\tLOSS\tRTT min/avg/max\tTCP (%s bulk)\tRESULT\n", throughputTime)
	for _, o := range outcomes {
		for _, f := range o.Report.Flows {
			ping, loss, rtt, tcp := "-", "-", "-", "-"
			if p := f.Ping; p != nil {
				ping = fmt.Sprintf("%d/%d", p.Received, p.Sent)
				loss = fmt.Sprintf("%.0f%%", p.Loss())
				if p.Received > 0 {
					rtt = fmt.Sprintf("%s/%s/%s ms", msNum(p.RTTMin), msNum(p.RTTAvg), msNum(p.RTTMax))
				}
			}
			if t := f.Throughput; t != nil {
				tcp = fmt.Sprintf("%.0f Mbit/s", t.Mbps())
			}
			vrf := f.VRF
			if vrf == "" {
				vrf = "-"
			}
			result := o.Verdict()
			if f.Note != "" {
				result += ": " + f.Note
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
				o.Scenario.Name, f.From, f.To, vrf, f.Encap, ping, loss, rtt, tcp, result)
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	return nil
}

// ms formats a duration in milliseconds with two decimals ("0.08ms").
func ms(d time.Duration) string { return msNum(d) + "ms" }

func msNum(d time.Duration) string {
	return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond))
}

// mergePings adds b's requests and replies to a; the round-trip times
// cover both.
func mergePings(a, b PingStats) PingStats {
	sum := a.RTTAvg*time.Duration(a.Received) + b.RTTAvg*time.Duration(b.Received)
	m := PingStats{Sent: a.Sent + b.Sent, Received: a.Received + b.Received, Lost: slices.Concat(a.Lost, b.Lost)}
	if m.Received > 0 {
		m.RTTAvg = sum / time.Duration(m.Received)
	}
	m.RTTMin = a.RTTMin
	if m.RTTMin == 0 || (b.RTTMin != 0 && b.RTTMin < m.RTTMin) {
		m.RTTMin = b.RTTMin
	}
	m.RTTMax = max(a.RTTMax, b.RTTMax)
	return m
}
