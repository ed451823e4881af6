package dataplane

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"time"

	"github.com/cilium/ebpf"
)

// policyTable is what SetPolicy programmed: compiled attachments by
// content, the attachment of every point, and the counter slots of ACL
// entries. Guarded by Dataplane.mu.
type policyTable struct {
	byPrint    map[string]*programmedAttachment // fingerprint → attachment
	ids        map[uint32]bool                  // attachment ids in use
	ifaces     map[uint32]polIface              // interface slot → attachments
	vrfs       map[uint32]polVRF                // VRF id → tunnel attachment, active
	entries    map[string]uint32                // ACL entry ("set/seq") → counter slot
	slots      map[uint32]bool                  // counter slots in use
	stale      map[uint32]bool                  // attachment ids an earlier process left in the pinned maps
	words      *wordSpace                       // pol_words in use
	ruleSlots  *wordSpace                       // pol_rules in use
	staleRules map[uint32]wordRange             // the rules of the stale attachments
	retired    []*programmedAttachment          // no point uses them any more; PrunePolicy removes them or keeps them as spares
	spares     []*programmedAttachment          // retired, kept in the maps: writeAttachment rewrites one in place of a new id
	gen        uint32
	nextID     uint32
	nextSlot   uint32
}

type polIface struct{ Ingress, Egress uint32 }

// polVRF is the forwarder's pol_vrf: a VRF's tunnel-ingress attachment,
// whether policy is active in it, and the policy generation while it is
// (every active VRF holds the current one: an established flow's check
// reads it in the line it reads for the VRF anyway).
type polVRF struct{ Tunnel, Active, Gen, Pad uint32 }

// programmedAttachment is one compiled attachment in the maps.
type programmedAttachment struct {
	id    uint32
	c     *compiledAttachment
	rules int
	vals  []polRule // the rules as written
	// runs: the pol_words of each classifier entry, by dimension (as
	// polDims orders them) and prefix.
	runs [4]map[dimKey]wordRange
	// ruleRun: its rules in pol_rules (room for at least its rules).
	ruleRun wordRange
	// freed: runs of entries a rewrite replaced or dropped, freed once
	// the rewrite is written (or the attachment removed).
	freed []wordRange
}

func newPolicyTable() *policyTable {
	return &policyTable{
		byPrint: map[string]*programmedAttachment{}, ids: map[uint32]bool{},
		ifaces: map[uint32]polIface{}, vrfs: map[uint32]polVRF{},
		entries: map[string]uint32{}, slots: map[uint32]bool{},
		words: newWordSpace(polMaxWords), ruleSlots: newWordSpace(polRuleSlots),
	}
}

// policy returns the policy table, adopting on first use what an earlier
// process left in the pinned maps: its generation (so that the next bump
// invalidates every flow) and its attachment ids (kept out of use until
// the first SetPolicy has moved every point off them, then removed).
func (d *Dataplane) policy() (*policyTable, error) {
	if d.pol != nil {
		return d.pol, nil
	}
	t := newPolicyTable()
	if err := d.maps.PolGen.Lookup(uint32(0), &t.gen); err != nil {
		return nil, fmt.Errorf("read policy generation: %w", err)
	}
	t.stale = map[uint32]bool{}
	t.staleRules = map[uint32]wordRange{}
	var id uint32
	var a polAttachment
	it := d.maps.PolAttach.Iterate()
	for it.Next(&id, &a) {
		if a.Default != 0 {
			t.stale[id] = true
			t.ids[id] = true
			r := wordRange{off: a.RuleBase, n: a.Rules}
			t.staleRules[id] = r
			t.ruleSlots.mark(r, true)
		}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read policy attachments: %w", err)
	}
	// The words the classifier entries an earlier process left refer to
	// stay in use until purgeStale removes those entries.
	for _, m := range []*ebpf.Map{d.maps.PolSrc, d.maps.PolDst, d.maps.PolDport, d.maps.PolSport} {
		var k polLPMKey
		var r polRef
		ci := m.Iterate()
		for ci.Next(&k, &r) {
			t.words.mark(r.words(), true)
		}
		if err := ci.Err(); err != nil {
			return nil, fmt.Errorf("read policy classifier %s: %w", m, err)
		}
	}
	// The points an earlier process set: diffed by the first SetPolicy,
	// so those it no longer wants are cleared.
	var slot uint32
	var pi polIface
	ii := d.maps.PolIfaces.Iterate()
	for ii.Next(&slot, &pi) {
		if pi != (polIface{}) {
			t.ifaces[slot] = pi
		}
	}
	if err := ii.Err(); err != nil {
		return nil, fmt.Errorf("read policy interfaces: %w", err)
	}
	var vrf uint32
	var pv polVRF
	vi := d.maps.PolVrfs.Iterate()
	for vi.Next(&vrf, &pv) {
		if pv != (polVRF{}) {
			t.vrfs[vrf] = pv
		}
	}
	if err := vi.Err(); err != nil {
		return nil, fmt.Errorf("read policy vrfs: %w", err)
	}
	d.pol = t
	return t, nil
}

// purgeStale removes the attachments an earlier process left.
func (d *Dataplane) purgeStale(t *policyTable) error {
	if len(t.stale) == 0 {
		return nil
	}
	var errs []error
	for _, m := range []*ebpf.Map{d.maps.PolSrc, d.maps.PolDst, d.maps.PolDport, d.maps.PolSport} {
		var keys []polLPMKey
		var runs []wordRange
		var k polLPMKey
		var v polRef
		it := m.Iterate()
		for it.Next(&k, &v) {
			if t.stale[binary.BigEndian.Uint32(k[4:8])] {
				keys = append(keys, k)
				runs = append(runs, v.words())
			}
		}
		errs = append(errs, it.Err())
		for i := range keys {
			if err := m.Delete(&keys[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				errs = append(errs, err)
				continue
			}
			t.words.mark(runs[i], false)
		}
	}
	for id := range t.stale {
		if err := d.maps.PolAttach.Put(id, polAttachment{}); err != nil {
			errs = append(errs, err)
			continue
		}
		t.ruleSlots.mark(t.staleRules[id], false)
		delete(t.ids, id)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("set policy: remove the policy of an earlier process: %w", err)
	}
	t.stale = nil
	return nil
}

// SetPolicy programs the whole policy: attachments whose content is new
// are compiled and written under fresh ids, every point is switched to its
// attachment, the policy generation is bumped (so every flow is evaluated
// again on its next packet; not when nothing changed). Attachments no
// point uses any more are removed by PrunePolicy. Interfaces that are not
// attached are an error.
func (d *Dataplane) SetPolicy(cfg PolicyConfig) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	t, err := d.policy()
	if err != nil {
		return err
	}
	want := map[string]*Attachment{}
	prints := map[*Attachment]string{} // points share attachments: one fingerprint each
	printOf := func(a *Attachment) string {
		p, ok := prints[a]
		if !ok {
			p = a.fingerprint()
			prints[a] = p
		}
		return p
	}
	note := func(a *Attachment) {
		if a != nil {
			want[printOf(a)] = a
		}
	}
	for _, ip := range cfg.Interfaces {
		note(ip.Ingress)
		note(ip.Egress)
	}
	for _, a := range cfg.Tunnel {
		note(a)
	}
	// Counter slots of the entries the rules name.
	used := map[string]bool{}
	for _, a := range want {
		for _, r := range a.Rules {
			used[r.Entry] = true
		}
	}
	for e := range used {
		if _, err := t.entrySlot(d, e); err != nil {
			return err
		}
	}
	// New attachments.
	order := make([]string, 0, len(want))
	for p := range want {
		order = append(order, p)
	}
	sort.Strings(order)
	changed := false
	for _, p := range order {
		if t.byPrint[p] != nil {
			continue
		}
		changed = true
		c, err := compileAttachment(want[p])
		if err != nil {
			return err
		}
		pa, err := d.writeAttachment(t, c)
		if err != nil {
			return err
		}
		t.byPrint[p] = pa
	}
	idOf := func(a *Attachment) uint32 {
		if a == nil {
			return 0
		}
		return t.byPrint[printOf(a)].id
	}
	// Points.
	ifaces := map[uint32]polIface{}
	vrfs := map[uint32]polVRF{}
	for ifindex, ip := range cfg.Interfaces {
		slot, err := d.ifaceSlot(ifindex)
		if err != nil {
			return fmt.Errorf("set policy: %w", err)
		}
		pi := polIface{Ingress: idOf(ip.Ingress), Egress: idOf(ip.Egress)}
		if pi == (polIface{}) {
			continue
		}
		ifaces[slot] = pi
		var ifc forwarderIface
		if err := d.maps.IfaceSlots.Lookup(slot, &ifc); err != nil {
			return fmt.Errorf("set policy: read interface slot %d: %w", slot, err)
		}
		v := vrfs[ifc.Vrf]
		v.Active, v.Gen = 1, t.gen
		vrfs[ifc.Vrf] = v
	}
	for name, a := range cfg.Tunnel {
		if a == nil {
			continue
		}
		id, err := d.vrfID(name, true)
		if err != nil {
			return fmt.Errorf("set policy: %w", err)
		}
		vrfs[id] = polVRF{Tunnel: idOf(a), Active: 1, Gen: t.gen}
	}
	changed = changed || len(ifaces) != len(t.ifaces) || len(vrfs) != len(t.vrfs) || len(t.byPrint) != len(want)
	for slot, pi := range ifaces {
		if t.ifaces[slot] != pi {
			changed = true
			if err := d.maps.PolIfaces.Put(slot, pi); err != nil {
				return fmt.Errorf("set policy: write interface slot %d: %w", slot, err)
			}
		}
	}
	for slot := range t.ifaces {
		if _, ok := ifaces[slot]; !ok {
			if err := d.maps.PolIfaces.Put(slot, polIface{}); err != nil {
				return fmt.Errorf("set policy: clear interface slot %d: %w", slot, err)
			}
		}
	}
	t.ifaces = ifaces
	for id, v := range vrfs {
		if t.vrfs[id] != v {
			changed = true
			if err := d.maps.PolVrfs.Put(id, v); err != nil {
				return fmt.Errorf("set policy: write vrf %d: %w", id, err)
			}
		}
	}
	for id := range t.vrfs {
		if _, ok := vrfs[id]; !ok {
			if err := d.maps.PolVrfs.Put(id, polVRF{}); err != nil {
				return fmt.Errorf("set policy: clear vrf %d: %w", id, err)
			}
		}
	}
	t.vrfs = vrfs
	if changed {
		t.gen++
		if err := d.maps.PolGen.Put(uint32(0), t.gen); err != nil {
			return fmt.Errorf("set policy: bump generation: %w", err)
		}
		for id, v := range t.vrfs {
			v.Gen = t.gen
			if err := d.maps.PolVrfs.Put(id, v); err != nil {
				return fmt.Errorf("set policy: bump generation of vrf %d: %w", id, err)
			}
			t.vrfs[id] = v
		}
	}
	// Attachments no point uses: retired now, removed by PrunePolicy.
	for p, pa := range t.byPrint {
		if want[p] == nil {
			t.retired = append(t.retired, pa)
			delete(t.byPrint, p)
		}
	}
	// Counter slots of entries no rule names.
	for e, slot := range t.entries {
		if !used[e] {
			delete(t.entries, e)
			delete(t.slots, slot)
		}
	}
	return nil
}

// PrunePolicy removes what SetPolicy left behind once no point used it:
// retired attachments and those of an earlier process. It is cleanup, not
// enforcement (SetPolicy's new policy is in force when it returns), so it
// runs after. The most recently retired attachments are kept as spares
// (at most polSpares, with no more rules together than the attachments in
// use): the next change rewrites only what differs in one of them.
func (d *Dataplane) PrunePolicy() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	t, err := d.policy()
	if err != nil {
		return err
	}
	live := 0
	for _, pa := range t.byPrint {
		live += pa.rules
	}
	// Newest first: the retired of this change, then the older spares.
	cand := make([]*programmedAttachment, 0, len(t.retired)+len(t.spares))
	for i := len(t.retired) - 1; i >= 0; i-- {
		cand = append(cand, t.retired[i])
	}
	cand = append(cand, t.spares...)
	t.retired, t.spares = nil, nil
	kept := 0
	for i, pa := range cand {
		if len(t.spares) < polSpares && kept+pa.rules <= live {
			kept += pa.rules
			t.spares = append(t.spares, pa)
			continue
		}
		if err := d.removeAttachment(t, pa); err != nil {
			// Still to be removed: the next PrunePolicy tries again.
			t.retired = append(t.retired, cand[i:]...)
			return err
		}
	}
	return d.purgeStale(t)
}

// entrySlot returns the counter slot of an ACL entry, allocating (and
// zeroing) one for a new entry.
func (t *policyTable) entrySlot(d *Dataplane, entry string) (uint32, error) {
	if s, ok := t.entries[entry]; ok {
		return s, nil
	}
	for range polMaxEntries {
		t.nextSlot = t.nextSlot%(polMaxEntries-1) + 1
		if t.slots[t.nextSlot] {
			continue
		}
		if err := d.zeroPerCPU(d.maps.PolEntryCounters, t.nextSlot, 16); err != nil {
			return 0, fmt.Errorf("set policy: zero entry counters: %w", err)
		}
		t.slots[t.nextSlot] = true
		t.entries[entry] = t.nextSlot
		return t.nextSlot, nil
	}
	return 0, fmt.Errorf("set policy: more than %d ACL entries", polMaxEntries-1)
}

func (d *Dataplane) zeroPerCPU(m *ebpf.Map, key uint32, size int) error {
	n, err := possibleCPUs()
	if err != nil {
		return err
	}
	vals := make([][]byte, n)
	for i := range vals {
		vals[i] = make([]byte, size)
	}
	return m.Put(key, vals)
}

func (t *policyTable) allocID() (uint32, error) {
	for range polMaxAttach {
		t.nextID = t.nextID%(polMaxAttach-1) + 1
		if !t.ids[t.nextID] {
			t.ids[t.nextID] = true
			return t.nextID, nil
		}
	}
	return 0, fmt.Errorf("set policy: all %d attachment ids in use", polMaxAttach-1)
}

func addrKey(id uint32, k dimKey) []byte {
	b := make([]byte, 12)
	binary.LittleEndian.PutUint32(b[0:], 32+uint32(k.bits))
	binary.BigEndian.PutUint32(b[4:], id)
	binary.BigEndian.PutUint32(b[8:], k.value)
	return b
}

func portKey(id uint32, k dimKey) []byte {
	b := make([]byte, 12)
	binary.LittleEndian.PutUint32(b[0:], 32+uint32(k.bits))
	binary.BigEndian.PutUint32(b[4:], id)
	b[8] = byte(k.value >> 16)
	b[9] = byte(k.value >> 8)
	b[10] = byte(k.value)
	return b
}

// polRule is the forwarder's pol_rule.
type polRule struct {
	Entry  uint32
	Action uint8
	Reject uint8
	Pad    uint16
}

// polAttachment is the forwarder's pol_attachment.
type polAttachment struct {
	Rules         uint32
	Default       uint8
	DefaultReject uint8
	HasSport      uint8
	Pad           uint8
	RuleBase      uint32
}

// PolicyCounter counts what one ACL entry decided: packets and bytes of
// the flows it accepted, or the packets it refused.
type PolicyCounter struct {
	Packets, Bytes uint64
}

// PolicyEntryCounters returns the counters of every programmed ACL entry
// ("set/sequence"), summed over CPUs.
func (d *Dataplane) PolicyEntryCounters() (map[string]PolicyCounter, error) {
	d.mu.Lock()
	entries := map[string]uint32{}
	if d.pol != nil {
		for e, s := range d.pol.entries {
			entries[e] = s
		}
	}
	d.mu.Unlock()
	out := make(map[string]PolicyCounter, len(entries))
	for e, slot := range entries {
		var per [][2]uint64
		if err := d.maps.PolEntryCounters.Lookup(slot, &per); err != nil {
			return nil, fmt.Errorf("read entry counters: %w", err)
		}
		var c PolicyCounter
		for _, v := range per {
			c.Packets += v[0]
			c.Bytes += v[1]
		}
		out[e] = c
	}
	return out, nil
}

// PolicyDenied is what one attachment point refused.
type PolicyDenied struct {
	// Interface: ingress and egress. VRF: every point of the VRF (Ingress)
	// and of those its tunnel ingress (Egress).
	Ingress, Egress uint64
}

// InterfacePolicyDenied returns the packets the policy of the pod
// interface ifindex refused, summed over CPUs.
func (d *Dataplane) InterfacePolicyDenied(ifindex int) (PolicyDenied, error) {
	d.mu.Lock()
	slot, err := d.ifaceSlot(ifindex)
	d.mu.Unlock()
	if err != nil {
		return PolicyDenied{}, err
	}
	return sumDenied(d.maps.PolIfaceDenied, slot)
}

// VRFPolicyDenied returns the packets refused by policy in a VRF: all of
// them and those refused at its tunnel ingress.
func (d *Dataplane) VRFPolicyDenied(vrf string) (all, tunnel uint64, err error) {
	d.mu.Lock()
	id, err := d.vrfID(vrf, false)
	d.mu.Unlock()
	if err != nil {
		return 0, 0, err
	}
	s, err := sumDenied(d.maps.PolVrfDenied, id)
	return s.Ingress, s.Egress, err
}

func sumDenied(m *ebpf.Map, key uint32) (PolicyDenied, error) {
	var per [][2]uint64
	if err := m.Lookup(key, &per); err != nil {
		return PolicyDenied{}, fmt.Errorf("read denied counters: %w", err)
	}
	var s PolicyDenied
	for _, v := range per {
		s.Ingress += v[0]
		s.Egress += v[1]
	}
	return s, nil
}

// PolicyFlow is one direction of a flow that policy decided.
type PolicyFlow struct {
	VRF          string
	Protocol     uint8
	Source, Dest netip.AddrPort
	Verdict      string // "ALLOW", "DENY" or "REJECT"
	Reply        bool   // the reply direction
	Stale        bool   // decided under an older policy: evaluated again on its next packet
	// DecidedBy are the ACL entries ("set/sequence") that decided the
	// flow: those that accepted it at each point it crossed, or the one
	// that refused it; none where a default action decided.
	DecidedBy []string
	// DeniedAt is where a refused flow was refused ("EGRESS", "INGRESS",
	// "TUNNEL_INGRESS"), and DeniedIfindex the pod interface of the
	// first two.
	DeniedAt      string
	DeniedIfindex int
	Idle          time.Duration // since the last packet in this direction
}

// PolicyFlows lists the flow entries policy made, with their verdicts.
func (d *Dataplane) PolicyFlows() ([]PolicyFlow, error) {
	entries, err := d.readFlows()
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	names := map[uint32]string{}
	for n, id := range d.vrfs {
		names[id] = n
	}
	gen := uint32(0)
	if d.pol != nil {
		gen = d.pol.gen
	}
	dn := d.decisionNames() // policy_flows_linux.go
	d.mu.Unlock()
	now := monotonicNow()
	var out []PolicyFlow
	for k, f := range entries {
		if k.Pad[0] != flowSpacePolicy {
			continue
		}
		src, dst := netip.AddrPortFrom(addrOf(k.Saddr), be16(k.Sport)), netip.AddrPortFrom(addrOf(k.Daddr), be16(k.Dport))
		if f.Flags&flowBoth == 0 { // the two-entry layout, before an upgrade
			out = append(out, PolicyFlow{VRF: names[k.Vrf], Protocol: k.Proto, Source: src, Dest: dst,
				Verdict: verdictName(f.Verdict), Reply: f.Flags&flowReply != 0, Stale: f.NatAddr != gen})
			dn.decode(&out[len(out)-1], f, now)
			continue
		}
		// One entry for both ways: the first packet's way as decided, the
		// reply allowed when that way is (never answered).
		if f.Flags&flowSwapped != 0 {
			src, dst = dst, src
		}
		reply := f
		if reply.Verdict != verdictAllow {
			reply.Verdict = verdictDeny
		}
		for _, e := range []struct {
			src, dst netip.AddrPort
			f        forwarderFlow
			reply    bool
		}{{src, dst, f, false}, {dst, src, reply, true}} {
			out = append(out, PolicyFlow{VRF: names[k.Vrf], Protocol: k.Proto, Source: e.src, Dest: e.dst,
				Verdict: verdictName(e.f.Verdict), Reply: e.reply, Stale: f.NatAddr != gen})
			dn.decode(&out[len(out)-1], e.f, now)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Source != out[j].Source {
			return out[i].Source.Compare(out[j].Source) < 0
		}
		return out[i].Dest.Compare(out[j].Dest) < 0
	})
	return out, nil
}

// flowSpacePolicy is FLOW_SPACE_POLICY of policy.h: flow_key.pad[0] of
// policy's entries.
const flowSpacePolicy = 1

// Verdicts of a flow entry (enum flow_verdict, VERDICT_REJECT).
const (
	verdictAllow  = 0
	verdictDeny   = 1
	verdictReject = 2
)

func verdictName(v uint8) string {
	switch v {
	case verdictAllow:
		return "ALLOW"
	case verdictDeny:
		return "DENY"
	case verdictReject:
		return "REJECT"
	}
	return fmt.Sprintf("verdict(%d)", v)
}
