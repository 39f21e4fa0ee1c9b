package service_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	apikeys "github.com/qs/apikeys"
	"github.com/qs/apikeys/internal/keytest"
	"github.com/qs/apikeys/keys"
	"github.com/qs/apikeys/service"
)

// The verifier's benchmarks measure the verification path without HTTP or a database: the
// store is verifier_test.go's fakeStore (a map), the change feed its fakeFeed, kept live by a
// heartbeat so that the key cache is trusted as it is in production. Keys are hashed with the
// production argon2id parameters; every benchmark but the miss verifies its key once before
// the timer starts, so argon2id runs only there. A hit should allocate a handful of objects at
// most (`make bench` reports allocs/op; BENCHMARKS.md says which ones).

// benchVerifier is a service over a fake store whose feed says "live" every 100 ms.
type benchVerifier struct {
	svc   *service.Service
	store *fakeStore
	admin *apikeys.Principal
}

func newBenchVerifier(b *testing.B, live bool) *benchVerifier {
	b.Helper()
	st := &fakeStore{rows: map[string]apikeys.Key{}}
	feed := &fakeFeed{}
	svc := service.New(service.Config{Store: st, AdminToken: adminToken, Feed: feed,
		Hasher: keys.NewHasher(keys.DefaultParams(), 0, 0), UsageFlushInterval: time.Hour})
	hctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	b.Cleanup(func() {
		stop()
		<-done
		svc.Close(context.Background())
	})
	heartbeat := func() bool {
		feed.mu.Lock()
		fn := feed.fn
		feed.mu.Unlock()
		if fn != nil && live {
			fn(apikeys.ChangeEvent{Kind: apikeys.FeedLive, At: time.Now()})
		}
		return fn != nil
	}
	for i := 0; !heartbeat(); i++ {
		if i > 1000 {
			b.Fatal("the service never watched the feed")
		}
		time.Sleep(time.Millisecond)
	}
	go func() {
		defer close(done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-hctx.Done():
				return
			case <-t.C:
				heartbeat()
			}
		}
	}()
	// A key put in the store is heard from the feed, as a real store's writes are (the
	// handle filter learns of it).
	st.notify = func(h string) {
		feed.mu.Lock()
		fn := feed.fn
		feed.mu.Unlock()
		fn(apikeys.ChangeEvent{Kind: apikeys.KeyChanged, Handle: h})
	}
	admin, err := svc.Authenticate(ctx, adminToken, "", service.OpVerifyKey)
	if err != nil {
		b.Fatal(err)
	}
	return &benchVerifier{svc: svc, store: st, admin: admin}
}

// key stores a key with the production parameters and returns its token.
func (e *benchVerifier) key(b *testing.B, scopes ...apikeys.Scope) string {
	b.Helper()
	tok, err := keys.Generate(keys.DefaultPrefix)
	if err != nil {
		b.Fatal(err)
	}
	phc, err := keys.Hash(tok.Secret(), keys.DefaultParams())
	if err != nil {
		b.Fatal(err)
	}
	if scopes == nil {
		scopes = []apikeys.Scope{}
	}
	e.store.put(apikeys.Key{ID: apikeys.NewKeyID(), SubjectID: apikeys.NewSubjectID(), Handle: tok.Handle(),
		Hash: phc, HashAlgo: apikeys.HashAlgo, Name: "bench", Scopes: scopes,
		CreatedAt: time.Now().UTC(), UpdatedAt: time.Now().UTC()})
	return tok.Secret()
}

// expect verifies token once and fails unless the verdict is want.
func (e *benchVerifier) expect(b *testing.B, token string, want apikeys.VerifyCode) {
	b.Helper()
	v, err := e.svc.Verify(ctx, e.admin, service.VerifyRequest{Key: token, ClientIP: "127.0.0.1"})
	if err != nil || v.Code != want {
		b.Fatalf("verdict %q, %v; want %s", v.Code, err, want)
	}
}

func (e *benchVerifier) loop(b *testing.B, token string, want apikeys.VerifyCode) {
	e.expect(b, token, want) // the one argon2id run, and the cache filled
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		v, err := e.svc.Verify(ctx, e.admin, service.VerifyRequest{Key: token, ClientIP: "127.0.0.1"})
		if err != nil || v.Code != want {
			b.Fatalf("verdict %q, %v; want %s", v.Code, err, want)
		}
	}
}

// BenchmarkVerifyHit: the key's row in the cache and its proof in the memo; no argon2id.
func BenchmarkVerifyHit(b *testing.B) {
	e := newBenchVerifier(b, true)
	e.loop(b, e.key(b), apikeys.CodeValid)
}

// BenchmarkVerifyHitParallel is BenchmarkVerifyHit on every core at once, on one key: the
// locks of the cache, the memo and the usage recorder are shared.
func BenchmarkVerifyHitParallel(b *testing.B) {
	e := newBenchVerifier(b, true)
	token := e.key(b)
	e.expect(b, token, apikeys.CodeValid)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if v, err := e.svc.Verify(ctx, e.admin, service.VerifyRequest{Key: token, ClientIP: "127.0.0.1"}); err != nil || v.Code != apikeys.CodeValid {
				b.Errorf("verdict %q, %v", v.Code, err)
				return
			}
		}
	})
}

// BenchmarkAuthenticateKeyBearer: an api_keys:verify key as the bearer token, a hit.
func BenchmarkAuthenticateKeyBearer(b *testing.B) {
	e := newBenchVerifier(b, true)
	token := e.key(b, apikeys.ScopeVerify)
	if _, err := e.svc.Authenticate(ctx, token, "127.0.0.1", service.OpVerifyKey); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := e.svc.Authenticate(ctx, token, "127.0.0.1", service.OpVerifyKey); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyMemoMismatch: a wrong secret for a handle whose right secret was proven:
// NOT_FOUND from the memo, without argon2id.
func BenchmarkVerifyMemoMismatch(b *testing.B) {
	e := newBenchVerifier(b, true)
	token := e.key(b)
	e.expect(b, token, apikeys.CodeValid)
	e.loop(b, keytest.WrongSecret(b, token), apikeys.CodeNotFound)
}

// BenchmarkVerifyUnknownHandle: a well-formed token no key carries; a cached negative entry.
func BenchmarkVerifyUnknownHandle(b *testing.B) {
	e := newBenchVerifier(b, true)
	tok, err := keys.Generate(keys.DefaultPrefix)
	if err != nil {
		b.Fatal(err)
	}
	e.loop(b, tok.Secret(), apikeys.CodeNotFound)
}

// BenchmarkVerifyMalformed: a token whose checksum is wrong; no lookup at all.
func BenchmarkVerifyMalformed(b *testing.B) {
	e := newBenchVerifier(b, true)
	token := e.key(b)
	e.loop(b, token[:len(token)-1]+"x", apikeys.CodeMalformed)
}

// BenchmarkVerifyCacheMiss: the feed never vouches for the cache, so every verification reads
// the (in-memory) store; the memo still spares argon2id. It is the verifier's own cost of a
// miss, the database's round trip excluded.
func BenchmarkVerifyCacheMiss(b *testing.B) {
	e := newBenchVerifier(b, false)
	e.loop(b, e.key(b), apikeys.CodeValid)
}

// BenchmarkVerifyHitPermissionQuery is BenchmarkVerifyHit for a key with permissions and an
// IP allowlist, asked a permission query: the query is parsed in the loop, as the HTTP edge
// parses it on every request. `make bench` reports it as a ratio to BenchmarkVerifyHit.
func BenchmarkVerifyHitPermissionQuery(b *testing.B) {
	e := newBenchVerifier(b, true)
	token := e.key(b)
	k, _ := e.store.GetKeyByHandle(ctx, mustHandle(b, token))
	k.Permissions = []string{"documents.read", "documents.write", "billing:*"}
	k.IPAllowlist = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.0/8")}
	e.store.put(k)
	const query = "documents.read AND (billing:refund OR admin)"
	e.expect(b, token, apikeys.CodeValid)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		q, err := apikeys.ParsePermissionQuery(query)
		if err != nil {
			b.Fatal(err)
		}
		v, err := e.svc.Verify(ctx, e.admin, service.VerifyRequest{Key: token, ClientIP: "127.0.0.1", Permissions: q})
		if err != nil || v.Code != apikeys.CodeValid {
			b.Fatalf("verdict %q, %v", v.Code, err)
		}
	}
}

func mustHandle(b *testing.B, token string) string {
	tok, err := keys.Parse(token)
	if err != nil {
		b.Fatal(err)
	}
	return tok.Handle()
}
