package service_test

import (
	"context"
	"os"
	"sync/atomic"
	"testing"
	"time"

	apikeys "github.com/qs/apikeys"
	"github.com/qs/apikeys/internal/keytest"
	"github.com/qs/apikeys/internal/testdb"
	"github.com/qs/apikeys/keys"
	"github.com/qs/apikeys/service"
	"github.com/qs/apikeys/store"
)

func TestMain(m *testing.M) { os.Exit(testdb.Main(m)) }

const adminToken = "service-admin-token-0123456789"

var (
	fastHash = keys.Params{MemoryKiB: 64, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}
	t0       = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ctx      = context.Background()
)

// fixture is one service on a fresh database, with a clock the test moves.
type fixture struct {
	t     *testing.T
	svc   *service.Service
	store apikeys.KeyStore
	ns    atomic.Int64
	admin *apikeys.Principal
}

func (f *fixture) now() time.Time          { return time.Unix(0, f.ns.Load()).UTC() }
func (f *fixture) advance(d time.Duration) { f.ns.Add(int64(d)) }

// eachEngine runs fn against a fresh service on every database engine.
func eachEngine(t *testing.T, fn func(t *testing.T, f *fixture)) {
	t.Helper()
	for _, engine := range testdb.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			st, err := store.Open(ctx, testdb.New(t, engine).URL)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			f := &fixture{t: t, store: st}
			f.ns.Store(t0.UnixNano())
			f.svc = service.New(service.Config{Store: st, AdminToken: adminToken, Feed: st,
				Hasher: keys.NewHasher(fastHash, 0, 0), Now: f.now, UsageFlushInterval: time.Hour})
			t.Cleanup(func() { f.svc.Close(ctx) })
			var aerr error
			f.admin, aerr = f.svc.Authenticate(ctx, adminToken, "", service.OpCreateKey)
			if aerr != nil || !f.admin.Admin {
				t.Fatalf("admin: %v %+v", aerr, f.admin)
			}
			fn(t, f)
		})
	}
}

// create makes a key as p and fails the test on error.
func (f *fixture) create(p *apikeys.Principal, r service.NewKeyRequest) service.Created {
	f.t.Helper()
	if r.Name == "" {
		r.Name = "k"
	}
	c, err := f.svc.CreateKey(ctx, p, r)
	if err != nil {
		f.t.Fatalf("create %+v: %v", r, err)
	}
	return c
}

// as authenticates c's token for op, as the HTTP edge would.
func (f *fixture) as(c service.Created, op service.Op) *apikeys.Principal {
	f.t.Helper()
	p, err := f.svc.Authenticate(ctx, c.Token.Secret(), "192.0.2.1", op)
	if err != nil {
		f.t.Fatalf("authenticate %s for %s: %v", c.Key.ID, op, err)
	}
	return p
}

func (f *fixture) get(id string) apikeys.Key {
	f.t.Helper()
	k, err := f.store.GetKey(ctx, id)
	if err != nil {
		f.t.Fatal(err)
	}
	return k
}

func ptr[T any](v T) *T { return &v }

var all = []apikeys.Scope{apikeys.ScopeRead, apikeys.ScopeWrite, apikeys.ScopeVerify}

// TestWhoMayCallWhat is API.md's "Who may call what", rule by rule, without HTTP. Each
// case names the rule, acts as some caller, and expects a code ("" for success).
func TestWhoMayCallWhat(t *testing.T) {
	eachEngine(t, func(t *testing.T, f *fixture) {
		hour := f.now().Add(time.Hour)
		rw := []apikeys.Scope{apikeys.ScopeRead, apikeys.ScopeWrite}
		// writer: bound to tenant t, may read and write, expires in an hour.
		writer := f.create(f.admin, service.NewKeyRequest{Name: "writer", TenantID: "t", Scopes: rw, ExpiresAt: &hour})
		// forever: bound to t, may read and write, never expires.
		forever := f.create(f.admin, service.NewKeyRequest{Name: "forever", TenantID: "t", Scopes: rw})
		reader := f.create(f.admin, service.NewKeyRequest{Name: "reader", TenantID: "t", Scopes: []apikeys.Scope{apikeys.ScopeRead}})
		strong := f.create(f.admin, service.NewKeyRequest{Name: "strong", TenantID: "t", Scopes: all})
		elsewhere := f.create(f.admin, service.NewKeyRequest{Name: "elsewhere", TenantID: "u", Scopes: rw})
		later, earlier := hour.Add(time.Second), hour.Add(-time.Minute)
		weak := func() string { // a fresh key the writer may manage, without expiry
			return f.create(f.admin, service.NewKeyRequest{TenantID: "t", Scopes: []apikeys.Scope{apikeys.ScopeWrite}}).Key.ID
		}
		w := func(op service.Op) *apikeys.Principal { return f.as(writer, op) }

		tests := []struct {
			rule string
			do   func() error
			want string
		}{
			{"a key needs the operation's scope", func() error {
				_, err := f.svc.CreateKey(ctx, f.as(reader, service.OpListKeys), service.NewKeyRequest{Name: "x"})
				return err
			}, apikeys.EFORBIDDEN},
			{"no caller may do nothing", func() error {
				_, err := f.svc.GetKey(ctx, nil, strong.Key.ID)
				return err
			}, apikeys.EFORBIDDEN},
			{"cannot grant a scope it lacks", func() error {
				_, err := f.svc.CreateKey(ctx, w(service.OpCreateKey), service.NewKeyRequest{Name: "x", ExpiresAt: &hour, Scopes: all})
				return err
			}, apikeys.EFORBIDDEN},
			{"cannot create for another tenant", func() error {
				_, err := f.svc.CreateKey(ctx, w(service.OpCreateKey), service.NewKeyRequest{Name: "x", ExpiresAt: &hour, TenantID: "u"})
				return err
			}, apikeys.EFORBIDDEN},
			{"creates inside its tenant", func() error {
				c, err := f.svc.CreateKey(ctx, w(service.OpCreateKey), service.NewKeyRequest{Name: "x", ExpiresAt: &hour})
				if err == nil && (c.Key.TenantID != "t" || c.Key.CreatedBySubjectID != writer.Key.SubjectID) {
					t.Errorf("created %+v", c.Key)
				}
				return err
			}, ""},
			// Gap 2: no lifetime the caller does not have.
			{"cannot create a key without expiry", func() error {
				_, err := f.svc.CreateKey(ctx, w(service.OpCreateKey), service.NewKeyRequest{Name: "x"})
				return err
			}, apikeys.EFORBIDDEN},
			{"cannot create a key that outlives it", func() error {
				_, err := f.svc.CreateKey(ctx, w(service.OpCreateKey), service.NewKeyRequest{Name: "x", ExpiresAt: &later})
				return err
			}, apikeys.EFORBIDDEN},
			{"may create a key that dies with it", func() error {
				_, err := f.svc.CreateKey(ctx, w(service.OpCreateKey), service.NewKeyRequest{Name: "x", ExpiresAt: &hour})
				return err
			}, ""},
			{"cannot batch-create a key that outlives it", func() error {
				_, err := f.svc.CreateKeys(ctx, w(service.OpBatchCreate), []service.NewKeyRequest{
					{Name: "ok", ExpiresAt: &earlier}, {Name: "too long", ExpiresAt: &later}})
				return err
			}, apikeys.EFORBIDDEN},
			{"cannot PATCH a key to outlive it", func() error {
				_, err := f.svc.UpdateKey(ctx, w(service.OpUpdateKey), weak(), service.KeyUpdate{ExpiresAt: service.Some(&later)})
				return err
			}, apikeys.EFORBIDDEN},
			{"cannot PATCH a key to never expire", func() error {
				_, err := f.svc.UpdateKey(ctx, w(service.OpUpdateKey), weak(), service.KeyUpdate{ExpiresAt: service.Some[*time.Time](nil)})
				return err
			}, apikeys.EFORBIDDEN},
			{"may PATCH a key to die before it", func() error {
				_, err := f.svc.UpdateKey(ctx, w(service.OpUpdateKey), weak(), service.KeyUpdate{ExpiresAt: service.Some(&earlier)})
				return err
			}, ""},
			{"may rename a key without expiry (no lifetime given)", func() error {
				_, err := f.svc.UpdateKey(ctx, w(service.OpUpdateKey), weak(), service.KeyUpdate{Name: service.Some("renamed")})
				return err
			}, ""},
			{"cannot rotate a key without expiry into one without", func() error {
				_, err := f.svc.RotateKey(ctx, w(service.OpRotateKey), weak(), service.RotateRequest{})
				return err
			}, apikeys.EFORBIDDEN},
			{"may rotate a key without expiry into one that dies with it", func() error {
				_, err := f.svc.RotateKey(ctx, w(service.OpRotateKey), weak(), service.RotateRequest{ExpiresAt: &hour})
				return err
			}, ""},
			{"without an expiry of its own, a key may give any", func() error {
				_, err := f.svc.CreateKey(ctx, f.as(forever, service.OpCreateKey), service.NewKeyRequest{Name: "x"})
				return err
			}, ""},
			// Gap 1: revoke, like update and rotate, needs the target's scopes.
			{"cannot revoke a key holding scopes it lacks", func() error {
				_, err := f.svc.RevokeKey(ctx, w(service.OpRevokeKey), strong.Key.ID, "")
				return err
			}, apikeys.EFORBIDDEN},
			{"cannot update a key holding scopes it lacks", func() error {
				_, err := f.svc.UpdateKey(ctx, w(service.OpUpdateKey), strong.Key.ID, service.KeyUpdate{Name: service.Some("x")})
				return err
			}, apikeys.EFORBIDDEN},
			{"cannot rotate a key holding scopes it lacks", func() error {
				_, err := f.svc.RotateKey(ctx, w(service.OpRotateKey), strong.Key.ID, service.RotateRequest{ExpiresAt: &hour})
				return err
			}, apikeys.EFORBIDDEN},
			{"may revoke a key whose scopes it holds", func() error {
				k, err := f.svc.RevokeKey(ctx, w(service.OpRevokeKey), weak(), "done")
				if err == nil && (k.RevokedBySubjectID != writer.Key.SubjectID || k.RevokedReason != "done") {
					t.Errorf("revoked %+v", k)
				}
				return err
			}, ""},
			{"another tenant's key does not exist for it", func() error {
				_, err := f.svc.RevokeKey(ctx, w(service.OpRevokeKey), elsewhere.Key.ID, "")
				return err
			}, apikeys.ENOTFOUND},
			{"another tenant's key cannot be read", func() error {
				_, err := f.svc.GetKey(ctx, w(service.OpGetKey), elsewhere.Key.ID)
				return err
			}, apikeys.ENOTFOUND},
			{"another tenant's subject cannot be read", func() error {
				_, err := f.svc.GetSubject(ctx, w(service.OpGetSubject), elsewhere.Key.SubjectID)
				return err
			}, apikeys.ENOTFOUND},
			{"cannot change its own expiry", func() error {
				_, err := f.svc.UpdateKey(ctx, w(service.OpUpdateKey), writer.Key.ID, service.KeyUpdate{ExpiresAt: service.Some(&earlier)})
				return err
			}, apikeys.EFORBIDDEN},
			{"the admin gives any lifetime", func() error {
				_, err := f.svc.UpdateKey(ctx, f.admin, strong.Key.ID, service.KeyUpdate{ExpiresAt: service.Some[*time.Time](nil)})
				return err
			}, ""},
		}
		for _, tt := range tests {
			if got := apikeys.ErrorCode(tt.do()); got != tt.want {
				t.Errorf("%s: %q, want %q", tt.rule, got, tt.want)
			}
		}
		if k := f.get(strong.Key.ID); k.StatusAt(f.now()) != apikeys.StatusActive || k.Name != "strong" {
			t.Errorf("the stronger key changed: %+v", k)
		}
	})
}

// TestRotatingItselfKeepsItsLifetime: gap 2 for a key rotating itself, which today could
// reach 9999-01-01 under the same subject.
func TestRotatingItselfKeepsItsLifetime(t *testing.T) {
	eachEngine(t, func(t *testing.T, f *fixture) {
		hour := f.now().Add(time.Hour)
		self := f.create(f.admin, service.NewKeyRequest{Scopes: []apikeys.Scope{apikeys.ScopeWrite}, ExpiresAt: &hour})
		p := f.as(self, service.OpRotateKey)
		far := time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
		if _, err := f.svc.RotateKey(ctx, p, self.Key.ID, service.RotateRequest{ExpiresAt: &far}); !apikeys.IsCode(err, apikeys.EFORBIDDEN) {
			t.Fatalf("rotating itself to 9999: %v, want forbidden", err)
		}
		if k := f.get(self.Key.ID); k.ReplacedByID != "" || k.RevokedAt != nil {
			t.Fatalf("a refused rotation changed the key: %+v", k)
		}
		repl, err := f.svc.RotateKey(ctx, p, self.Key.ID, service.RotateRequest{GracePeriod: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		if repl.Key.ExpiresAt == nil || !repl.Key.ExpiresAt.Equal(hour) || repl.Key.SubjectID != self.Key.SubjectID {
			t.Errorf("replacement %+v, want expiry %v and the same subject", repl.Key, hour)
		}
	})
}

// TestGraceKeyCannotManageItsReplacement: gap 3.
func TestGraceKeyCannotManageItsReplacement(t *testing.T) {
	eachEngine(t, func(t *testing.T, f *fixture) {
		old := f.create(f.admin, service.NewKeyRequest{Scopes: all})
		repl, err := f.svc.RotateKey(ctx, f.as(old, service.OpRotateKey), old.Key.ID, service.RotateRequest{GracePeriod: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		// In its grace period the old key still authenticates ...
		for _, op := range []service.Op{service.OpGetKey, service.OpRevokeKey, service.OpVerifyKey} {
			if _, err := f.svc.Authenticate(ctx, old.Token.Secret(), "", op); err != nil {
				t.Errorf("the old key during its grace, for %s: %v", op, err)
			}
		}
		p := f.as(old, service.OpUpdateKey)
		if !p.Replaced {
			t.Fatalf("principal of a replaced key: %+v", p)
		}
		// ... and sees its replacement, but cannot manage it.
		if _, err := f.svc.GetKey(ctx, p, repl.Key.ID); err != nil {
			t.Errorf("reading the replacement: %v", err)
		}
		for name, do := range map[string]func() error{
			"revoke": func() error { _, err := f.svc.RevokeKey(ctx, p, repl.Key.ID, ""); return err },
			"rotate": func() error { _, err := f.svc.RotateKey(ctx, p, repl.Key.ID, service.RotateRequest{}); return err },
			"update": func() error {
				_, err := f.svc.UpdateKey(ctx, p, repl.Key.ID, service.KeyUpdate{Name: service.Some("mine")})
				return err
			},
		} {
			if err := do(); !apikeys.IsCode(err, apikeys.EFORBIDDEN) {
				t.Errorf("the old key may %s its replacement: %v", name, err)
			}
		}
		if k := f.get(repl.Key.ID); k.StatusAt(f.now()) != apikeys.StatusActive || k.Name != repl.Key.Name || k.ReplacedByID != "" {
			t.Errorf("the replacement changed: %+v", k)
		}
		// It may still give itself up, and the replacement may manage it.
		if _, err := f.svc.RevokeKey(ctx, f.as(repl, service.OpRevokeKey), old.Key.ID, "retired"); err != nil {
			t.Errorf("the replacement revoking the old key: %v", err)
		}
		if _, err := f.svc.Authenticate(ctx, old.Token.Secret(), "", service.OpGetKey); !apikeys.IsCode(err, apikeys.EUNAUTHENTICATED) {
			t.Errorf("a revoked key authenticated: %v", err)
		}
	})
}

// TestVerificationOrder: the verdicts of API.md, in their order, without HTTP.
func TestVerificationOrder(t *testing.T) {
	eachEngine(t, func(t *testing.T, f *fixture) {
		hour := f.now().Add(time.Hour)
		mk := func(r service.NewKeyRequest) service.Created { return f.create(f.admin, r) }
		active := mk(service.NewKeyRequest{TenantID: "a", EnvironmentID: "prod", Scopes: []apikeys.Scope{apikeys.ScopeRead}})
		revoked := mk(service.NewKeyRequest{TenantID: "a", EnvironmentID: "prod"})
		if _, err := f.svc.RevokeKey(ctx, f.admin, revoked.Key.ID, ""); err != nil {
			t.Fatal(err)
		}
		expiring := mk(service.NewKeyRequest{TenantID: "a", ExpiresAt: &hour})
		boundA := f.as(mk(service.NewKeyRequest{TenantID: "a", Scopes: []apikeys.Scope{apikeys.ScopeVerify}}), service.OpVerifyKey)
		boundB := f.as(mk(service.NewKeyRequest{TenantID: "b", Scopes: []apikeys.Scope{apikeys.ScopeVerify}}), service.OpVerifyKey)
		boundDev := f.as(mk(service.NewKeyRequest{TenantID: "a", EnvironmentID: "dev", Scopes: []apikeys.Scope{apikeys.ScopeVerify}}), service.OpVerifyKey)
		f.advance(2 * time.Hour) // expiring has expired

		secret := active.Token.Secret()
		wrong := forge(t, secret)
		tests := []struct {
			name   string
			caller *apikeys.Principal
			req    service.VerifyRequest
			want   apikeys.VerifyCode
		}{
			{"valid", f.admin, service.VerifyRequest{Key: secret}, apikeys.CodeValid},
			{"malformed", f.admin, service.VerifyRequest{Key: "qs_live_nope"}, apikeys.CodeMalformed},
			{"malformed beats everything", f.admin, service.VerifyRequest{Key: "x", TenantID: "z"}, apikeys.CodeMalformed},
			{"unknown handle", f.admin, service.VerifyRequest{Key: forgeHandle(t, secret)}, apikeys.CodeNotFound},
			{"wrong secret of a known handle", f.admin, service.VerifyRequest{Key: wrong}, apikeys.CodeNotFound},
			{"wrong secret of a revoked key", f.admin, service.VerifyRequest{Key: forge(t, revoked.Token.Secret())}, apikeys.CodeNotFound},
			{"tenant mismatch", f.admin, service.VerifyRequest{Key: secret, TenantID: "b"}, apikeys.CodeTenantMismatch},
			{"tenant before environment", f.admin, service.VerifyRequest{Key: secret, TenantID: "b", EnvironmentID: "dev"}, apikeys.CodeTenantMismatch},
			{"environment mismatch", f.admin, service.VerifyRequest{Key: secret, EnvironmentID: "dev"}, apikeys.CodeEnvironmentMismatch},
			{"environment before revoked", f.admin, service.VerifyRequest{Key: revoked.Token.Secret(), EnvironmentID: "dev"}, apikeys.CodeEnvironmentMismatch},
			{"revoked", f.admin, service.VerifyRequest{Key: revoked.Token.Secret()}, apikeys.CodeRevoked},
			{"revoked before scopes", f.admin, service.VerifyRequest{Key: revoked.Token.Secret(), RequiredScopes: all}, apikeys.CodeRevoked},
			{"expired", f.admin, service.VerifyRequest{Key: expiring.Token.Secret()}, apikeys.CodeExpired},
			{"expired before scopes", f.admin, service.VerifyRequest{Key: expiring.Token.Secret(), RequiredScopes: all}, apikeys.CodeExpired},
			{"insufficient scopes", f.admin, service.VerifyRequest{Key: secret, RequiredScopes: all}, apikeys.CodeInsufficientScopes},
			{"held scopes", f.admin, service.VerifyRequest{Key: secret, RequiredScopes: []apikeys.Scope{apikeys.ScopeRead}}, apikeys.CodeValid},
			// Gap 4: a bound caller sees no key outside its tenant (environment).
			{"bound caller, own tenant", boundA, service.VerifyRequest{Key: secret}, apikeys.CodeValid},
			{"bound caller, other tenant's genuine secret", boundB, service.VerifyRequest{Key: secret}, apikeys.CodeNotFound},
			{"bound caller, other tenant's revoked key", boundB, service.VerifyRequest{Key: revoked.Token.Secret()}, apikeys.CodeNotFound},
			{"bound caller, other environment", boundDev, service.VerifyRequest{Key: secret}, apikeys.CodeNotFound},
			{"bound caller, explicit mismatch in its tenant", boundA, service.VerifyRequest{Key: secret, TenantID: "b"}, apikeys.CodeTenantMismatch},
		}
		for _, tt := range tests {
			v, err := f.svc.Verify(ctx, tt.caller, tt.req)
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
				continue
			}
			if v.Code != tt.want || (v.Key != nil) != (tt.want == apikeys.CodeValid) {
				t.Errorf("%s: %s (key %v), want %s", tt.name, v.Code, v.Key != nil, tt.want)
			}
		}
		reader := f.as(active, service.OpGetKey)
		if _, err := f.svc.Verify(ctx, reader, service.VerifyRequest{Key: secret}); !apikeys.IsCode(err, apikeys.EFORBIDDEN) {
			t.Errorf("verify without api_keys:verify: %v", err)
		}
	})
}

// forge returns a well-formed token with secret's handle and another secret.
func forge(t *testing.T, secret string) string { return keytest.WrongSecret(t, secret) }

// forgeHandle returns a well-formed token whose handle no key has.
func forgeHandle(t *testing.T, secret string) string {
	t.Helper()
	tok, _ := keys.Parse(secret)
	other, err := keys.Generate(tok.Prefix())
	if err != nil {
		t.Fatal(err)
	}
	return other.Secret()
}

// TestWritesUseTheCallerAsItIsNow: a caller revoked, narrowed or rotated after it was
// authenticated (while its request hashes, say) writes nothing. The stale principal stands
// for a request that authenticated before the change.
func TestWritesUseTheCallerAsItIsNow(t *testing.T) {
	eachEngine(t, func(t *testing.T, f *fixture) {
		writer := f.create(f.admin, service.NewKeyRequest{Scopes: all})
		target := f.create(f.admin, service.NewKeyRequest{Name: "target"})
		stale := f.as(writer, service.OpCreateKey)
		writes := map[string]func() error{
			"create": func() error { _, err := f.svc.CreateKey(ctx, stale, service.NewKeyRequest{Name: "x"}); return err },
			"batch": func() error {
				_, err := f.svc.CreateKeys(ctx, stale, []service.NewKeyRequest{{Name: "x"}})
				return err
			},
			"update": func() error {
				_, err := f.svc.UpdateKey(ctx, stale, target.Key.ID, service.KeyUpdate{Name: service.Some("mine")})
				return err
			},
			"revoke": func() error { _, err := f.svc.RevokeKey(ctx, stale, target.Key.ID, ""); return err },
			"rotate": func() error {
				_, err := f.svc.RotateKey(ctx, stale, target.Key.ID, service.RotateRequest{})
				return err
			},
		}
		count := func() int {
			page, err := f.svc.ListKeys(ctx, f.admin, service.ListRequest{Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			return len(page.Keys)
		}
		before := count()
		// Narrowed: the writer loses api_keys:write.
		if _, err := f.svc.UpdateKey(ctx, f.admin, writer.Key.ID, service.KeyUpdate{Scopes: service.Some([]apikeys.Scope{apikeys.ScopeRead})}); err != nil {
			t.Fatal(err)
		}
		for name, do := range writes {
			if err := do(); !apikeys.IsCode(err, apikeys.EFORBIDDEN) {
				t.Errorf("%s by a caller narrowed since it authenticated: %v, want forbidden", name, err)
			}
		}
		// Revoked.
		if _, err := f.svc.RevokeKey(ctx, f.admin, writer.Key.ID, "compromised"); err != nil {
			t.Fatal(err)
		}
		for name, do := range writes {
			if err := do(); !apikeys.IsCode(err, apikeys.EUNAUTHENTICATED) {
				t.Errorf("%s by a caller revoked since it authenticated: %v, want unauthenticated", name, err)
			}
		}
		if got := f.get(target.Key.ID); got.Name != "target" || got.RevokedAt != nil || got.ReplacedByID != "" {
			t.Errorf("the target changed: %+v", got)
		}
		if after := count(); after != before {
			t.Errorf("%d keys after refused writes, want %d", after, before)
		}
		// Rotated with a grace period: it may still read but no longer create.
		other := f.create(f.admin, service.NewKeyRequest{Scopes: all})
		p := f.as(other, service.OpCreateKey)
		if _, err := f.svc.RotateKey(ctx, f.admin, other.Key.ID, service.RotateRequest{GracePeriod: time.Hour}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.CreateKey(ctx, p, service.NewKeyRequest{Name: "x"}); !apikeys.IsCode(err, apikeys.EFORBIDDEN) {
			t.Errorf("create by a caller rotated since it authenticated: %v, want forbidden", err)
		}
	})
}

// TestScopesAreGivenForTheKeysLifetime: adding scopes to a key that outlives the caller
// gives them for longer than the caller has them.
func TestScopesAreGivenForTheKeysLifetime(t *testing.T) {
	eachEngine(t, func(t *testing.T, f *fixture) {
		hour := f.now().Add(time.Hour)
		temp := f.as(f.create(f.admin, service.NewKeyRequest{Scopes: all, ExpiresAt: &hour}), service.OpUpdateKey)
		forever := f.create(f.admin, service.NewKeyRequest{Scopes: []apikeys.Scope{apikeys.ScopeRead}}).Key.ID
		rw := []apikeys.Scope{apikeys.ScopeRead, apikeys.ScopeWrite}
		if _, err := f.svc.UpdateKey(ctx, temp, forever, service.KeyUpdate{Scopes: service.Some(rw)}); !apikeys.IsCode(err, apikeys.EFORBIDDEN) {
			t.Errorf("adding scopes to a key that outlives the caller: %v, want forbidden", err)
		}
		if _, err := f.svc.UpdateKey(ctx, temp, forever, service.KeyUpdate{Scopes: service.Some([]apikeys.Scope{})}); err != nil {
			t.Errorf("removing scopes from it: %v", err)
		}
		if _, err := f.svc.UpdateKey(ctx, temp, forever, service.KeyUpdate{Scopes: service.Some(rw), ExpiresAt: service.Some(&hour)}); err != nil {
			t.Errorf("adding scopes with an expiry within the caller's: %v", err)
		}
		if k := f.get(forever); !k.HasScopes(rw) || k.ExpiresAt == nil || !k.ExpiresAt.Equal(hour) {
			t.Errorf("key %+v", k)
		}
	})
}
