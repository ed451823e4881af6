package dataplane

import "testing"

// TestServiceChangesWriteOnlyTheirHints: SetServices and DeleteServices
// write the flow hints of the addresses they change and leave the rest
// of the table alone. Writing all 65,536 entries, which they did when
// nothing changed, took one commit 15-25 ms.
func TestServiceChangesWriteOnlyTheirHints(t *testing.T) {
	requireRoot(t)
	d := openTest(t)
	must(t, d.SetServices(nil)) // the first use writes the whole table
	const other = uint32(12345) // an entry no call below names
	must(t, d.maps.FlowHints.Put(other, uint32(hintService)))
	must(t, d.SetServices(nil))
	must(t, d.DeleteServices(nil))
	var got uint32
	must(t, d.maps.FlowHints.Lookup(other, &got))
	if got != hintService {
		t.Fatalf("flow hint %d is %d after calls that change no service, want %d (left alone)", other, got, hintService)
	}
}
