package testbed

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// TelemetryEvent is one update as gnmic's event format shows it: the keys
// of the path as tags, and leaf → value.
type TelemetryEvent struct {
	// Time is when the target sampled the values.
	Time time.Time
	// Tags hold the path's keys ("interface_name": "ist…").
	Tags map[string]string
	// Values map a leaf's schema path to its value.
	Values map[string]any
}

// ParseGnmicEvents reads the output of `gnmic subscribe --format event`: a
// sequence of JSON arrays of events. Output cut off mid-event (the
// subscription was stopped) ends the sequence.
func ParseGnmicEvents(out []byte) ([]TelemetryEvent, error) {
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.UseNumber()
	var events []TelemetryEvent
	for {
		var batch []struct {
			Timestamp int64             `json:"timestamp"`
			Tags      map[string]string `json:"tags"`
			Values    map[string]any    `json:"values"`
		}
		err := dec.Decode(&batch)
		if errors.Is(err, io.EOF) || (err != nil && len(events) > 0) {
			return events, nil
		}
		if err != nil {
			return nil, fmt.Errorf("parse gnmic events: %w", err)
		}
		for _, e := range batch {
			events = append(events, TelemetryEvent{Time: time.Unix(0, e.Timestamp), Tags: e.Tags, Values: e.Values})
		}
	}
}

// WriteTelemetry writes events as a table: one row per sample and
// interface, with the BGP session states of that sample and the
// interface's counters. podOf names the pod behind an interface.
func WriteTelemetry(w io.Writer, events []TelemetryEvent, podOf map[string]string) error {
	if len(events) == 0 {
		_, err := fmt.Fprintln(w, "  (no updates arrived)")
		return err
	}
	slices.SortStableFunc(events, func(a, b TelemetryEvent) int { return a.Time.Compare(b.Time) })
	type sample struct {
		at     time.Time
		bgp    []string
		ifaces map[string]map[string]string // interface → counter → value
	}
	var samples []*sample
	for _, e := range events {
		// Updates of one sample leave the target within a few
		// milliseconds of each other; samples are seconds apart.
		if len(samples) == 0 || e.Time.Sub(samples[len(samples)-1].at) > 500*time.Millisecond {
			samples = append(samples, &sample{at: e.Time, ifaces: map[string]map[string]string{}})
		}
		s := samples[len(samples)-1]
		for leaf, v := range e.Values {
			switch {
			case path.Base(leaf) == "session-state":
				s.bgp = append(s.bgp, e.Tags["neighbor_neighbor-address"]+" "+fmt.Sprint(v))
			case strings.Contains(leaf, "/state/counters/"):
				name := e.Tags["interface_name"]
				if s.ifaces[name] == nil {
					s.ifaces[name] = map[string]string{}
				}
				s.ifaces[name][path.Base(leaf)] = fmt.Sprint(v)
			}
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  TIME\tBGP NEIGHBOR STATE\tINTERFACE\tPOD\tIN-PKTS\tOUT-PKTS\tIN-OCTETS\tOUT-OCTETS")
	start := samples[0].at
	for _, s := range samples {
		at := fmt.Sprintf("+%.0fs", s.at.Sub(start).Seconds())
		slices.Sort(s.bgp)
		bgp := strings.Join(slices.Compact(s.bgp), ", ")
		if bgp == "" {
			bgp = "-"
		}
		names := make([]string, 0, len(s.ifaces))
		for n := range s.ifaces {
			names = append(names, n)
		}
		slices.Sort(names)
		if len(names) == 0 {
			fmt.Fprintf(tw, "  %s\t%s\t-\t-\t-\t-\t-\t-\n", at, bgp)
		}
		for _, n := range names {
			c, pod := s.ifaces[n], podOf[n]
			if pod == "" {
				pod = "-"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", at, bgp, n, pod,
				orDash(c["in-pkts"]), orDash(c["out-pkts"]), orDash(c["in-octets"]), orDash(c["out-octets"]))
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write telemetry: %w", err)
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
