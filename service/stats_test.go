package service_test

import (
	"context"
	"errors"
	"testing"
	"time"

	apikeys "github.com/qs/apikeys"
	"github.com/qs/apikeys/keys"
	"github.com/qs/apikeys/service"
)

// TestSnapshotCounts checks what metrics read of the service: every verdict counted once,
// by where the token was presented, and the cache, feed, usage and hasher as they are.
func TestSnapshotCounts(t *testing.T) {
	e := newVerifierEnv(t, fastHash)
	if e.svc.Snapshot().FeedConnected {
		t.Error("FeedConnected before the feed said it was live")
	}
	e.feed.live(t)
	if !e.svc.Snapshot().FeedConnected {
		t.Error("FeedConnected false after FeedLive")
	}
	e.filterReady(t)
	readOnly := func(k *apikeys.Key) { k.Scopes = []apikeys.Scope{apikeys.ScopeRead} }
	good, _ := e.key(t, fastHash, readOnly)
	revoked, _ := e.key(t, fastHash, readOnly, func(k *apikeys.Key) { at := t0; k.RevokedAt = &at })
	expired, _ := e.key(t, fastHash, readOnly, func(k *apikeys.Key) { at := t0; k.ExpiresAt = &at })
	scopeless, _ := e.key(t, fastHash)
	unknown, err := keys.Generate(keys.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}

	verify := map[string]apikeys.VerifyCode{
		good: apikeys.CodeValid, revoked: apikeys.CodeRevoked, expired: apikeys.CodeExpired,
		"not a token": apikeys.CodeMalformed, unknown.Secret(): apikeys.CodeNotFound,
	}
	for token, want := range verify {
		if got := e.verify(t, token); got != want {
			t.Errorf("verify: %s, want %s", got, want)
		}
	}
	if got := e.verify(t, good); got != apikeys.CodeValid { // a hit this time
		t.Errorf("verify again: %s", got)
	}
	bearer := map[string]apikeys.VerifyCode{
		good: apikeys.CodeValid, revoked: apikeys.CodeRevoked, expired: apikeys.CodeExpired,
		scopeless: apikeys.CodeInsufficientScopes, "not a token": apikeys.CodeMalformed, unknown.Secret(): apikeys.CodeNotFound,
	}
	for token := range bearer {
		_, err := e.svc.Authenticate(ctx, token, "192.0.2.1", service.OpListKeys)
		if (err == nil) != (token == good) {
			t.Errorf("authenticate: %v", err)
		}
	}
	if _, err := e.svc.Authenticate(ctx, adminToken, "", service.OpListKeys); err != nil {
		t.Fatal(err) // the admin token is no verification of a key: not counted
	}

	snap := e.svc.Snapshot()
	want := map[service.Via]map[apikeys.VerifyCode]int64{service.ViaVerify: {}, service.ViaBearer: {}}
	for _, code := range verify {
		want[service.ViaVerify][code]++
	}
	want[service.ViaVerify][apikeys.CodeValid]++
	for _, code := range bearer {
		want[service.ViaBearer][code]++
	}
	seen := map[service.Via]int{}
	for _, c := range snap.Verifications {
		seen[c.Via]++
		if c.N != want[c.Via][c.Code] {
			t.Errorf("verifications via %s, %s = %d, want %d", c.Via, c.Code, c.N, want[c.Via][c.Code])
		}
	}
	if seen[service.ViaVerify] != 11 || seen[service.ViaBearer] != 8 {
		t.Errorf("verdicts listed: %v, want 11 for verify and 8 for bearer (every code of the pipeline)", seen)
	}

	// Four keys were read once each, and their creation heard; the unknown handle was
	// answered by the handle filter (twice), every other lookup by the cache.
	lookups := int64(len(verify) - 1 + 1 + len(bearer) - 1)
	if got, want := snap.Cache, (service.CacheStats{Hits: lookups - 4, Misses: 4, Invalidations: 4,
		FilterAbsent: 2, FilterLoads: 1, FilterReady: true}); got != want {
		t.Errorf("cache = %+v, want %+v", got, want)
	}
	e.feed.send(t, apikeys.ChangeEvent{Kind: apikeys.KeyChanged, Handle: "h"})
	e.feed.send(t, apikeys.ChangeEvent{Kind: apikeys.FeedLost})
	snap = e.svc.Snapshot()
	if snap.Cache.Invalidations != 5 || snap.Cache.Flushes != 1 || snap.FeedConnected || snap.Cache.FilterReady {
		t.Errorf("after a change and a lost feed: cache %+v, connected %v", snap.Cache, snap.FeedConnected)
	}

	if err := e.svc.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// The good key was used twice by verify and once as a bearer: one row.
	if got, want := e.svc.Snapshot().Usage, (service.UsageStats{Flushes: 1, Rows: 1}); got != want {
		t.Errorf("usage = %+v, want %+v", got, want)
	}
	if err := e.svc.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.svc.Snapshot().Usage.Flushes; got != 1 {
		t.Errorf("an empty flush was counted: %d batches", got)
	}
	if h := e.svc.Snapshot().Hasher; h == nil || h.Slots < 1 || h.Running != 0 {
		t.Errorf("hasher = %+v", h)
	}
}

// failingUsage is a store whose usage writes fail.
type failingUsage struct{ *fakeStore }

func (failingUsage) RecordUsage(context.Context, []apikeys.Usage) error { return errors.New("down") }

// TestSnapshotCountsFailedFlushesAndEvictions: a failed usage write is counted as such
// (and its rows are not), and a full cache counts what it drops to make room.
func TestSnapshotCountsFailedFlushesAndEvictions(t *testing.T) {
	st := failingUsage{&fakeStore{rows: map[string]apikeys.Key{}}}
	feed := &fakeFeed{}
	svc := service.New(service.Config{Store: st, AdminToken: adminToken, Feed: feed, CacheEntries: 2,
		Hasher: keys.NewHasher(fastHash, 0, 0), Now: func() time.Time { return t0 }, UsageFlushInterval: time.Hour})
	t.Cleanup(func() { svc.Close(ctx) })
	e := &verifierEnv{svc: svc, store: st.fakeStore, feed: feed}
	st.notify = func(h string) { feed.send(t, apikeys.ChangeEvent{Kind: apikeys.KeyChanged, Handle: h}) }
	var err error
	if e.admin, err = svc.Authenticate(ctx, adminToken, "", service.OpVerifyKey); err != nil {
		t.Fatal(err)
	}
	feed.live(t)
	for range 4 {
		token, _ := e.key(t, fastHash)
		if got := e.verify(t, token); got != apikeys.CodeValid {
			t.Fatalf("verify: %s", got)
		}
	}
	if got := svc.Snapshot().Cache.Evictions; got != 2 {
		t.Errorf("evictions = %d, want 2 (four keys in a cache of two)", got)
	}
	if err := svc.Flush(ctx); err == nil {
		t.Fatal("the flush did not fail")
	}
	if got, want := svc.Snapshot().Usage, (service.UsageStats{Failures: 1}); got != want {
		t.Errorf("usage = %+v, want %+v", got, want)
	}
	hits := make(chan time.Duration, 10)
	if !svc.OnHashWait(func(d time.Duration) { hits <- d }) {
		t.Fatal("OnHashWait: a *keys.Hasher cannot report its waits")
	}
	token, _ := e.key(t, fastHash)
	e.verify(t, token)
	if len(hits) != 1 {
		t.Errorf("OnHashWait heard %d waits for one argon2id run", len(hits))
	}
}
