package testbed

import (
	"strings"
	"testing"
	"time"
)

// gnmicEvents is `gnmic subscribe --format event` output: two samples of a
// BGP session and a pod interface's counters, cut off mid-event.
const gnmicEvents = `[
  {"name": "default-1", "timestamp": 1795491417270221547,
   "tags": {"neighbor_neighbor-address": "10.20.0.1", "source": "10.10.0.11:9339"},
   "values": {"/network-instances/network-instance/protocols/protocol/bgp/neighbors/neighbor/state/session-state": "ESTABLISHED"}}
]
[
  {"name": "default-1", "timestamp": 1795491417271000000,
   "tags": {"interface_name": "ist0123456789ab", "source": "10.10.0.11:9339"},
   "values": {"/interfaces/interface/state/counters/in-pkts": 60, "/interfaces/interface/state/counters/out-pkts": 10}}
]
[
  {"name": "default-1", "timestamp": 1795491419270221547,
   "tags": {"neighbor_neighbor-address": "10.20.0.1"},
   "values": {"/network-instances/network-instance/protocols/protocol/bgp/neighbors/neighbor/state/session-state": "ESTABLISHED"}}
]
[
  {"name": "default-1", "timestamp": 1795491419271000000,
   "tags": {"interface_name": "ist0123456789ab"},
   "values": {"/interfaces/interface/state/counters/in-pkts": 160, "/interfaces/interface/state/counters/out-pkts": 110}}
]
[
  {"name": "default-1", "timesta`

func TestWriteTelemetry(t *testing.T) {
	events, err := ParseGnmicEvents([]byte(gnmicEvents))
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 4 || events[1].Time.Sub(events[0].Time) != 778453*time.Nanosecond {
		t.Fatalf("events: got %d, times %v", len(events), events)
	}
	var b strings.Builder
	if err := WriteTelemetry(&b, events, map[string]string{"ist0123456789ab": "c1/red/tm"}); err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	want := []string{
		"  TIME  BGP NEIGHBOR STATE     INTERFACE        POD        IN-PKTS  OUT-PKTS  IN-OCTETS  OUT-OCTETS",
		"  +0s   10.20.0.1 ESTABLISHED  ist0123456789ab  c1/red/tm  60       10        -          -",
		"  +2s   10.20.0.1 ESTABLISHED  ist0123456789ab  c1/red/tm  160      110       -          -",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("table:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, err := ParseGnmicEvents([]byte("Error: no connection")); err == nil {
		t.Error("parse garbage: want an error")
	}
}
