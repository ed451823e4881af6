package testbed

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// StateFile is the name of the state file inside a run directory.
const StateFile = "state.json"

// State is what a run has created, written before each creation so that
// Down can remove everything even after the builder crashed.
type State struct {
	// Prefix starts every namespace name of the run.
	Prefix string `json:"prefix"`
	// Topology is the topology the run builds.
	Topology *Topology `json:"topology"`
	// Created is when the run started.
	Created time.Time `json:"created"`
	// Namespaces are the namespaces the run created or was about to create.
	Namespaces []string `json:"namespaces"`
	// Processes are the long-running processes started in nodes.
	Processes []ProcessRecord `json:"processes,omitempty"`
	// Binaries are the Isthmus programs the run uses.
	Binaries Binaries `json:"binaries"`
}

// Binaries are the programs a run uses besides iproute2 and FRR; empty
// means not available.
type Binaries struct {
	// Isthmusd is the daemon started on every host.
	Isthmusd string `json:"isthmusd,omitempty"`
	// CNI is the isthmus-cni plugin that attaches pods.
	CNI string `json:"cni,omitempty"`
	// Gnmic is the gNMI client that configures and reads the daemons.
	Gnmic string `json:"gnmic,omitempty"`
}

// ProcessRecord identifies a started process well enough to kill it later
// without hitting a recycled pid.
type ProcessRecord struct {
	// Node is the node the process runs in.
	Node string `json:"node"`
	// Name names the process in the run ("bgpd", "isthmusd").
	Name string `json:"name"`
	// PID is the process id; the process leads its own process group.
	PID int `json:"pid"`
	// StartTicks is the process start time from /proc/PID/stat.
	StartTicks uint64 `json:"start_ticks"`
	// Log is the file that holds its output.
	Log string `json:"log"`
}

// stateStore persists a State in a run directory.
type stateStore struct {
	path string
	mu   sync.Mutex // guards st and writes to path
	st   State
}

func newStateStore(dir string, st State) (*stateStore, error) {
	s := &stateStore{path: filepath.Join(dir, StateFile), st: st}
	if err := s.saveLocked(); err != nil {
		return nil, err
	}
	return s, nil
}

// ReadState reads the state file of a run directory.
func ReadState(dir string) (State, error) {
	data, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		return State{}, fmt.Errorf("read state: %w", err)
	}
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		return State{}, fmt.Errorf("decode state %s: %w", dir, err)
	}
	return st, nil
}

func (s *stateStore) snapshot() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.Namespaces = slices.Clone(s.st.Namespaces)
	st.Processes = slices.Clone(s.st.Processes)
	return st
}

func (s *stateStore) addNamespace(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if slices.Contains(s.st.Namespaces, name) {
		return nil
	}
	s.st.Namespaces = append(s.st.Namespaces, name)
	return s.saveLocked()
}

func (s *stateStore) addProcess(p ProcessRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.Processes = append(s.st.Processes, p)
	return s.saveLocked()
}

func (s *stateStore) setBinaries(b Binaries) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.Binaries = b
	return s.saveLocked()
}

func (s *stateStore) removeProcess(pid int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.Processes = slices.DeleteFunc(s.st.Processes, func(p ProcessRecord) bool { return p.PID == pid })
	return s.saveLocked()
}

// saveLocked writes the state atomically; the caller holds mu.
func (s *stateStore) saveLocked() error {
	data, err := json.MarshalIndent(s.st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	tmp := s.path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// CachedGnmic returns the pinned gnmic from its cache outside the clone
// (tools/gnmic/build.sh under repo, which builds it there the first time);
// a failed build's error carries what the script wrote to standard error.
func CachedGnmic(repo string) (string, error) {
	out, err := exec.Command(filepath.Join(repo, "tools", "gnmic", "build.sh")).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && len(ee.Stderr) > 0 {
			err = fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
		}
		return "", fmt.Errorf("build gnmic: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}
