package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// TestPublishWhileNeighborsChange: state is published while commits add,
// change and remove neighbors (and turn transit on and off). Publishing
// reads a snapshot, never the maps Apply writes: under -race any shared
// read is a failure, and without -race a concurrent map iteration and
// write can crash the process.
func TestPublishWhileNeighborsChange(t *testing.T) {
	n := startNode(t, Config{ListenPort: -1, PeerPort: 1796})
	base := hostConf{as: 65000, routerID: "10.0.6.1", endpoint: "192.0.2.61",
		vrfs: []vrfConf{{name: "red", rd: "10.0.6.1:1", imp: []string{"65000:1"}, exp: []string{"65000:1"}, pool: "10.6.0.0/24", pods: []string{"10.6.0.1"}}}}
	n.commit(base)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			n.bgp.publishState(ctx) // refused writes are expected here
		}
	}()
	for i := range 40 {
		h := base
		for j := range i % 4 {
			h.neighbors = append(h.neighbors, nbrConf{addr: fmt.Sprintf("127.100.6.%d", 10+(i+j)%6), as: 65000, rrClient: (i+j)%3 == 0})
		}
		if i%5 == 4 {
			h.vrfs = nil
		}
		n.commit(h)
	}
	cancel()
	wg.Wait()
}

// TestNoStateForDeletedEntries: a publication prepared from a snapshot
// taken before a commit deleted a VRF and a neighbor writes nothing for
// them (and is not refused either): their state stays gone.
func TestNoStateForDeletedEntries(t *testing.T) {
	const gone = "127.100.7.2"
	n := startNode(t, Config{ListenPort: -1, PeerPort: 1797})
	h := hostConf{as: 65000, routerID: "10.0.7.1", endpoint: "192.0.2.71",
		neighbors: []nbrConf{{addr: "127.100.7.3", as: 65000}, {addr: gone, as: 65000}},
		vrfs: []vrfConf{
			{name: "red", rd: "10.0.7.1:1", imp: []string{"65000:1"}, exp: []string{"65000:1"}, pool: "10.7.0.0/24", pods: []string{"10.7.0.1"}},
			{name: "blue", rd: "10.0.7.1:2", imp: []string{"65000:2"}, exp: []string{"65000:2"}, pool: "10.7.1.0/24", pods: []string{"10.7.1.1"}},
		}}
	n.commit(h)
	eventually(t, 10*time.Second, "blue and the neighbor in state", func() bool {
		return n.hasVRFState("blue") && n.hasNeighborState(gone)
	})

	s := n.bgp.snapshot()
	h.neighbors, h.vrfs = h.neighbors[:1], h.vrfs[:1]
	n.commit(h)
	if n.hasVRFState("blue") || n.hasNeighborState(gone) {
		t.Fatal("the commit left state of what it deleted")
	}
	rc := n.bgp.rib.counters()
	writes := append(vrfWrites(s, rc, map[string][]uint32{"blue": {100}}), speakerWrites(s, rc, nil, time.Now())...)
	if err := n.bgp.write(s, writes); err != nil {
		t.Errorf("publication from the old snapshot: %v", err)
	}
	if n.hasVRFState("blue") {
		t.Error("state of deleted vrf blue came back")
	}
	if n.hasNeighborState(gone) {
		t.Errorf("state of deleted neighbor %s came back", gone)
	}
	if !n.hasVRFState("red") {
		t.Error("state of vrf red missing")
	}
}

func (n *node) hasVRFState(vrf string) bool {
	var ok bool
	n.core.Read(func(_, st *gen.Device) error {
		s := st.GetNetworkInstances().GetNetworkInstance(vrf).GetState()
		ok = s.GetExported() != nil || s.GetImported() != nil
		return nil
	})
	return ok
}

func (n *node) hasNeighborState(addr string) bool {
	var ok bool
	n.core.Read(func(_, st *gen.Device) error {
		ok = st.GetNetworkInstances().GetNetworkInstance("default").GetProtocols().
			GetProtocol(gen.IsthmusTypes_ProtocolType_BGP, "bgp").GetBgp().GetNeighbors().GetNeighbor(addr) != nil
		return nil
	})
	return ok
}

// records is a slog handler that keeps what is logged.
type records struct {
	mu   sync.Mutex
	msgs []string
}

func (h *records) Enabled(context.Context, slog.Level) bool { return true }
func (h *records) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.msgs = append(h.msgs, r.Level.String()+" "+r.Message)
	return nil
}
func (h *records) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *records) WithGroup(string) slog.Handler      { return h }

func (h *records) count(prefix string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, m := range h.msgs {
		if strings.HasPrefix(m, prefix) {
			n++
		}
	}
	return n
}

// TestRefusedWritesNeitherSpinNorFlood: a write the core refuses (its
// entry left the configuration in a race) is retried a bounded number of
// times and never logged above debug; another failure is logged once
// while it repeats, and again once it has cleared and comes back.
func TestRefusedWritesNeitherSpinNorFlood(t *testing.T) {
	h := &records{}
	f := &failures{log: slog.New(h), what: "publish bgp state"}
	refusal := fmt.Errorf("write state /x: %w", nos.ErrNoConfig)
	retries := 0
	for range 20 {
		if f.note(refusal) {
			retries++
		}
	}
	if retries != stateRetries {
		t.Errorf("%d retries of a refused write, want %d", retries, stateRetries)
	}
	if n := h.count("WARN"); n != 0 {
		t.Errorf("refused writes logged %d warnings", n)
	}
	mixed := errors.Join(refusal, errors.New("update state /y: bad value"))
	f.note(mixed)
	if n := h.count("WARN"); n != 1 {
		t.Errorf("a real failure among refused writes logged %d warnings, want 1", n)
	}
	f.note(nil)
	other := errors.New("list neighbors: connection refused")
	for range 20 {
		f.note(other)
	}
	if n := h.count("WARN"); n != 2 {
		t.Errorf("a repeated failure logged %d warnings in all, want 2", n)
	}
	if f.note(nil) {
		t.Error("retry after success")
	}
	f.note(other)
	if n := h.count("WARN"); n != 3 {
		t.Errorf("a failure after a success logged %d warnings in all, want 3", n)
	}
}
