package service

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"hash"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"

	apikeys "github.com/qs/apikeys"
	"github.com/qs/apikeys/keys"
)

// The verifier answers "whose key is this?" for POST /api-keys/verify and for bearer
// authentication alike, at memory speed on a hit and never with a stale VALID:
//
//	parse token (checksum; no I/O)
//	→ key row by handle: the cache when the change feed vouches for it; NOT_FOUND from the
//	  handle filter (handles.go) when it vouches that no key carries the handle; else one indexed
//	  read (one at a time per handle), put in the cache only if no change raced it
//	→ proof memo: HMAC of the secret equal to the one proven against this very PHC string?
//	  yes: right secret, no: wrong secret (a handle has one secret); no argon2id either way
//	→ else argon2id (bounded by the hasher; failures rate-limited per handle), then memo
//	→ the caller applies status and rules to the row at this instant.
//
// Invariants: no secret is kept, only an HMAC under a per-process random key; a cached row is
// used only while the feed has proven, within trustWindow, that every change committed
// before then has reached this process; a load that overlaps a change is not cached.

// Cache sizes and windows. A row costs a few hundred bytes, a proof about 100.
const (
	// defaultCacheEntries keeps the cache's worst case (every row with 4 KiB of metadata)
	// near 250 MiB; typical rows are a tenth of that.
	defaultCacheEntries = 50_000
	negativeEntries     = 20_000
	memoEntries         = 200_000
	limiterEntries      = 20_000
	// freshness is the safety net: a cached row is read again after this long even when
	// the feed reported no change.
	freshness = 30 * time.Second
	// trustWindow is how long a FeedLive vouches for the cache. A change committed after
	// FeedLive.At can go unseen at most this long, so no replica answers VALID for a key
	// revoked more than a second ago.
	trustWindow = 900 * time.Millisecond
	// loadTimeout bounds a shared read of a key row.
	loadTimeout = 5 * time.Second
	// failureRate and failureBurst bound argon2id runs for wrong secrets per handle.
	failureRate  = rate.Limit(2)
	failureBurst = 5
)

type cachedRow struct {
	key    apikeys.Key
	found  bool
	loaded time.Time
}

type proof struct {
	mac [sha256.Size]byte
	phc string
}

// VerifierStats counts what the verifier did, for tests and metrics.
type VerifierStats struct {
	Hits, Misses, Loads, Argon2, MemoHits, MemoMismatches, Limited, Rehashed, Invalidations, Flushes atomic.Int64
	// Evictions counts cache entries (rows and absent handles) dropped to make room.
	Evictions atomic.Int64
	// FilterAbsent counts handles answered NOT_FOUND by the handle filter, without a read;
	// FilterLoads, the times the filter was loaded from the store.
	FilterAbsent, FilterLoads atomic.Int64
}

type verifier struct {
	store  apikeys.KeyStore
	hasher Hasher
	log    *slog.Logger
	macKey [32]byte
	stats  *VerifierStats
	// handles is the filter of every handle in the store; life is the watch's context, for
	// its loads.
	handles *handleFilter
	life    context.Context

	// mu orders the writers of gen, trustedTo and lost, and cache writes against changes;
	// readers of gen and trustedTo (every verification) take no lock.
	mu        sync.Mutex
	gen       atomic.Uint64 // bumped by every change and flush
	trustedTo atomic.Int64  // the cache may be used before this instant (Unix ns; 0: never)
	lost      bool          // the feed lost changes since the last FeedLive
	rows      *lru.Cache[string, cachedRow]
	absent    *lru.Cache[string, time.Time] // handles no key carries, and when that was read

	memo    *lru.Cache[string, proof]
	limits  *lru.Cache[string, *rate.Limiter]
	limitMu sync.Mutex
	loads   singleflight.Group
	macs    sync.Pool // of hash.Hash: HMAC-SHA256 under macKey
}

func newVerifier(st apikeys.KeyStore, h Hasher, log *slog.Logger, entries int) *verifier {
	if entries <= 0 {
		entries = defaultCacheEntries
	}
	v := &verifier{store: st, hasher: h, log: log, stats: &VerifierStats{}, life: context.Background()}
	v.handles = newHandleFilter(st, log, v.stats)
	if _, err := rand.Read(v.macKey[:]); err != nil {
		panic("crypto/rand failed: " + err.Error()) // Go's crypto/rand does not fail on Linux
	}
	v.macs.New = func() any { return hmac.New(sha256.New, v.macKey[:]) }
	v.rows, _ = lru.New[string, cachedRow](entries)
	v.absent, _ = lru.New[string, time.Time](negativeEntries)
	v.memo, _ = lru.New[string, proof](memoEntries)
	v.limits, _ = lru.New[string, *rate.Limiter](limiterEntries)
	return v
}

// watch keeps the cache in step with feed until ctx ends.
func (v *verifier) watch(ctx context.Context, feed apikeys.ChangeFeed) {
	v.mu.Lock()
	v.life = ctx
	v.mu.Unlock()
	for ctx.Err() == nil {
		if err := feed.Watch(ctx, v.onChange); err != nil && ctx.Err() == nil {
			v.log.Warn("change feed stopped; the key cache is not trusted until it is back", "err", err)
			v.onChange(apikeys.ChangeEvent{Kind: apikeys.FeedLost})
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

// onChange applies one event of the feed.
func (v *verifier) onChange(ev apikeys.ChangeEvent) {
	v.mu.Lock()
	defer v.mu.Unlock()
	switch ev.Kind {
	case apikeys.KeyChanged:
		v.gen.Add(1)
		v.rows.Remove(ev.Handle)
		v.absent.Remove(ev.Handle)
		v.handles.add(ev.Handle)
		v.stats.Invalidations.Add(1)
	case apikeys.FeedLost:
		v.lost = true
		v.trustedTo.Store(0)
		v.flushLocked()
		v.handles.lost()
	case apikeys.FeedLive:
		if v.lost {
			// Changes may have been missed while the feed was down: nothing cached
			// before now is trusted.
			v.flushLocked()
			v.lost = false
		}
		if until := ev.At.Add(trustWindow).UnixNano(); until > v.trustedTo.Load() {
			v.trustedTo.Store(until)
		}
		v.handles.live(v.life)
	}
}

func (v *verifier) flushLocked() {
	v.gen.Add(1)
	v.rows.Purge()
	v.absent.Purge()
	v.stats.Flushes.Add(1)
}

// connected reports whether the feed vouches for the cache now.
func (v *verifier) connected() bool {
	trusted, _ := v.trusted()
	return trusted
}

// trusted reports whether cached rows may be used now, and the generation to load under.
func (v *verifier) trusted() (bool, uint64) {
	gen := v.gen.Load() // first: a generation older than the trust read is only more careful
	return time.Now().UnixNano() < v.trustedTo.Load(), gen
}

// row returns the key carrying handle (found false when none does): from the cache when the
// feed vouches for it, otherwise from the store.
func (v *verifier) row(ctx context.Context, handle string) (apikeys.Key, bool, error) {
	trusted, gen := v.trusted()
	if trusted {
		if r, ok := v.rows.Get(handle); ok && time.Since(r.loaded) < freshness {
			v.stats.Hits.Add(1)
			return r.key, true, nil
		}
		if v.handles.absent(handle) {
			v.stats.Hits.Add(1)
			v.stats.FilterAbsent.Add(1)
			return apikeys.Key{}, false, nil
		}
		if at, ok := v.absent.Get(handle); ok && time.Since(at) < freshness {
			v.stats.Hits.Add(1)
			return apikeys.Key{}, false, nil
		}
	}
	v.stats.Misses.Add(1)
	// One load per handle and generation: a request that arrives after a change never
	// shares a load that started before it.
	res, err, _ := v.loads.Do(handle+"@"+strconv.FormatUint(gen, 10), func() (any, error) {
		v.stats.Loads.Add(1)
		loaded := time.Now()
		// The load is shared: one caller going away must not fail the others.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), loadTimeout)
		defer cancel()
		k, err := v.store.GetKeyByHandle(lctx, handle)
		found := err == nil
		if err != nil && !apikeys.IsCode(err, apikeys.ENOTFOUND) {
			return nil, err
		}
		v.mu.Lock()
		// Cache only what no change raced: a change bumps gen, and its row is stale.
		if v.gen.Load() == gen && time.Now().UnixNano() < v.trustedTo.Load() {
			var evicted bool
			if found {
				evicted = v.rows.Add(handle, cachedRow{key: k, found: true, loaded: loaded})
			} else {
				evicted = v.absent.Add(handle, loaded)
			}
			if evicted {
				v.stats.Evictions.Add(1)
			}
		}
		v.mu.Unlock()
		return cachedRow{key: k, found: found}, nil
	})
	if err != nil {
		return apikeys.Key{}, false, err
	}
	r := res.(cachedRow)
	return r.key, r.found, nil
}

// check finds the key a presented token belongs to. code is MALFORMED or NOT_FOUND when
// there is none (a wrong secret is NOT_FOUND, whatever the key's state), "" when the secret
// is the key's. The time a wrong secret takes does not depend on the key's status.
func (v *verifier) check(ctx context.Context, token string) (apikeys.Key, apikeys.VerifyCode, error) {
	tok, err := keys.Parse(token)
	if err != nil {
		return apikeys.Key{}, apikeys.CodeMalformed, nil
	}
	handle := tok.Handle()
	k, found, err := v.row(ctx, handle)
	if err != nil {
		return apikeys.Key{}, "", err
	}
	if !found {
		return apikeys.Key{}, apikeys.CodeNotFound, nil
	}
	mac := v.mac(token)
	if p, ok := v.memo.Get(handle); ok && p.phc == k.Hash {
		if hmac.Equal(mac[:], p.mac[:]) {
			v.stats.MemoHits.Add(1)
			return k, "", nil
		}
		v.stats.MemoMismatches.Add(1)
		return apikeys.Key{}, apikeys.CodeNotFound, nil
	}
	// The slow path. Wrong secrets for one handle buy at most failureRate argon2id runs a
	// second; the reservation is given back when the secret was right.
	lim := v.limiter(handle)
	res := lim.Reserve()
	if res.Delay() > 0 {
		res.Cancel()
		v.stats.Limited.Add(1)
		return apikeys.Key{}, apikeys.CodeNotFound, nil
	}
	v.stats.Argon2.Add(1)
	ok, err := v.hasher.Verify(ctx, token, k.Hash)
	if err != nil {
		res.Cancel()
		return apikeys.Key{}, "", hashError(err)
	}
	if !ok {
		return apikeys.Key{}, apikeys.CodeNotFound, nil
	}
	res.Cancel()
	v.memo.Add(handle, proof{mac: mac, phc: k.Hash})
	if v.hasher.NeedsRehash(k.Hash) {
		v.rehash(ctx, token, handle, mac, k)
	}
	return k, "", nil
}

// mac is the HMAC of token under the process's key. The HMAC state is pooled: building one
// costs five allocations, on every verification.
func (v *verifier) mac(token string) (out [sha256.Size]byte) {
	m := v.macs.Get().(hash.Hash)
	m.Reset()
	io.WriteString(m, token)
	m.Sum(out[:0])
	v.macs.Put(m)
	return out
}

func (v *verifier) limiter(handle string) *rate.Limiter {
	v.limitMu.Lock()
	defer v.limitMu.Unlock()
	lim, ok := v.limits.Get(handle)
	if !ok {
		lim = rate.NewLimiter(failureRate, failureBurst)
		v.limits.Add(handle, lim)
	}
	return lim
}

// rehash stores a hash of the secret under the current parameters, once it has been proven
// against weaker ones. Failure only means it is tried again next time.
func (v *verifier) rehash(ctx context.Context, token, handle string, mac [sha256.Size]byte, k apikeys.Key) {
	phc, err := v.hasher.Hash(ctx, token)
	if err != nil {
		return
	}
	changed, err := v.store.SetKeyHash(ctx, k.ID, k.Hash, phc)
	if err != nil {
		v.log.Warn("rehash a key", "key", k.ID, "err", err)
		return
	}
	if changed {
		v.stats.Rehashed.Add(1)
		v.memo.Add(handle, proof{mac: mac, phc: phc})
	}
}
