package nos

import (
	"context"
	"errors"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	bolt "go.etcd.io/bbolt"

	"github.com/isthmus-net/isthmus/gen"
)

// labelingReconciler allocates the per-VRF label of every network
// instance it applies, as the dataplane and BGP do, and records whether
// the label was on disk when it got it; fail makes the next Apply fail
// after allocating.
type labelingReconciler struct {
	core   *Core
	onDisk []bool
	fail   bool
}

func (r *labelingReconciler) ID() string                             { return "labeling" }
func (r *labelingReconciler) Start(_ context.Context, c *Core) error { r.core = c; return nil }
func (r *labelingReconciler) Validate(*gen.Device) error             { return nil }
func (r *labelingReconciler) Stop(context.Context) error             { return nil }
func (r *labelingReconciler) Apply(_ context.Context, old, d *gen.Device) error {
	for name := range NetworkInstances(d) {
		if NetworkInstances(old)[name] != nil {
			continue
		}
		if _, err := r.core.Labels().VRF(name); err != nil {
			return err
		}
		r.onDisk = append(r.onDisk, labelOnDisk(r.core, name))
		if r.fail {
			r.fail = false
			return errors.New("boom")
		}
	}
	return nil
}

func labelOnDisk(c *Core, vrf string) bool {
	found := false
	c.Store().DB().View(func(tx *bolt.Tx) error {
		found = tx.Bucket(bucketLabels).Get([]byte(ownerKey(LabelOwner{VRF: vrf}))) != nil
		return nil
	})
	return found
}

// TestCommitWritesItsLabels: a label allocated while a commit is applied
// is written in the commit's own transaction (not on disk while the
// reconcilers run, on disk with the revision), so a Set that adds a VRF
// waits for the disk once; a label allocated by a commit that then fails
// is written all the same, as an allocation always was.
func TestCommitWritesItsLabels(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	r := &labelingReconciler{}
	c := newTestCore(t, dir, r)
	if _, err := c.Set(ctx, "a", &gpb.SetRequest{Update: []*gpb.Update{jsonUpdate(t, "/network-instances/network-instance[name=red]", redVRF)}}); err != nil {
		t.Fatal(err)
	}
	if len(r.onDisk) != 1 || r.onDisk[0] {
		t.Fatalf("label on disk while the commit was applied: %v, want [false]", r.onDisk)
	}
	if !labelOnDisk(c, "red") {
		t.Fatal("red's label is not on disk after its commit")
	}
	r.fail = true
	blue := `{"config":{"name":"blue","type":"L3VRF","route-distinguisher":"65000:2"}}`
	if _, err := c.Set(ctx, "a", &gpb.SetRequest{Update: []*gpb.Update{jsonUpdate(t, "/network-instances/network-instance[name=blue]", blue)}}); err == nil {
		t.Fatal("the failing commit succeeded")
	}
	if !labelOnDisk(c, "blue") {
		t.Fatal("the label a failed commit allocated is not on disk")
	}
	// Outside a commit an allocation is written at once.
	if _, err := c.Labels().VRF("green"); err != nil {
		t.Fatal(err)
	}
	if !labelOnDisk(c, "green") {
		t.Fatal("a label allocated outside a commit is not on disk")
	}
}
