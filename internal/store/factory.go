package store

import (
	"context"
	"time"
)

// FactoryBatch is one run of `thingid factory issue` (resumed runs of the
// same output directory are the same batch): what was made, by whom, with
// which CA, and which things belong to it (FactoryBatches).
type FactoryBatch struct {
	ID           string // set by the store (a UUID) when empty
	Created      time.Time
	Actor        string
	Model        string
	Manufacturer string
	// Count is the devices the batch was planned with; Issued is how many
	// things it made (read only: counted by AddFactoryBatchThings, and not
	// lowered when one of them is deleted).
	Count  int
	Issued int
	// FirstSerial and LastSerial bound the batch's serial numbers.
	FirstSerial, LastSerial string
	// CASubject and CAFingerprint (lower-case hex SHA-256 of its DER) name
	// the CA that issued the batch's certificates.
	CASubject, CAFingerprint string
	// Validity is the lifetime of the batch's certificates.
	Validity time.Duration
}

// FactoryBatches stores factory batches and their things. Deleting a thing
// takes it out of its batch; a batch is never deleted.
type FactoryBatches interface {
	// PutFactoryBatch stores b, setting its ID and Created when empty. When
	// a batch with b's ID is stored, only its plan changes (Count,
	// FirstSerial, LastSerial: a resumed run that makes more devices) and b
	// is set to the stored batch.
	PutFactoryBatch(ctx context.Context, b *FactoryBatch) error
	GetFactoryBatch(ctx context.Context, id string) (*FactoryBatch, error)
	// ListFactoryBatches returns one page of batches, newest first, and
	// how many there are.
	ListFactoryBatches(ctx context.Context, offset, limit int) ([]*FactoryBatch, int, error)
	// AddFactoryBatchThings puts things into the batch (ErrNotFound when
	// the batch or a thing does not exist; a thing in it already stays).
	AddFactoryBatchThings(ctx context.Context, batchID string, thingIDs []string) error
	// ListFactoryBatchThings returns one page of the batch's things by
	// serial number, and how many there are.
	ListFactoryBatchThings(ctx context.Context, batchID string, offset, limit int) ([]*Thing, int, error)
	// ThingFactoryBatches returns the batches that made the thing, oldest
	// first (none for a thing no factory run made).
	ThingFactoryBatches(ctx context.Context, thingID string) ([]*FactoryBatch, error)
	// CountThingsOfCAs counts, for each CA by its ID, the things holding a
	// certificate (Thing.Certificates) the CA issued (its issuer is the
	// CA's subject) or that chained to it (CertRef.CA), each thing once.
	CountThingsOfCAs(ctx context.Context, cas []*ManufacturerCA) (map[string]int, error)
}
