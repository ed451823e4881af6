package dataplane

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"
	"slices"
	"sort"
	"strconv"
)

// PolicyAction is what a rule or a default does with a flow.
type PolicyAction uint8

// Policy actions (the values the forwarder uses).
const (
	PolicyAccept PolicyAction = 1
	PolicyDrop   PolicyAction = 2
	PolicyReject PolicyAction = 3
)

// String names the action as the YANG model does.
func (a PolicyAction) String() string {
	switch a {
	case PolicyAccept:
		return "ACCEPT"
	case PolicyDrop:
		return "DROP"
	case PolicyReject:
		return "REJECT"
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// RejectKind is how a REJECT answers.
type RejectKind uint8

// Reject kinds: RejectAuto resets TCP and answers anything else with an
// ICMP destination unreachable (code 13).
const (
	RejectAuto     RejectKind = 0
	RejectTCPReset RejectKind = 1
	RejectICMP     RejectKind = 2
)

// PortRange is an inclusive range of ports; the zero value matches any.
type PortRange struct {
	First, Last uint16
}

// Any reports whether the range matches every port.
func (r PortRange) Any() bool { return r == PortRange{} }

// PolicyRule is one compiled ACL entry: a flow matches when every
// constraint matches.
type PolicyRule struct {
	// Sources and Destinations: nil matches any address; an empty non-nil
	// list matches none (a tag selector no pod satisfies).
	Sources, Destinations []netip.Prefix
	// Protocol is the IP protocol, 0 for any.
	Protocol uint8
	// SourcePorts and DestinationPorts (TCP and UDP).
	SourcePorts, DestinationPorts PortRange
	// ICMPType matches the ICMP type when ICMP is set (Protocol 1).
	ICMPType uint8
	ICMP     bool
	// Action and Reject say what a matching flow gets.
	Action PolicyAction
	Reject RejectKind
	// Entry names the ACL entry ("set/sequence") whose counters count the
	// flows this rule decides.
	Entry string
}

// Attachment is what is attached at one attachment point: rules in
// evaluation order (the first match decides) and the default.
type Attachment struct {
	Rules         []PolicyRule
	Default       PolicyAction
	DefaultReject RejectKind
}

// InterfacePolicy is the policy of a pod interface; nil means nothing is
// attached in that direction (everything passes).
type InterfacePolicy struct {
	Ingress, Egress *Attachment
}

// PolicyConfig is the whole policy of the forwarder: pod interfaces by
// ifindex and tunnel ingress by VRF name.
type PolicyConfig struct {
	Interfaces map[int]InterfacePolicy
	Tunnel     map[string]*Attachment
}

// Limits of the classifier (policy.h).
const (
	polWords       = 256
	polSummary     = polWords / 64
	PolicyMaxRules = polWords * 64 // rules per attachment
	polMaxAttach   = 16384
	polMaxEntries  = 65536
	polMaxWords    = 1 << 21 // POL_MAX_WORDS: non-zero bitmap words of every classifier entry
	polRuleSlots   = 1 << 19 // POL_RULE_SLOTS: rules of every attachment, spares included
)

// polBits is a rule bitmap, dense, as the compiler computes it; the
// forwarder stores its non-zero words only (polRef).
type polBits struct {
	summary [polSummary]uint64
	w       [polWords]uint64
}

func (b *polBits) set(rule int) {
	b.w[rule/64] |= 1 << (rule % 64)
	b.summary[rule/4096] |= 1 << ((rule / 64) % 64)
}

func (b *polBits) or(o *polBits) {
	for i := range b.w {
		b.w[i] |= o.w[i]
	}
	for i := range b.summary {
		b.summary[i] |= o.summary[i]
	}
}

// stored returns how many words of b are not zero: the room it takes in
// pol_words.
func (b *polBits) stored() uint32 {
	n := 0
	for _, s := range b.summary {
		n += bits.OnesCount64(s)
	}
	return uint32(n)
}

// ref returns the classifier value of b with its non-zero words stored
// from index off of pol_words on, and appends those words to words.
func (b *polBits) ref(off uint32, words []uint64) (polRef, []uint64) {
	r := polRef{Summary: b.summary}
	for j, s := range b.summary {
		r.Base[j] = off
		off += uint32(bits.OnesCount64(s))
	}
	for _, w := range b.w {
		if w != 0 {
			words = append(words, w)
		}
	}
	return r, words
}

// polRef is the forwarder's pol_ref: a classifier entry's summary and
// where its non-zero words are in pol_words (the first of each 64).
type polRef struct {
	Summary [polSummary]uint64
	Base    [polSummary]uint32
}

// words is the range of pol_words r's bitmap takes.
func (r *polRef) words() wordRange {
	n := 0
	for _, s := range r.Summary {
		n += bits.OnesCount64(s)
	}
	return wordRange{off: r.Base[0], n: uint32(n)}
}

// bits reads r's bitmap back from the words of pol_words it names.
func (r *polRef) bits(word func(uint32) (uint64, error)) (polBits, error) {
	var b polBits
	b.summary = r.Summary
	for k := range b.w {
		j, bit := k/64, uint(k%64)
		if r.Summary[j]&(1<<bit) == 0 {
			continue
		}
		w, err := word(r.Base[j] + uint32(bits.OnesCount64(r.Summary[j]&(1<<bit-1))))
		if err != nil {
			return b, err
		}
		b.w[k] = w
	}
	return b, nil
}

// dimKey is a prefix of one classifier dimension: the top bits bits of
// value (left-aligned in width bits).
type dimKey struct {
	value uint32
	bits  uint8
}

// dimension is one classifier of an attachment: every prefix a rule names
// and the rules that name it. The bitmap of a prefix (bitsOf) is computed
// when it is written, so that a change computes only those that differ.
type dimension struct {
	width   uint8
	rules   map[dimKey][]int
	lengths []uint8 // the prefix lengths some rule uses, once built
}

func newDimension(width uint8) *dimension {
	return &dimension{width: width, rules: map[dimKey][]int{}}
}

func (d *dimension) add(k dimKey, rule int) {
	k.value &= mask(k.bits, d.width)
	d.rules[k] = append(d.rules[k], rule)
}

func mask(bits, width uint8) uint32 {
	if bits == 0 {
		return 0
	}
	return ^uint32(0) << (width - bits) & (^uint32(0) >> (32 - width))
}

// build notes the prefix lengths in use: only those can hold a prefix
// that holds another.
func (d *dimension) build() {
	seen := map[uint8]bool{}
	for k := range d.rules {
		if !seen[k.bits] {
			seen[k.bits] = true
			d.lengths = append(d.lengths, k.bits)
		}
	}
	slices.Sort(d.lengths)
}

// bitsOf returns the bitmap of prefix k (a prefix some rule names): the
// rules of every prefix that holds it, so that a longest-prefix match on
// the packet yields every rule that matches in this dimension.
func (d *dimension) bitsOf(k dimKey, b *polBits) {
	*b = polBits{}
	for _, l := range d.lengths {
		if l > k.bits {
			break
		}
		for _, r := range d.rules[dimKey{value: k.value & mask(l, d.width), bits: l}] {
			b.set(r)
		}
	}
}

// differs reports whether prefix k's bitmap in d differs from its bitmap
// in old (where it may be absent): whether a prefix holding it names
// other rules in the two.
func (d *dimension) differs(old *dimension, k dimKey) bool {
	if _, ok := old.rules[k]; !ok {
		return true
	}
	check := func(lengths []uint8) bool {
		for _, l := range lengths {
			if l > k.bits {
				break
			}
			a := dimKey{value: k.value & mask(l, d.width), bits: l}
			if !slices.Equal(d.rules[a], old.rules[a]) {
				return true
			}
		}
		return false
	}
	return check(d.lengths) || check(old.lengths)
}

// compiledAttachment is an Attachment as the forwarder's classifier holds
// it.
type compiledAttachment struct {
	src, dst, dport, sport *dimension
	hasSport               bool
	rules                  []PolicyRule
	def                    PolicyAction
	defReject              RejectKind
}

// portBlocks splits an inclusive port range into aligned prefixes of the
// 16-bit port space.
func portBlocks(first, last uint16) []dimKey {
	var out []dimKey
	lo, hi := uint32(first), uint32(last)
	for lo <= hi {
		size := uint32(1)
		bits := uint8(16)
		for bits > 0 && lo%(size*2) == 0 && lo+size*2-1 <= hi {
			size *= 2
			bits--
		}
		out = append(out, dimKey{value: lo, bits: bits})
		lo += size
	}
	return out
}

// compileAttachment builds the classifier of a.
func compileAttachment(a *Attachment) (*compiledAttachment, error) {
	if len(a.Rules) > PolicyMaxRules {
		return nil, fmt.Errorf("compile policy: %d rules at one attachment point, at most %d", len(a.Rules), PolicyMaxRules)
	}
	c := &compiledAttachment{
		src: newDimension(32), dst: newDimension(32), dport: newDimension(24), sport: newDimension(24),
		rules: a.Rules, def: a.Default, defReject: a.DefaultReject,
	}
	if c.def == 0 {
		c.def = PolicyDrop
	}
	for i, r := range a.Rules {
		if !r.SourcePorts.Any() {
			c.hasSport = true
		}
		if r.Sources != nil && len(r.Sources) == 0 || r.Destinations != nil && len(r.Destinations) == 0 {
			continue // matches nothing: no bit anywhere
		}
		addPrefixes(c.src, r.Sources, i)
		addPrefixes(c.dst, r.Destinations, i)
		proto := uint32(r.Protocol) << 16
		switch {
		case r.Protocol == 0:
			c.dport.add(dimKey{}, i)
		case r.ICMP:
			c.dport.add(dimKey{value: proto | uint32(r.ICMPType)<<8, bits: 16}, i)
		case !r.DestinationPorts.Any():
			for _, b := range portBlocks(r.DestinationPorts.First, max(r.DestinationPorts.Last, r.DestinationPorts.First)) {
				c.dport.add(dimKey{value: proto | b.value, bits: 8 + b.bits}, i)
			}
		default:
			c.dport.add(dimKey{value: proto, bits: 8}, i)
		}
		switch {
		case r.Protocol == 0:
			c.sport.add(dimKey{}, i)
		case !r.SourcePorts.Any():
			for _, b := range portBlocks(r.SourcePorts.First, max(r.SourcePorts.Last, r.SourcePorts.First)) {
				c.sport.add(dimKey{value: proto | b.value, bits: 8 + b.bits}, i)
			}
		default:
			c.sport.add(dimKey{value: proto, bits: 8}, i)
		}
	}
	c.src.build()
	c.dst.build()
	c.dport.build()
	if c.hasSport {
		c.sport.build()
	} else {
		c.sport = newDimension(24)
		c.sport.build()
	}
	return c, nil
}

func addPrefixes(d *dimension, ps []netip.Prefix, rule int) {
	if ps == nil {
		d.add(dimKey{}, rule)
		return
	}
	for _, p := range ps {
		a := p.Addr().As4()
		d.add(dimKey{value: binary.BigEndian.Uint32(a[:]), bits: uint8(p.Bits())}, rule)
	}
}

// fingerprint identifies an attachment's content, so that points with
// the same policy share one compiled attachment.
func (a *Attachment) fingerprint() string {
	b := make([]byte, 0, 64+48*len(a.Rules))
	b = fmt.Appendf(b, "%d/%d;", a.Default, a.DefaultReject)
	prefixes := func(ps []netip.Prefix) {
		if ps == nil {
			b = append(b, '*')
		}
		b = append(b, '[')
		for _, p := range ps {
			b = p.AppendTo(b)
			b = append(b, ' ')
		}
		b = append(b, ']', '|')
	}
	num := func(v uint64) {
		b = strconv.AppendUint(b, v, 10)
		b = append(b, '|')
	}
	for _, r := range a.Rules {
		prefixes(r.Sources)
		prefixes(r.Destinations)
		for _, v := range []uint64{uint64(r.Protocol), uint64(r.SourcePorts.First), uint64(r.SourcePorts.Last),
			uint64(r.DestinationPorts.First), uint64(r.DestinationPorts.Last), uint64(r.ICMPType), uint64(r.Action), uint64(r.Reject)} {
			num(v)
		}
		if r.ICMP {
			b = append(b, 'i')
		}
		b = strconv.AppendQuote(b, r.Entry)
		b = append(b, ';')
	}
	return string(b)
}

// subtractPrefixes returns the addresses of ps minus those of except, as
// prefixes, sorted.
func subtractPrefixes(ps, except []netip.Prefix) []netip.Prefix {
	out := []netip.Prefix{}
	var cut func(p netip.Prefix)
	cut = func(p netip.Prefix) {
		for _, e := range except {
			if e.Bits() <= p.Bits() && e.Contains(p.Addr()) {
				return // all of p is excepted
			}
		}
		for _, e := range except {
			if p.Bits() < e.Bits() && p.Contains(e.Addr()) {
				lo := netip.PrefixFrom(p.Addr(), p.Bits()+1)
				a := p.Addr().As4()
				v := binary.BigEndian.Uint32(a[:]) | 1<<(31-p.Bits())
				binary.BigEndian.PutUint32(a[:], v)
				hi := netip.PrefixFrom(netip.AddrFrom4(a), p.Bits()+1)
				cut(lo)
				cut(hi)
				return
			}
		}
		out = append(out, p)
	}
	for _, p := range ps {
		cut(p.Masked())
	}
	sortPrefixes(out)
	return out
}

// intersectPrefixes returns the addresses in both a and b (nil is any).
func intersectPrefixes(a, b []netip.Prefix) []netip.Prefix {
	if a == nil {
		return b
	}
	if b == nil {
		return a
	}
	seen := map[netip.Prefix]bool{}
	out := []netip.Prefix{}
	for _, x := range a {
		for _, y := range b {
			var p netip.Prefix
			switch {
			case x.Bits() <= y.Bits() && x.Contains(y.Addr()):
				p = y
			case y.Bits() < x.Bits() && y.Contains(x.Addr()):
				p = x
			default:
				continue
			}
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	sortPrefixes(out)
	return out
}

func sortPrefixes(ps []netip.Prefix) {
	sort.Slice(ps, func(i, j int) bool {
		if c := ps[i].Addr().Compare(ps[j].Addr()); c != 0 {
			return c < 0
		}
		return ps[i].Bits() < ps[j].Bits()
	})
}
