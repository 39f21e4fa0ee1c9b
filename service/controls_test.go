package service_test

import (
	"net/netip"
	"testing"

	apikeys "github.com/qs/apikeys"
	"github.com/qs/apikeys/service"
)

func query(t *testing.T, s string) apikeys.PermissionQuery {
	t.Helper()
	q, err := apikeys.ParsePermissionQuery(s)
	if err != nil {
		t.Fatalf("query %q: %v", s, err)
	}
	return q
}

// TestVerificationOrderOfControls: the usage controls come after EXPIRED, in the order
// DISABLED, IP_NOT_ALLOWED, INSUFFICIENT_SCOPES, INSUFFICIENT_PERMISSIONS; each earlier
// failure hides the later ones.
func TestVerificationOrderOfControls(t *testing.T) {
	eachEngine(t, func(t *testing.T, f *fixture) {
		office := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")}
		mk := func(c apikeys.Controls) string {
			return f.create(f.admin, service.NewKeyRequest{Scopes: []apikeys.Scope{apikeys.ScopeRead}, Controls: c}).Token.Secret()
		}
		plain := mk(apikeys.Controls{Permissions: []string{"documents.read", "billing:*"}})
		disabled := mk(apikeys.Controls{Disabled: true, IPAllowlist: office, Permissions: []string{"x"}})
		fenced := mk(apikeys.Controls{IPAllowlist: office, Permissions: []string{"documents.read"}})
		revokedDisabled := f.create(f.admin, service.NewKeyRequest{Controls: apikeys.Controls{Disabled: true}})
		if _, err := f.svc.RevokeKey(ctx, f.admin, revokedDisabled.Key.ID, ""); err != nil {
			t.Fatal(err)
		}
		all := []apikeys.Scope{apikeys.ScopeRead, apikeys.ScopeWrite}
		tests := []struct {
			name string
			req  service.VerifyRequest
			want apikeys.VerifyCode
		}{
			{"permissions held", service.VerifyRequest{Key: plain, Permissions: query(t, "documents.read AND (billing:read OR admin)")}, apikeys.CodeValid},
			{"wildcard", service.VerifyRequest{Key: plain, Permissions: query(t, "billing:refund")}, apikeys.CodeValid},
			{"permission missing", service.VerifyRequest{Key: plain, Permissions: query(t, "documents.write")}, apikeys.CodeInsufficientPerms},
			{"AND needs both", service.VerifyRequest{Key: plain, Permissions: query(t, "documents.read AND admin")}, apikeys.CodeInsufficientPerms},
			{"OR needs one", service.VerifyRequest{Key: plain, Permissions: query(t, "admin OR documents.read")}, apikeys.CodeValid},
			{"scopes before permissions", service.VerifyRequest{Key: plain, RequiredScopes: all, Permissions: query(t, "admin")}, apikeys.CodeInsufficientScopes},
			{"revoked before disabled", service.VerifyRequest{Key: revokedDisabled.Token.Secret()}, apikeys.CodeRevoked},
			{"disabled", service.VerifyRequest{Key: disabled, ClientIP: "192.0.2.7"}, apikeys.CodeDisabled},
			{"disabled before the allowlist", service.VerifyRequest{Key: disabled, ClientIP: "198.51.100.1", RequiredScopes: all}, apikeys.CodeDisabled},
			{"allowed v4", service.VerifyRequest{Key: fenced, ClientIP: "192.0.2.7"}, apikeys.CodeValid},
			{"allowed v6", service.VerifyRequest{Key: fenced, ClientIP: "2001:db8::1"}, apikeys.CodeValid},
			{"allowed v4-mapped", service.VerifyRequest{Key: fenced, ClientIP: "::ffff:192.0.2.9"}, apikeys.CodeValid},
			{"outside the allowlist", service.VerifyRequest{Key: fenced, ClientIP: "198.51.100.1"}, apikeys.CodeIPNotAllowed},
			{"no address known", service.VerifyRequest{Key: fenced}, apikeys.CodeIPNotAllowed},
			{"allowlist before scopes", service.VerifyRequest{Key: fenced, ClientIP: "203.0.113.1", RequiredScopes: all, Permissions: query(t, "admin")}, apikeys.CodeIPNotAllowed},
			{"a wrong secret of a disabled key", service.VerifyRequest{Key: forge(t, disabled)}, apikeys.CodeNotFound},
		}
		for _, tt := range tests {
			v, err := f.svc.Verify(ctx, f.admin, tt.req)
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
				continue
			}
			if v.Code != tt.want || (v.Key != nil) != (tt.want == apikeys.CodeValid) {
				t.Errorf("%s: %s, want %s", tt.name, v.Code, tt.want)
			}
		}
	})
}

// TestDisabledAndFencedBearers: a disabled key, or one presented from outside its allowlist,
// does not authenticate; enabling it again restores it, on the next request.
func TestDisabledAndFencedBearers(t *testing.T) {
	eachEngine(t, func(t *testing.T, f *fixture) {
		c := f.create(f.admin, service.NewKeyRequest{Scopes: []apikeys.Scope{apikeys.ScopeRead},
			Controls: apikeys.Controls{IPAllowlist: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}})
		tok := c.Token.Secret()
		if _, err := f.svc.Authenticate(ctx, tok, "10.1.2.3", service.OpGetKey); err != nil {
			t.Fatalf("inside the allowlist: %v", err)
		}
		if _, err := f.svc.Authenticate(ctx, tok, "192.0.2.1", service.OpGetKey); !apikeys.IsCode(err, apikeys.EUNAUTHENTICATED) {
			t.Errorf("outside the allowlist: %v, want EUNAUTHENTICATED", err)
		}
		for _, enabled := range []bool{false, true} {
			if _, err := f.svc.UpdateKey(ctx, f.admin, c.Key.ID, service.KeyUpdate{Enabled: service.Some(enabled)}); err != nil {
				t.Fatal(err)
			}
			_, err := f.svc.Authenticate(ctx, tok, "10.1.2.3", service.OpGetKey)
			if enabled != (err == nil) {
				t.Errorf("enabled=%v: authenticate %v", enabled, err)
			}
			v, _ := f.svc.Verify(ctx, f.admin, service.VerifyRequest{Key: tok, ClientIP: "10.9.9.9"})
			if want := map[bool]apikeys.VerifyCode{true: apikeys.CodeValid, false: apikeys.CodeDisabled}[enabled]; v.Code != want {
				t.Errorf("enabled=%v: verify %s, want %s", enabled, v.Code, want)
			}
		}
		snap := f.svc.Snapshot()
		var disabledBearer int64
		for _, c := range snap.Verifications {
			if c.Via == service.ViaBearer && c.Code == apikeys.CodeDisabled {
				disabledBearer = c.N
			}
		}
		if disabledBearer != 1 {
			t.Errorf("bearer DISABLED counted %d times, want 1", disabledBearer)
		}
	})
}

// TestPermissionsAreGrantedOnlyByHolders: a key gives, and manages keys holding, only
// permissions it holds (its wildcards cover what they prefix); rotation carries controls over.
func TestPermissionsAreGrantedOnlyByHolders(t *testing.T) {
	eachEngine(t, func(t *testing.T, f *fixture) {
		writer := f.create(f.admin, service.NewKeyRequest{Scopes: []apikeys.Scope{apikeys.ScopeRead, apikeys.ScopeWrite},
			Controls: apikeys.Controls{Permissions: []string{"documents:*"}}})
		p := f.as(writer, service.OpCreateKey)
		if _, err := f.svc.CreateKey(ctx, p, service.NewKeyRequest{Name: "ok", Controls: apikeys.Controls{Permissions: []string{"documents:read"}}}); err != nil {
			t.Errorf("granting a permission under its wildcard: %v", err)
		}
		if _, err := f.svc.CreateKey(ctx, p, service.NewKeyRequest{Name: "no", Controls: apikeys.Controls{Permissions: []string{"billing:read"}}}); !apikeys.IsCode(err, apikeys.EFORBIDDEN) {
			t.Errorf("granting a permission it lacks: %v, want EFORBIDDEN", err)
		}
		if _, err := f.svc.CreateKey(ctx, p, service.NewKeyRequest{Name: "no", Controls: apikeys.Controls{Permissions: []string{"*"}}}); !apikeys.IsCode(err, apikeys.EFORBIDDEN) {
			t.Errorf("granting a wider wildcard: %v, want EFORBIDDEN", err)
		}
		admins := f.create(f.admin, service.NewKeyRequest{Controls: apikeys.Controls{Permissions: []string{"admin"}}})
		if _, err := f.svc.UpdateKey(ctx, p, admins.Key.ID, service.KeyUpdate{Name: service.Some("x")}); !apikeys.IsCode(err, apikeys.EFORBIDDEN) {
			t.Errorf("managing a key with a permission it lacks: %v, want EFORBIDDEN", err)
		}
		if _, err := f.svc.UpdateKey(ctx, p, writer.Key.ID, service.KeyUpdate{Permissions: service.Some([]string{"billing:*"})}); !apikeys.IsCode(err, apikeys.EFORBIDDEN) {
			t.Errorf("widening its own permissions: %v, want EFORBIDDEN", err)
		}
		rich := f.create(f.admin, service.NewKeyRequest{Controls: apikeys.Controls{Disabled: true, Permissions: []string{"a", "b"},
			IPAllowlist: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}})
		repl, err := f.svc.RotateKey(ctx, f.admin, rich.Key.ID, service.RotateRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if got := f.get(repl.Key.ID); got.Enabled() || len(got.Permissions) != 2 || len(got.IPAllowlist) != 1 {
			t.Errorf("rotation did not carry the controls over: %+v", got.Controls)
		}
	})
}
