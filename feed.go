package apikeys

import (
	"context"
	"time"
)

// ChangeKind says what a ChangeEvent reports.
type ChangeKind int

const (
	// KeyChanged: the key carrying Handle was written (created, updated, revoked, rotated,
	// rehashed) by a transaction that has committed. A cached copy of it is stale.
	KeyChanged ChangeKind = iota + 1
	// FeedLive: every change committed before At has been delivered. A feed reports it at
	// least every HeartbeatInterval while it is healthy.
	FeedLive
	// FeedLost: from now on changes may be missed, until the next FeedLive. Cached keys must
	// not be trusted meanwhile, and after it nothing cached before it may be trusted again.
	FeedLost
)

// HeartbeatInterval is how often a healthy ChangeFeed reports FeedLive.
const HeartbeatInterval = 200 * time.Millisecond

// ChangeEvent is one report of a ChangeFeed.
type ChangeEvent struct {
	Kind   ChangeKind
	Handle string    // KeyChanged: the key's lookup handle
	At     time.Time // FeedLive: delivered are all changes committed before this instant
}

// ChangeFeed tells every process over one database which keys were written, so that caches
// of keys can be dropped the moment they are stale. store.Store implements it: on PostgreSQL
// with NOTIFY in the writing transaction and a LISTEN connection per process, on SQLite (one
// process) in memory.
type ChangeFeed interface {
	// Watch calls fn for every change committed after Watch was called (a write made through
	// this process is reported before the write returns to its caller), and reports the
	// feed's health (FeedLive, FeedLost), until ctx ends. fn must be safe for concurrent use
	// and must not block. Watch returns when ctx ends.
	Watch(ctx context.Context, fn func(ChangeEvent)) error
}
