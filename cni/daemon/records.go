package daemon

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/isthmus-net/isthmus/cni/api"
)

// bucketAttachments holds one record per attachment:
// "<container id>/<ifname>" → api.Attachment as JSON.
var bucketAttachments = []byte("cni-attachments")

func recordKey(id api.AttachmentID) string { return id.ContainerID + "/" + id.IfName }

func getRecord(tx *bolt.Tx, id api.AttachmentID) (*api.Attachment, error) {
	b := tx.Bucket(bucketAttachments).Get([]byte(recordKey(id)))
	if b == nil {
		return nil, nil
	}
	a := new(api.Attachment)
	if err := json.Unmarshal(b, a); err != nil {
		return nil, fmt.Errorf("decode attachment %q: %w", recordKey(id), err)
	}
	return a, nil
}

func putRecord(tx *bolt.Tx, a api.Attachment) error {
	b, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("encode attachment %q: %w", recordKey(a.AttachmentID), err)
	}
	if err := tx.Bucket(bucketAttachments).Put([]byte(recordKey(a.AttachmentID)), b); err != nil {
		return fmt.Errorf("store attachment %q: %w", recordKey(a.AttachmentID), err)
	}
	return nil
}

func deleteRecord(tx *bolt.Tx, id api.AttachmentID) error {
	if err := tx.Bucket(bucketAttachments).Delete([]byte(recordKey(id))); err != nil {
		return fmt.Errorf("delete attachment %q: %w", recordKey(id), err)
	}
	return nil
}

func allRecords(tx *bolt.Tx) ([]api.Attachment, error) {
	var out []api.Attachment
	err := tx.Bucket(bucketAttachments).ForEach(func(k, v []byte) error {
		var a api.Attachment
		if err := json.Unmarshal(v, &a); err != nil {
			return fmt.Errorf("decode attachment %q: %w", k, err)
		}
		out = append(out, a)
		return nil
	})
	return out, err
}
