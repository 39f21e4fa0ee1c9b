package service_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	apikeys "github.com/qs/apikeys"
	"github.com/qs/apikeys/keys"
	"github.com/qs/apikeys/service"
)

// fakeStore keeps key rows by handle and counts reads; block, when set, holds a read until
// the test releases it, to race a load against a change.
type fakeStore struct {
	apikeys.KeyStore // nil: any method the verifier does not use panics

	mu     sync.Mutex
	rows   map[string]apikeys.Key
	reads  int
	block  chan struct{} // closed by the test to let a held read return
	inRead chan struct{} // receives when a read is held
	hashes map[string]string
	// notify hears every put, as a real store's change feed does.
	notify func(handle string)
	lists  int // ListHandles calls
	// listErr fails ListHandles; listHeld, when set, holds each call until it receives.
	listErr  error
	listHeld chan struct{}
}

// ListHandles pages through the handles in byte order, as the store does in its own.
func (f *fakeStore) ListHandles(_ context.Context, after string, limit int) ([]string, error) {
	f.mu.Lock()
	held := f.listHeld
	f.mu.Unlock()
	if held != nil {
		<-held
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	if f.listErr != nil {
		return nil, f.listErr
	}
	hs := []string{}
	for h := range f.rows {
		if h > after {
			hs = append(hs, h)
		}
	}
	slices.Sort(hs)
	return hs[:min(limit, len(hs))], nil
}

func (f *fakeStore) GetKeyByHandle(_ context.Context, handle string) (apikeys.Key, error) {
	f.mu.Lock()
	f.reads++
	k, ok := f.rows[handle]
	block, in := f.block, f.inRead
	f.mu.Unlock()
	if block != nil {
		in <- struct{}{}
		<-block
	}
	if !ok {
		return apikeys.Key{}, apikeys.Errorf(apikeys.ENOTFOUND, "no key")
	}
	return k, nil
}

func (f *fakeStore) SetKeyHash(_ context.Context, id, oldHash, newHash string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for h, k := range f.rows {
		if k.ID == id && k.Hash == oldHash {
			k.Hash = newHash
			f.rows[h] = k
			return true, nil
		}
	}
	return false, nil
}

func (f *fakeStore) RecordUsage(context.Context, []apikeys.Usage) error { return nil }

func (f *fakeStore) readCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads
}

func (f *fakeStore) put(k apikeys.Key) {
	f.mu.Lock()
	f.rows[k.Handle] = k
	notify := f.notify
	f.mu.Unlock()
	if notify != nil {
		notify(k.Handle)
	}
}

// fakeFeed is a change feed the test drives by hand.
type fakeFeed struct {
	mu sync.Mutex
	fn func(apikeys.ChangeEvent)
}

func (f *fakeFeed) Watch(ctx context.Context, fn func(apikeys.ChangeEvent)) error {
	f.mu.Lock()
	f.fn = fn
	f.mu.Unlock()
	<-ctx.Done()
	return nil
}

func (f *fakeFeed) send(t *testing.T, ev apikeys.ChangeEvent) {
	t.Helper()
	for i := 0; i < 200; i++ {
		f.mu.Lock()
		fn := f.fn
		f.mu.Unlock()
		if fn != nil {
			fn(ev)
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("the service never watched the feed")
}

func (f *fakeFeed) live(t *testing.T) {
	f.send(t, apikeys.ChangeEvent{Kind: apikeys.FeedLive, At: time.Now()})
}

type verifierEnv struct {
	svc   *service.Service
	store *fakeStore
	feed  *fakeFeed
	admin *apikeys.Principal
	clock *time.Time
}

func newVerifierEnv(t *testing.T, hash keys.Params) *verifierEnv {
	e := &verifierEnv{store: &fakeStore{rows: map[string]apikeys.Key{}}, feed: &fakeFeed{}}
	now := t0
	e.clock = &now
	e.svc = service.New(service.Config{Store: e.store, AdminToken: adminToken, Feed: e.feed,
		Hasher: keys.NewHasher(hash, 0, 0), Now: func() time.Time { return *e.clock }, UsageFlushInterval: time.Hour})
	t.Cleanup(func() { e.svc.Close(ctx) })
	e.store.notify = func(h string) { e.feed.send(t, apikeys.ChangeEvent{Kind: apikeys.KeyChanged, Handle: h}) }
	var err error
	if e.admin, err = e.svc.Authenticate(ctx, adminToken, "", service.OpVerifyKey); err != nil {
		t.Fatal(err)
	}
	return e
}

// key stores a key hashed under p and returns its token.
func (e *verifierEnv) key(t *testing.T, p keys.Params, mut ...func(*apikeys.Key)) (string, apikeys.Key) {
	t.Helper()
	tok, err := keys.Generate(keys.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	phc, err := keys.Hash(tok.Secret(), p)
	if err != nil {
		t.Fatal(err)
	}
	k := apikeys.Key{ID: apikeys.NewKeyID(), SubjectID: apikeys.NewSubjectID(), Handle: tok.Handle(), Hash: phc,
		Name: "k", Scopes: []apikeys.Scope{}}
	for _, m := range mut {
		m(&k)
	}
	e.store.put(k)
	return tok.Secret(), k
}

// filterReady waits until the handle filter answers.
func (e *verifierEnv) filterReady(t *testing.T) {
	t.Helper()
	for i := 0; !e.svc.Snapshot().Cache.FilterReady; i++ {
		if i > 2000 {
			t.Fatal("the handle filter never became ready")
		}
		time.Sleep(time.Millisecond)
	}
}

func (e *verifierEnv) verify(t *testing.T, token string) apikeys.VerifyCode {
	t.Helper()
	v, err := e.svc.Verify(ctx, e.admin, service.VerifyRequest{Key: token})
	if err != nil {
		t.Fatal(err)
	}
	return v.Code
}

// TestVerifierHitMissMemo: the first verification reads and hashes; the next ones do
// neither; a wrong secret for a remembered handle is NOT_FOUND without argon2id.
func TestVerifierHitMissMemo(t *testing.T) {
	e := newVerifierEnv(t, fastHash)
	e.feed.live(t)
	token, _ := e.key(t, fastHash)
	st := e.svc.Stats()
	if got := e.verify(t, token); got != apikeys.CodeValid {
		t.Fatalf("first verification: %s", got)
	}
	if e.store.readCount() != 1 || st.Argon2.Load() != 1 {
		t.Fatalf("first verification: %d reads, %d argon2id", e.store.readCount(), st.Argon2.Load())
	}
	for i := 0; i < 10; i++ {
		if got := e.verify(t, token); got != apikeys.CodeValid {
			t.Fatalf("hit %d: %s", i, got)
		}
	}
	if e.store.readCount() != 1 || st.Argon2.Load() != 1 || st.MemoHits.Load() != 10 {
		t.Errorf("hits: %d reads, %d argon2id, %d memo hits; want 1, 1, 10", e.store.readCount(), st.Argon2.Load(), st.MemoHits.Load())
	}
	if got := e.verify(t, forge(t, token)); got != apikeys.CodeNotFound {
		t.Errorf("wrong secret of a remembered handle: %s", got)
	}
	if st.Argon2.Load() != 1 || st.MemoMismatches.Load() != 1 {
		t.Errorf("wrong secret ran argon2id: %d, mismatches %d", st.Argon2.Load(), st.MemoMismatches.Load())
	}
	// Bearer authentication goes through the same verifier: no argon2id on a hit.
	if _, err := e.svc.Authenticate(ctx, token, "", service.OpVerifyKey); !apikeys.IsCode(err, apikeys.EFORBIDDEN) {
		t.Errorf("bearer without the scope: %v", err)
	}
	if st.Argon2.Load() != 1 || e.store.readCount() != 1 {
		t.Errorf("bearer authentication: %d argon2id, %d reads", st.Argon2.Load(), e.store.readCount())
	}
}

// TestVerifierNegativeEntries: without the handle filter (its loads fail here; a handle it
// wrongly holds is the same case), an unknown handle is read once, then answered from
// memory, until a key with that handle is created.
func TestVerifierNegativeEntries(t *testing.T) {
	e := newVerifierEnv(t, fastHash)
	e.store.listErr = errors.New("no handles today")
	e.feed.live(t)
	tok, _ := keys.Generate(keys.DefaultPrefix)
	for i := 0; i < 5; i++ {
		if got := e.verify(t, tok.Secret()); got != apikeys.CodeNotFound {
			t.Fatalf("unknown handle: %s", got)
		}
	}
	if n := e.store.readCount(); n != 1 {
		t.Errorf("unknown handle read %d times, want 1", n)
	}
	phc, _ := keys.Hash(tok.Secret(), fastHash)
	e.store.put(apikeys.Key{ID: apikeys.NewKeyID(), Handle: tok.Handle(), Hash: phc})
	e.feed.send(t, apikeys.ChangeEvent{Kind: apikeys.KeyChanged, Handle: tok.Handle()})
	if got := e.verify(t, tok.Secret()); got != apikeys.CodeValid {
		t.Errorf("after its creation: %s", got)
	}
}

// TestVerifierExpiryBetweenHits: status is computed at each request from the cached row.
func TestVerifierExpiryBetweenHits(t *testing.T) {
	e := newVerifierEnv(t, fastHash)
	e.feed.live(t)
	at := t0.Add(time.Minute)
	token, _ := e.key(t, fastHash, func(k *apikeys.Key) { k.ExpiresAt = &at })
	if got := e.verify(t, token); got != apikeys.CodeValid {
		t.Fatal(got)
	}
	*e.clock = at
	if got := e.verify(t, token); got != apikeys.CodeExpired {
		t.Errorf("at its expiry: %s", got)
	}
	if n := e.store.readCount(); n != 1 {
		t.Errorf("%d reads, want 1 (the second was a hit)", n)
	}
}

// TestVerifierLoadRacingAChange: a load that read the row before a change and returns after
// it must not put the old row in the cache.
func TestVerifierLoadRacingAChange(t *testing.T) {
	e := newVerifierEnv(t, fastHash)
	e.feed.live(t)
	token, k := e.key(t, fastHash)
	e.verify(t, token) // memo and cache
	e.feed.send(t, apikeys.ChangeEvent{Kind: apikeys.KeyChanged, Handle: k.Handle})

	e.store.mu.Lock()
	e.store.block, e.store.inRead = make(chan struct{}), make(chan struct{})
	e.store.mu.Unlock()
	done := make(chan apikeys.VerifyCode)
	go func() { done <- e.verify(t, token) }()
	<-e.store.inRead // the load has read the active row and is held
	now := t0
	k.RevokedAt = &now
	e.store.put(k)
	e.feed.send(t, apikeys.ChangeEvent{Kind: apikeys.KeyChanged, Handle: k.Handle})
	e.store.mu.Lock()
	close(e.store.block)
	e.store.block = nil
	e.store.mu.Unlock()
	if got := <-done; got != apikeys.CodeValid {
		t.Fatalf("the racing verification: %s (it read the row before the revocation)", got)
	}
	if got := e.verify(t, token); got != apikeys.CodeRevoked {
		t.Errorf("after the revocation: %s; the racing load put the old row back", got)
	}
}

// TestVerifierDistrustsAQuietFeed: without a recent FeedLive, or after FeedLost, every
// verification reads its row; after the feed is back the cache serves again.
func TestVerifierDistrustsAQuietFeed(t *testing.T) {
	e := newVerifierEnv(t, fastHash)
	token, _ := e.key(t, fastHash)
	for i := 0; i < 3; i++ {
		e.verify(t, token)
	}
	if n := e.store.readCount(); n != 3 {
		t.Errorf("no FeedLive yet: %d reads, want 3", n)
	}
	e.feed.live(t)
	e.verify(t, token)
	e.verify(t, token)
	if n := e.store.readCount(); n != 4 {
		t.Errorf("live feed: %d reads, want 4", n)
	}
	e.feed.send(t, apikeys.ChangeEvent{Kind: apikeys.FeedLost})
	e.verify(t, token)
	e.verify(t, token)
	if n := e.store.readCount(); n != 6 {
		t.Errorf("lost feed: %d reads, want 6", n)
	}
	if a := e.svc.Stats().Argon2.Load(); a != 1 {
		t.Errorf("%d argon2id runs; the memo should spare all but the first", a)
	}
	e.feed.live(t)
	e.verify(t, token)
	e.verify(t, token)
	if n := e.store.readCount(); n != 7 {
		t.Errorf("feed back: %d reads, want 7", n)
	}
	// A heartbeat vouches for under a second.
	e.feed.send(t, apikeys.ChangeEvent{Kind: apikeys.FeedLive, At: time.Now().Add(-time.Second)})
	e.feed.send(t, apikeys.ChangeEvent{Kind: apikeys.FeedLost})
	e.feed.send(t, apikeys.ChangeEvent{Kind: apikeys.FeedLive, At: time.Now().Add(-time.Second)})
	e.verify(t, token)
	if n := e.store.readCount(); n != 8 {
		t.Errorf("stale heartbeat: %d reads, want 8", n)
	}
}

// TestVerifierLimitsWrongSecrets: a flood of wrong secrets for one handle costs a few
// argon2id runs, answers NOT_FOUND throughout, and does not touch other keys.
func TestVerifierLimitsWrongSecrets(t *testing.T) {
	e := newVerifierEnv(t, fastHash)
	e.feed.live(t)
	victim, _ := e.key(t, fastHash)
	other, _ := e.key(t, fastHash)
	wrong := forge(t, victim)
	for i := 0; i < 100; i++ {
		if got := e.verify(t, wrong); got != apikeys.CodeNotFound {
			t.Fatalf("wrong secret %d: %s", i, got)
		}
	}
	st := e.svc.Stats()
	if a := st.Argon2.Load(); a > 10 {
		t.Errorf("100 wrong secrets ran argon2id %d times", a)
	}
	if st.Limited.Load() < 90 {
		t.Errorf("only %d refused without hashing", st.Limited.Load())
	}
	if got := e.verify(t, other); got != apikeys.CodeValid {
		t.Errorf("another key during the flood: %s", got)
	}
}

// TestVerifierRehashesWeakHashes: a key hashed under weaker parameters is hashed again after
// a successful check, and keeps verifying.
func TestVerifierRehashesWeakHashes(t *testing.T) {
	strong := fastHash
	strong.Iterations = 2
	e := newVerifierEnv(t, strong)
	e.feed.live(t)
	token, k := e.key(t, fastHash)
	if got := e.verify(t, token); got != apikeys.CodeValid {
		t.Fatal(got)
	}
	e.store.mu.Lock()
	stored := e.store.rows[k.Handle].Hash
	e.store.mu.Unlock()
	if p, _ := keys.ParamsOf(stored); p.Iterations != 2 {
		t.Errorf("stored %s, want t=2", stored)
	}
	if e.svc.Stats().Rehashed.Load() != 1 {
		t.Errorf("rehashed %d", e.svc.Stats().Rehashed.Load())
	}
	e.feed.send(t, apikeys.ChangeEvent{Kind: apikeys.KeyChanged, Handle: k.Handle})
	if got := e.verify(t, token); got != apikeys.CodeValid {
		t.Errorf("after the rehash: %s", got)
	}
	if a := e.svc.Stats().Argon2.Load(); a != 1 {
		t.Errorf("%d argon2id checks; the memo knows the new hash", a)
	}
}

// TestWrongSecretCostsTheSameWhateverTheStatus: a wrong secret runs the same checks for an
// active, a revoked and an expired key, at both doors, so the time to answer tells nothing
// about the key's state to someone without its secret.
func TestWrongSecretCostsTheSameWhateverTheStatus(t *testing.T) {
	e := newVerifierEnv(t, fastHash)
	e.feed.live(t)
	past := t0.Add(-time.Hour)
	active, _ := e.key(t, fastHash)
	revoked, _ := e.key(t, fastHash, func(k *apikeys.Key) { k.RevokedAt = &past })
	expired, _ := e.key(t, fastHash, func(k *apikeys.Key) { k.ExpiresAt = &past })
	st := e.svc.Stats()
	cost := func(do func()) [2]int64 {
		a, m := st.Argon2.Load(), st.MemoMismatches.Load()
		do()
		return [2]int64{st.Argon2.Load() - a, st.MemoMismatches.Load() - m}
	}
	for round, want := range [][2]int64{{1, 0}, {0, 1}} {
		for name, token := range map[string]string{"active": active, "revoked": revoked, "expired": expired} {
			wrong := forge(t, token)
			if got := cost(func() { e.verify(t, wrong) }); got != want {
				t.Errorf("round %d, verify a wrong secret of the %s key: (argon2id, memo mismatches) = %v, want %v", round, name, got, want)
			}
			if got := cost(func() {
				if _, err := e.svc.Authenticate(ctx, wrong, "", service.OpVerifyKey); !apikeys.IsCode(err, apikeys.EUNAUTHENTICATED) {
					t.Errorf("bearer with a wrong secret of the %s key: %v", name, err)
				}
			}); got != want {
				t.Errorf("round %d, bearer with a wrong secret of the %s key: %v, want %v", round, name, got, want)
			}
			if round == 0 {
				e.verify(t, token) // the right secret: remembered from now on
			}
		}
	}
}

// TestVerifierHandleFilter: once loaded, the handle filter answers unknown handles NOT_FOUND
// without a read, hears created keys (which verify at once), and after a lost feed lets
// unknown handles be read until it is loaded again; a load across a loss is not used.
func TestVerifierHandleFilter(t *testing.T) {
	e := newVerifierEnv(t, fastHash)
	before, _ := e.key(t, fastHash) // in the store before the filter loads
	e.feed.live(t)
	e.filterReady(t)
	st := e.svc.Stats()
	unknown := func() string {
		tok, err := keys.Generate(keys.DefaultPrefix)
		if err != nil {
			t.Fatal(err)
		}
		return tok.Secret()
	}
	for i := range 50 {
		if got := e.verify(t, unknown()); got != apikeys.CodeNotFound {
			t.Fatalf("unknown handle %d: %s", i, got)
		}
	}
	if n := e.store.readCount(); n != 0 {
		t.Errorf("50 unknown handles with the filter loaded: %d reads, want 0", n)
	}
	if n := st.FilterAbsent.Load(); n != 50 {
		t.Errorf("FilterAbsent = %d, want 50", n)
	}
	after, _ := e.key(t, fastHash) // heard from the feed
	for name, token := range map[string]string{"a key loaded with the filter": before, "a key created after": after} {
		if got := e.verify(t, token); got != apikeys.CodeValid {
			t.Errorf("%s: %s", name, got)
		}
	}
	// The feed loses changes: creates may go unheard, so unknown handles are read.
	e.feed.send(t, apikeys.ChangeEvent{Kind: apikeys.FeedLost})
	reads := e.store.readCount()
	e.store.mu.Lock()
	e.store.listHeld = make(chan struct{})
	e.store.mu.Unlock()
	e.feed.live(t) // starts a load, held in its first page
	if got := e.verify(t, unknown()); got != apikeys.CodeNotFound {
		t.Errorf("unknown handle while the filter reloads: %s", got)
	}
	if n := e.store.readCount() - reads; n != 1 {
		t.Errorf("unknown handle after a lost feed: %d reads, want 1", n)
	}
	// A loss during that load: the load must not be used when it ends.
	e.feed.send(t, apikeys.ChangeEvent{Kind: apikeys.FeedLost})
	e.store.listHeld <- struct{}{} // the first page
	e.store.listHeld <- struct{}{} // the empty page that ends it
	time.Sleep(20 * time.Millisecond)
	if e.svc.Snapshot().Cache.FilterReady {
		t.Error("a load across a lost feed was used")
	}
	e.store.mu.Lock()
	held := e.store.listHeld
	e.store.listHeld = nil
	e.store.mu.Unlock()
	close(held)
	e.feed.live(t)
	e.filterReady(t)
	if n := st.FilterLoads.Load(); n != 2 {
		t.Errorf("FilterLoads = %d, want 2 (at start, after the feed came back)", n)
	}
	reads = e.store.readCount()
	e.verify(t, unknown())
	if n := e.store.readCount() - reads; n != 0 {
		t.Errorf("unknown handle with the filter reloaded: %d reads, want 0", n)
	}
}
