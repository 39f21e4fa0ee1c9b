package service

import (
	"sync/atomic"
	"time"

	apikeys "github.com/qs/apikeys"
	"github.com/qs/apikeys/keys"
)

// Via says where a token was presented for verification.
type Via string

// The places a token is verified.
const (
	ViaVerify Via = "verify" // POST /api-keys/verify: a backend asks about its caller's token
	ViaBearer Via = "bearer" // an API key presented as the bearer token of a call to this API
)

// viaCodes lists the verdicts a verification of each kind can reach, in the order they are
// checked, as the pipeline (pipeline.go) has them.
var viaCodes = map[Via][]apikeys.VerifyCode{ViaVerify: codesOf(ViaVerify), ViaBearer: codesOf(ViaBearer)}

// verdictCounts counts verdicts by where the token was presented, a counter for each pair
// viaCodes lists, made once: counting is one map read and an atomic add, no lock.
type verdictCounts map[verdictKey]*atomic.Int64

type verdictKey struct {
	via  Via
	code apikeys.VerifyCode
}

func newVerdictCounts() verdictCounts {
	c := verdictCounts{}
	for via, codes := range viaCodes {
		for _, code := range codes {
			c[verdictKey{via, code}] = new(atomic.Int64)
		}
	}
	return c
}

func (c verdictCounts) add(via Via, code apikeys.VerifyCode) {
	if n, ok := c[verdictKey{via, code}]; ok {
		n.Add(1)
	}
}

// VerdictCount is how many verifications of one kind reached one verdict.
type VerdictCount struct {
	Via  Via
	Code apikeys.VerifyCode
	N    int64
}

// Snapshot is what the service has done since it started and what it is doing now, for
// metrics. The counts only grow; a collector reads a snapshot at scrape time, as
// database/sql's DBStats is read, so that the use cases know nothing of any metrics system.
type Snapshot struct {
	// Verifications counts verdicts by where the token was presented, every verdict each
	// kind can reach, zeros included. A verification that failed (the database or argon2id
	// unavailable) reached none and is not counted.
	Verifications []VerdictCount
	// Cache is the verifier's key cache.
	Cache CacheStats
	// FeedConnected is true while the change feed vouches for the key cache: it is connected
	// and has said within the last trust window that every change has been heard.
	FeedConnected bool
	// Usage is the recorder of key usage.
	Usage UsageStats
	// Hasher is the argon2id hasher's state; nil when the hasher does not report it (one
	// that is not a *keys.Hasher).
	Hasher *keys.HasherStats
}

// CacheStats counts what the verifier's key cache did.
type CacheStats struct {
	Hits, Misses int64
	// Evictions are entries dropped to make room (not those dropped because they changed).
	Evictions int64
	// Invalidations are the key changes heard from the change feed; Flushes, the times the
	// whole cache was dropped because the feed had lost changes.
	Invalidations, Flushes int64
	// Limited counts wrong secrets refused an argon2id run by the per-key failure limit.
	Limited int64
	// FilterAbsent counts handles the handle filter answered NOT_FOUND without a read;
	// FilterLoads, its loads from the store; FilterReady is whether it answers now.
	FilterAbsent, FilterLoads int64
	FilterReady               bool
}

// UsageStats counts the writes of recorded key usage.
type UsageStats struct {
	// Flushes are the batches written; Rows, the keys' uses they held; Failures, the
	// batches that failed (and were kept for the next interval).
	Flushes, Rows, Failures int64
}

// hasherReporter is what a Hasher offers metrics; *keys.Hasher implements it.
type hasherReporter interface {
	Stats() keys.HasherStats
	OnWait(fn func(time.Duration))
}

// Snapshot returns the service's counts and state now.
func (s *Service) Snapshot() Snapshot {
	var out Snapshot
	for _, via := range []Via{ViaVerify, ViaBearer} {
		for _, code := range viaCodes[via] {
			out.Verifications = append(out.Verifications, VerdictCount{Via: via, Code: code, N: s.verdicts[verdictKey{via, code}].Load()})
		}
	}
	st := s.verifier.stats
	out.Cache = CacheStats{Hits: st.Hits.Load(), Misses: st.Misses.Load(), Evictions: st.Evictions.Load(),
		Invalidations: st.Invalidations.Load(), Flushes: st.Flushes.Load(), Limited: st.Limited.Load(),
		FilterAbsent: st.FilterAbsent.Load(), FilterLoads: st.FilterLoads.Load(), FilterReady: s.verifier.handles.ready()}
	out.FeedConnected = s.verifier.connected()
	out.Usage = UsageStats{Flushes: s.usage.flushes.Load(), Rows: s.usage.rows.Load(), Failures: s.usage.failures.Load()}
	if h, ok := s.hasher.(hasherReporter); ok {
		hs := h.Stats()
		out.Hasher = &hs
	}
	return out
}

// OnHashWait makes fn hear how long each argon2id computation waited for a slot of the
// hasher (keys.Hasher.OnWait), replacing any earlier fn. It reports false when the hasher
// cannot tell.
func (s *Service) OnHashWait(fn func(time.Duration)) bool {
	h, ok := s.hasher.(hasherReporter)
	if ok {
		h.OnWait(fn)
	}
	return ok
}
