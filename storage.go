package apikeys

import "context"

// KeyStore keeps keys and their subjects. Implementations translate their driver's errors
// into this package's codes: ENOTFOUND, ECONFLICT (with a sentence of their own as detail,
// never a driver's), EINVALID for a value the database cannot keep, EUNAVAILABLE when the
// database does not answer. Any other error is internal. store.Store implements it on
// PostgreSQL and SQLite; store/storetest is the conformance suite every implementation and
// decorator passes.
type KeyStore interface {
	// CreateKeys stores keys, and each new subject among them, in one transaction: every
	// key or none. ECONFLICT when an id or lookup handle is taken.
	CreateKeys(ctx context.Context, keys []NewKey) error
	// GetKey returns the key with id. ENOTFOUND.
	GetKey(ctx context.Context, id string) (Key, error)
	// GetKeyByHandle returns the key whose token carries handle. ENOTFOUND.
	GetKeyByHandle(ctx context.Context, handle string) (Key, error)
	// ListHandles returns up to limit lookup handles greater than after ("" for the first
	// page), in the database's order of handles: passing the last one returned gets the next
	// page, and an empty page ends the list. Every key's handle is listed, whatever its state.
	ListHandles(ctx context.Context, after string, limit int) ([]string, error)
	// ListKeys returns up to f.Limit keys matching f, newest first, and the cursor of the
	// next page when more may follow. EINVALID for a filter it cannot apply.
	ListKeys(ctx context.Context, f KeyFilter) ([]Key, *Cursor, error)
	// UpdateKey loads the key with id, held against concurrent writers, lets fn change
	// its mutable fields and stores them. If fn fails nothing is written and its error is
	// returned. ENOTFOUND.
	UpdateKey(ctx context.Context, id string, fn func(k *Key) error) (Key, error)
	// RotateKey loads the key with id, held against concurrent writers; fn changes it and
	// returns its replacement, which is inserted in the same transaction. If fn fails
	// nothing is written and its error is returned. ENOTFOUND; ECONFLICT when the
	// replacement's id or handle is taken.
	RotateKey(ctx context.Context, id string, fn func(old *Key) (Key, error)) (old, replacement Key, err error)
	// SetKeyHash replaces the stored hash of the key with id by newHash if it is still
	// oldHash (a compare-and-set: of replicas rehashing a key together, one writes), and
	// reports whether it did. It is a change to the key like any other write.
	SetKeyHash(ctx context.Context, id, oldHash, newHash string) (bool, error)
	// RecordUsage stores the latest use of each key; older uses than the recorded one are
	// ignored.
	RecordUsage(ctx context.Context, uses []Usage) error
	// GetSubject returns the subject with id. ENOTFOUND.
	GetSubject(ctx context.Context, id string) (Subject, error)
	// Ping reports whether the database answers.
	Ping(ctx context.Context) error
}
