package nos

import (
	"fmt"
	"path/filepath"
	"sort"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// BenchmarkStoreSync measures what the disk adds to a commit: one bbolt
// transaction writing one 400-byte entry (a VRF's size in the store)
// among 10 or 10,000, with the store's options ("default") and with the
// freelist left out of each commit ("nofreelistsync", rebuilt when the
// file is opened; durability is the same: bbolt still syncs the data and
// the meta page). It reports the median and the 99th percentile.
func BenchmarkStoreSync(b *testing.B) {
	for _, keys := range []int{10, 10000} {
		for _, o := range []struct {
			name string
			opts bolt.Options
		}{
			{"default", bolt.Options{}},
			{"nofreelistsync", bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType}},
		} {
			b.Run(fmt.Sprintf("keys=%d/%s", keys, o.name), func(b *testing.B) {
				benchStoreSync(b, &o.opts, keys)
			})
		}
	}
}

func benchStoreSync(b *testing.B, opts *bolt.Options, keys int) {
	db, err := bolt.Open(filepath.Join(b.TempDir(), "db"), 0o600, opts)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	val := make([]byte, 400)
	err = db.Update(func(tx *bolt.Tx) error {
		bk, err := tx.CreateBucketIfNotExists(bucketConfig)
		if err != nil {
			return err
		}
		for i := range keys {
			if err := bk.Put(fmt.Appendf(nil, "ni/v%d", i), val); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	took := make([]time.Duration, b.N)
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		err := db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketConfig).Put(fmt.Appendf(nil, "ni/v%d", i%keys), val)
		})
		if err != nil {
			b.Fatal(err)
		}
		took[i] = time.Since(start)
	}
	b.StopTimer()
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	b.ReportMetric(float64(took[b.N/2])/float64(time.Millisecond), "p50-ms")
	b.ReportMetric(float64(took[b.N*99/100])/float64(time.Millisecond), "p99-ms")
}
