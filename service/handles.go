package service

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/bits-and-blooms/bloom/v3"

	apikeys "github.com/qs/apikeys"
)

// The handle filter answers "does any key carry this handle?" from memory, so that a token
// whose handle no key has (random tokens pass the checksum: CRC32 is public) costs no
// database read. It is a Bloom filter (bits-and-blooms/bloom) rather than an exact set: about
// 2.4 bytes a handle at a false-positive rate of 1 in 10,000 (a million keys: 2.4 MiB, where a
// Go map of the handles would take some 60 MiB), and its only error is the harmless one: a
// handle it wrongly holds is read from the database, as every handle was before. Keys are
// never deleted, so a filter that only grows is exact about absence.
//
// It is loaded from the store, page by page, once the change feed is live (so every key
// committed after the feed started is heard, and every one before is in the pages), and kept
// current by the feed (a created key's handle is added, on the replica that wrote it before
// its create returns). It is used only while the feed vouches for the cache, and is loaded
// again after the feed lost changes, or when it holds twice the handles it was sized for.
const (
	filterFalsePositive = 1e-4
	filterMinCapacity   = 1 << 20
	filterPage          = 10_000
	// filterRetry spaces loads after one failed.
	filterRetry = time.Second
)

type handleFilter struct {
	store apikeys.KeyStore
	log   *slog.Logger
	stats *VerifierStats

	mu       sync.RWMutex
	cur      *bloom.BloomFilter // nil until a load completes
	count    uint               // handles added to cur that it did not hold
	capacity uint               // what cur was sized for
	stale    bool               // the feed lost changes since cur was loaded
	next     *bloom.BloomFilter // being loaded: handles heard meanwhile go here too
	epoch    uint64             // bumped by every loss of the feed: a load across one is dropped
	failedAt time.Time
}

func newHandleFilter(st apikeys.KeyStore, log *slog.Logger, stats *VerifierStats) *handleFilter {
	return &handleFilter{store: st, log: log, stats: stats}
}

// absent reports whether no key surely carries handle; false when the filter cannot tell
// (not loaded, or stale). The caller checks that the feed vouches for the cache.
func (f *handleFilter) absent(handle string) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.cur != nil && !f.stale && !f.cur.TestString(handle)
}

// add records a handle heard from the feed.
func (f *handleFilter) add(handle string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cur != nil && !f.cur.TestOrAddString(handle) {
		f.count++
	}
	if f.next != nil {
		f.next.AddString(handle)
	}
}

// lost marks the filter stale: creates may have gone unheard.
func (f *handleFilter) lost() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stale = true
	f.epoch++
}

// live starts a load when the filter needs one (none yet, stale, or full) and none runs. It
// does not block: the feed calls it.
func (f *handleFilter) live(ctx context.Context) {
	f.mu.Lock()
	defer f.mu.Unlock()
	full := f.cur != nil && f.count > 2*f.capacity
	if f.next != nil || (f.cur != nil && !f.stale && !full) || time.Since(f.failedAt) < filterRetry {
		return
	}
	capacity := max(filterMinCapacity, 2*f.count)
	f.next = bloom.NewWithEstimates(capacity, filterFalsePositive)
	go f.load(ctx, f.next, capacity, f.epoch)
}

// load fills next with every handle of the store and makes it the filter, unless the feed
// lost changes meanwhile.
func (f *handleFilter) load(ctx context.Context, next *bloom.BloomFilter, capacity uint, epoch uint64) {
	start := time.Now()
	var n uint
	after := ""
	for {
		hs, err := f.store.ListHandles(ctx, after, filterPage)
		if err != nil {
			f.mu.Lock()
			f.next, f.failedAt = nil, time.Now()
			f.mu.Unlock()
			if ctx.Err() == nil {
				f.log.Warn("handle filter: could not read the handles; unknown handles are read from the database until it can", "err", err)
			}
			return
		}
		if len(hs) == 0 {
			break
		}
		f.mu.Lock()
		for _, h := range hs {
			next.AddString(h)
		}
		f.mu.Unlock()
		n += uint(len(hs))
		after = hs[len(hs)-1]
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next = nil
	if f.epoch != epoch {
		return // changes may have been missed during the load; the next FeedLive loads again
	}
	f.cur, f.count, f.capacity, f.stale = next, n, capacity, false
	f.stats.FilterLoads.Add(1)
	f.log.Info("handle filter loaded", "handles", n, "bytes", next.Cap()/8, "took_ms", time.Since(start).Milliseconds())
}

// ready reports whether the filter answers.
func (f *handleFilter) ready() bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.cur != nil && !f.stale
}
