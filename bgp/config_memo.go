package bgp

import (
	"sync"

	"github.com/isthmus-net/isthmus/gen"
)

// vrfMemo keeps the translation of the VRF entries of the last
// configuration, by the entry's address, so that translating the next
// one parses only the entries a commit replaced: the core never changes
// an entry of a configuration in place (a commit's candidate has its own
// copy of every entry it changes and shares the others), so an entry
// seen before translates the same. Only entries whose translation
// depends on nothing else are kept: a VRF with static routes also
// depends on the interfaces they name, and is translated every time.
// The memo holds the entries of the last configuration translated only,
// so it neither grows nor keeps entries alive.
type vrfMemo struct {
	// validated is the intent Validate translated from validatedFrom, for
	// the Apply of the same candidate that follows it: taken once, so no
	// intent that Apply changes and keeps is ever handed out again.
	validated     *intent
	validatedFrom *gen.Device

	mu   sync.Mutex       // guards seen, next
	seen map[*niT]vrfSpec // the entries of the last configuration translated
	next map[*niT]vrfSpec // being filled by the translation under way
	into *gen.Device      // the configuration next belongs to
}

// vrfOf returns vrfOf(name, ni, d), from the memo when ni was seen in
// the last configuration. A nil memo translates every entry.
func (m *vrfMemo) vrfOf(name string, ni *niT, d *gen.Device) (vrfSpec, error) {
	if m == nil || (ni.StaticRoutes != nil && len(ni.StaticRoutes.Static) > 0) {
		return vrfOf(name, ni, d)
	}
	if m.into != d {
		m.into, m.next = d, make(map[*niT]vrfSpec, len(m.seen))
	}
	if v, ok := m.seen[ni]; ok {
		m.next[ni] = v
		return v, nil
	}
	v, err := vrfOf(name, ni, d)
	if err == nil {
		m.next[ni] = v
	}
	return v, err
}

// translate runs intentOfMemo for d with the memo locked, and keeps
// what it translated for the next configuration. forValidate keeps the
// intent itself for the Apply of d, which takes it instead of
// translating d again.
func (m *vrfMemo) translate(d *gen.Device, loc local, forValidate bool) (*intent, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !forValidate && m.validated != nil && m.validatedFrom == d {
		in := m.validated
		m.validated, m.validatedFrom = nil, nil
		return in, nil
	}
	m.validated, m.validatedFrom = nil, nil
	m.into, m.next = nil, nil
	in, err := intentOfMemo(d, loc, m)
	if err == nil {
		m.seen = m.next
		if forValidate {
			m.validated, m.validatedFrom = in, d
		}
	}
	m.into, m.next = nil, nil
	return in, err
}
