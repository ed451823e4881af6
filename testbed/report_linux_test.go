package testbed

import (
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestWriteSummary(t *testing.T) {
	ping := PingStats{Sent: 50, Received: 50, RTTMin: 50 * time.Microsecond, RTTAvg: 120 * time.Microsecond, RTTMax: 2 * time.Millisecond}
	none := PingStats{Sent: 5, Lost: []int{0, 1, 2, 3, 4}}
	a := NewReport(io.Discard)
	a.AddFlow(Flow{
		From: Endpoint{Host: "c1", Pod: "pa", Addr: netip.MustParseAddr("10.1.1.1")},
		To:   Endpoint{Host: "d1", Pod: "pa", Addr: netip.MustParseAddr("10.1.3.1")},
		VRF:  "red", Encap: EncapUDP, Ping: &ping,
		Throughput: &TCPResult{Bytes: 375 << 20, Duration: 3 * time.Second},
	})
	a.Observe("vpcgw saw only tunnel traffic")
	b := NewReport(io.Discard)
	b.AddFlow(Flow{
		From: Endpoint{Host: "c1", Pod: "rb", Addr: netip.MustParseAddr("10.1.1.2")},
		To:   Endpoint{Host: "blue-only", Addr: netip.MustParseAddr("10.1.4.1")},
		VRF:  "red", Encap: EncapUDP, Ping: &none, WantNoReply: true, Note: "no reply, as it must",
	})
	outcomes := []Outcome{
		{Scenario: Scenario{Name: "a", Short: "cloud pod ↔ DC pod"}, Report: a, Took: 5400 * time.Millisecond},
		{Scenario: Scenario{Name: "b", Short: "tenant isolation"}, Report: b, Err: errors.New("red reached a blue-only pod"), Took: time.Second},
		{Scenario: Scenario{Name: "e", Short: "daemon restart"}, Report: NewReport(io.Discard), Err: ErrNotAvailable},
	}
	var out strings.Builder
	if err := WriteSummary(&out, outcomes); err != nil {
		t.Fatal(err)
	}
	want := `SCENARIO                      RESULT  TIME  OBSERVED
a         cloud pod ↔ DC pod  pass    5.4s  vpcgw saw only tunnel traffic
b         tenant isolation    FAIL    1.0s  red reached a blue-only pod
e         daemon restart      n/a     0.0s  scenario not yet available

SCN  FROM (host/pod address)  TO (host/pod address)  VRF  ENCAP          PING   LOSS  RTT min/avg/max    TCP (3s bulk)  RESULT
a    c1/pa 10.1.1.1           d1/pa 10.1.3.1         red  MPLS over UDP  50/50  0%    0.05/0.12/2.00 ms  1049 Mbit/s    pass
b    c1/rb 10.1.1.2           blue-only 10.1.4.1     red  MPLS over UDP  0/5    100%  -                  -              FAIL: no reply, as it must
`
	if out.String() != want {
		t.Errorf("summary:\n%s\nwant:\n%s", out.String(), want)
	}
}

func TestMergePings(t *testing.T) {
	a := PingStats{Sent: 3, Received: 3, RTTMin: 2 * time.Millisecond, RTTAvg: 3 * time.Millisecond, RTTMax: 4 * time.Millisecond}
	b := PingStats{Sent: 3, Received: 1, Lost: []int{0, 2}, RTTMin: time.Millisecond, RTTAvg: time.Millisecond, RTTMax: time.Millisecond}
	m := mergePings(mergePings(PingStats{}, a), b)
	if m.Sent != 6 || m.Received != 4 || len(m.Lost) != 2 || m.RTTMin != time.Millisecond || m.RTTMax != 4*time.Millisecond || m.RTTAvg != 2500*time.Microsecond {
		t.Errorf("merged: %+v", m)
	}
}
