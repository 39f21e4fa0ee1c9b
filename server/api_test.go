package server_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	apikeys "github.com/qs/apikeys"
	"github.com/qs/apikeys/internal/keytest"
	"github.com/qs/apikeys/keys"
)

var allScopes = []string{"api_keys:read", "api_keys:write", "api_keys:verify"}

// forge returns a well-formed token with secret's handle and another secret.
func forge(t *testing.T, secret string) string { return keytest.WrongSecret(t, secret) }

// TestAuthMatrix sends every protected endpoint every kind of bad caller.
func TestAuthMatrix(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		target := e.create(map[string]any{"name": "target", "tenantId": "tenant_a", "scopes": []string{"api_keys:read"}})
		id, subject := target["id"].(string), target["subjectId"].(string)
		secretOf := func(body map[string]any) string { return e.create(body)["secretKey"].(string) }

		revoked := e.create(map[string]any{"name": "revoked", "scopes": allScopes})
		e.do("POST", "/api-keys/"+revoked["id"].(string)+"/revoke", adminToken, nil)
		expiring := secretOf(map[string]any{"name": "expiring", "scopes": allScopes, "expiresAt": e.clock.Now().Add(time.Minute)})
		unknown, _ := keys.Generate(keys.DefaultPrefix)
		callers := map[string]string{
			"none":         "",
			"malformed":    "not-a-key",
			"unknown":      unknown.Secret(),
			"wrong secret": forge(t, revoked["secretKey"].(string)),
			"revoked":      revoked["secretKey"].(string),
			"expired":      expiring,
			"no scope":     secretOf(map[string]any{"name": "none", "tenantId": "tenant_a"}),
			"other tenant": secretOf(map[string]any{"name": "other", "tenantId": "tenant_b", "scopes": allScopes}),
		}
		e.clock.Advance(2 * time.Minute)

		endpoints := []struct {
			method, path string
			body         any
			otherTenant  int // what a fully scoped key of another tenant gets
		}{
			{"GET", "/api-keys", nil, 200},
			{"POST", "/api-keys", map[string]any{"name": "x", "tenantId": "tenant_a"}, 403},
			{"POST", "/api-keys/batch", map[string]any{"keys": []any{map[string]any{"name": "x", "tenantId": "tenant_a"}}}, 403},
			{"GET", "/api-keys/" + id, nil, 404},
			{"PATCH", "/api-keys/" + id, map[string]any{"name": "y"}, 404},
			{"POST", "/api-keys/" + id + "/revoke", map[string]any{}, 404},
			{"POST", "/api-keys/" + id + "/rotate", map[string]any{}, 404},
			{"POST", "/api-keys/verify", map[string]any{"key": "qs_live_x"}, 200},
			{"GET", "/subjects/" + subject, nil, 404},
		}
		for _, ep := range endpoints {
			for name, token := range callers {
				want := http.StatusUnauthorized
				switch name {
				case "no scope":
					want = http.StatusForbidden
				case "other tenant":
					want = ep.otherTenant
				}
				r := e.do(ep.method, ep.path, token, ep.body)
				if r.Status != want {
					t.Errorf("%s %s as %s: %d, want %d (%s)", ep.method, ep.path, name, r.Status, want, r.Body)
				}
				if want == 401 && !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("%s %s as %s: 401 without WWW-Authenticate: Bearer", ep.method, ep.path, name)
				}
			}
		}
		// The other tenant's view of the list holds none of tenant_a's keys.
		var list []map[string]any
		e.do("GET", "/api-keys?tenantId=tenant_a", callers["other tenant"], nil).JSON(t, &list)
		if len(list) != 0 {
			t.Errorf("another tenant listed %d keys of tenant_a", len(list))
		}
		// Nothing was changed by any of it.
		got := e.do("GET", "/api-keys/"+id, adminToken, nil).obj(t)
		if got["name"] != "target" || got["status"] != "active" || got["replacedById"] != nil {
			t.Errorf("the target changed: %v", got)
		}
		for _, path := range []string{"/healthz", "/readyz", "/openapi.yaml"} {
			if r := e.do("GET", path, "", nil); r.Status != 200 {
				t.Errorf("GET %s without a token: %d", path, r.Status)
			}
		}
	})
}

// TestScopedAndTenantBoundKeys covers what a key of this service may do with its scopes.
func TestScopedAndTenantBoundKeys(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		writer := e.create(map[string]any{"name": "writer", "tenantId": "tenant_a", "environmentId": "env_prod", "scopes": []string{"api_keys:read", "api_keys:write"}})
		w := writer["secretKey"].(string)

		// Created keys inherit the caller's tenant and environment and record the creator.
		r := e.do("POST", "/api-keys", w, map[string]any{"name": "child", "scopes": []string{"api_keys:read"}})
		if r.Status != 201 {
			t.Fatalf("create as tenant key: %d %s", r.Status, r.Body)
		}
		child := r.obj(t)
		if child["tenantId"] != "tenant_a" || child["environmentId"] != "env_prod" || child["createdBySubjectId"] != writer["subjectId"] {
			t.Errorf("child = %v", child)
		}
		forbidden := []struct {
			name, method, path string
			body               any
		}{
			{"grant a scope it lacks", "POST", "/api-keys", map[string]any{"name": "x", "scopes": []string{"api_keys:verify"}}},
			{"create for another tenant", "POST", "/api-keys", map[string]any{"name": "x", "tenantId": "tenant_b"}},
			{"create for another environment", "POST", "/api-keys", map[string]any{"name": "x", "environmentId": "env_dev"}},
			{"escalate by update", "PATCH", "/api-keys/" + child["id"].(string), map[string]any{"scopes": allScopes}},
		}
		for _, tt := range forbidden {
			if r := e.do(tt.method, tt.path, w, tt.body); r.Status != 403 {
				t.Errorf("%s: %d, want 403 (%s)", tt.name, r.Status, r.Body)
			}
		}
		strong := e.create(map[string]any{"name": "strong", "tenantId": "tenant_a", "environmentId": "env_prod", "scopes": allScopes})
		if r := e.do("POST", "/api-keys/"+strong["id"].(string)+"/rotate", w, nil); r.Status != 403 {
			t.Errorf("rotating a stronger key: %d, want 403", r.Status)
		}
		if n := e.count(); n != 3 {
			t.Errorf("%d keys after forbidden requests, want 3", n)
		}
		// Revocation by a key records its subject.
		rev := e.do("POST", "/api-keys/"+child["id"].(string)+"/revoke", w, map[string]any{"reason": "test"}).obj(t)
		if rev["revokedBySubjectId"] != writer["subjectId"] || rev["revokedReason"] != "test" {
			t.Errorf("revoked = %v", rev)
		}
		// A verify-only key bound to a tenant vouches only for its tenant's keys; another
		// tenant's key does not exist for it, genuine secret or not.
		verifier := e.create(map[string]any{"name": "v", "tenantId": "tenant_b", "scopes": []string{"api_keys:verify"}})["secretKey"].(string)
		r = e.do("POST", "/api-keys/verify", verifier, map[string]any{"key": strong["secretKey"]})
		if got := r.obj(t); got["valid"] != false || got["code"] != "NOT_FOUND" || got["keyId"] != nil {
			t.Errorf("cross-tenant verify = %v", got)
		}
		if r := e.do("GET", "/api-keys", verifier, nil); r.Status != 403 {
			t.Errorf("verify-only key listing: %d, want 403", r.Status)
		}
	})
}

// TestStatusSemantics: expired is derived, revoked beats expired, filters agree with GET.
func TestStatusSemantics(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		now := e.clock.Now()
		exp := e.create(map[string]any{"name": "exp", "expiresAt": now.Add(time.Hour)})
		act := e.create(map[string]any{"name": "act"})
		both := e.create(map[string]any{"name": "both", "expiresAt": now.Add(time.Hour)})
		e.do("POST", "/api-keys/"+both["id"].(string)+"/revoke", adminToken, nil)
		e.clock.Set(now.Add(time.Hour)) // expiresAt <= now: expired at this very instant

		want := map[string]string{exp["id"].(string): "expired", act["id"].(string): "active", both["id"].(string): "revoked"}
		for id, status := range want {
			if got := e.do("GET", "/api-keys/"+id, adminToken, nil).obj(t)["status"]; got != status {
				t.Errorf("GET %s status = %v, want %s", id, got, status)
			}
		}
		for _, status := range []string{"active", "revoked", "expired"} {
			var list []map[string]any
			e.do("GET", "/api-keys?status="+status, adminToken, nil).JSON(t, &list)
			var ids []string
			for _, k := range list {
				if k["status"] != status {
					t.Errorf("status=%s listed a key with status %v", status, k["status"])
				}
				ids = append(ids, k["id"].(string))
			}
			for id, s := range want {
				if got := slices.Contains(ids, id); got != (s == status) {
					t.Errorf("status=%s lists %s: %v, want %v", status, id, got, s == status)
				}
			}
		}
		if v := e.verify(map[string]any{"key": exp["secretKey"]}); v["code"] != "EXPIRED" {
			t.Errorf("expired key verifies as %v", v)
		}
		if v := e.verify(map[string]any{"key": both["secretKey"]}); v["code"] != "REVOKED" {
			t.Errorf("revoked and expired key verifies as %v", v)
		}
	})
}

// TestRotation covers immediate and graceful rotation and the conflicts.
func TestRotation(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		old := e.create(map[string]any{"name": "ci", "tenantId": "tenant_a", "metadata": map[string]any{"team": "x"}, "scopes": []string{"api_keys:read"}})
		r := e.do("POST", "/api-keys/"+old["id"].(string)+"/rotate", adminToken, nil)
		if r.Status != 201 {
			t.Fatalf("rotate: %d %s", r.Status, r.Body)
		}
		repl := r.obj(t)
		if repl["subjectId"] != old["subjectId"] || repl["rotatedFromId"] != old["id"] || repl["tenantId"] != "tenant_a" ||
			jsonOf(repl["metadata"]) != `{"team":"x"}` || jsonOf(repl["scopes"]) != `["api_keys:read"]` || repl["id"] == old["id"] {
			t.Errorf("replacement = %v", repl)
		}
		if v := e.verify(map[string]any{"key": old["secretKey"]}); v["code"] != "REVOKED" {
			t.Errorf("old key after rotation: %v", v)
		}
		if v := e.verify(map[string]any{"key": repl["secretKey"]}); v["code"] != "VALID" || v["subjectId"] != old["subjectId"] {
			t.Errorf("new key: %v", v)
		}
		oldNow := e.do("GET", "/api-keys/"+old["id"].(string), adminToken, nil).obj(t)
		if oldNow["replacedById"] != repl["id"] || oldNow["status"] != "revoked" {
			t.Errorf("old key = %v", oldNow)
		}
		if r := e.do("POST", "/api-keys/"+old["id"].(string)+"/rotate", adminToken, nil); r.Status != 409 {
			t.Errorf("rotating twice: %d, want 409", r.Status)
		}
		revoked := e.create(map[string]any{"name": "r"})
		e.do("POST", "/api-keys/"+revoked["id"].(string)+"/revoke", adminToken, nil)
		if r := e.do("POST", "/api-keys/"+revoked["id"].(string)+"/rotate", adminToken, nil); r.Status != 409 {
			t.Errorf("rotating a revoked key: %d, want 409", r.Status)
		}

		// With a grace period the old key works until the grace ends.
		g := e.create(map[string]any{"name": "graceful"})
		r = e.do("POST", "/api-keys/"+g["id"].(string)+"/rotate", adminToken, map[string]any{"gracePeriodSeconds": 60, "name": "graceful v2"})
		if r.Status != 201 {
			t.Fatalf("rotate with grace: %d %s", r.Status, r.Body)
		}
		g2 := r.obj(t)
		if g2["name"] != "graceful v2" {
			t.Errorf("name = %v", g2["name"])
		}
		if v := e.verify(map[string]any{"key": g["secretKey"]}); v["code"] != "VALID" {
			t.Errorf("old key during grace: %v", v)
		}
		if r := e.do("POST", "/api-keys/"+g["id"].(string)+"/rotate", adminToken, nil); r.Status != 409 {
			t.Errorf("rotating a key in its grace: %d, want 409", r.Status)
		}
		e.clock.Advance(61 * time.Second)
		if v := e.verify(map[string]any{"key": g["secretKey"]}); v["code"] != "EXPIRED" {
			t.Errorf("old key after grace: %v", v)
		}
		if v := e.verify(map[string]any{"key": g2["secretKey"]}); v["code"] != "VALID" {
			t.Errorf("new key after grace: %v", v)
		}
		// Rotation keeps one subject for both keys.
		var list []map[string]any
		e.do("GET", "/api-keys?subjectId="+g["subjectId"].(string), adminToken, nil).JSON(t, &list)
		if len(list) != 2 {
			t.Errorf("subject has %d keys, want 2", len(list))
		}
		if r := e.do("GET", "/subjects/"+g["subjectId"].(string), adminToken, nil); r.Status != 200 || r.obj(t)["type"] != "service" {
			t.Errorf("subject: %d %s", r.Status, r.Body)
		}
	})
}

// TestBatchIsAllOrNothing: one bad item rejects the whole batch and stores nothing.
func TestBatchIsAllOrNothing(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		taken := e.create(map[string]any{"name": "taken"})["id"].(string)
		good := map[string]any{"name": "good"}
		tests := []struct {
			name   string
			items  []any
			status int
			field  string
		}{
			{"schema", []any{good, good, map[string]any{"name": ""}}, 400, "/keys/2/name"},
			{"unknown field", []any{good, map[string]any{"name": "x", "colour": "red"}}, 400, "/keys/1"},
			{"past expiry", []any{good, map[string]any{"name": "x", "expiresAt": "2020-01-01T00:00:00Z"}}, 400, "/keys/1/expiresAt"},
			{"big metadata", []any{good, map[string]any{"name": "x", "metadata": map[string]any{"a": strings.Repeat("x", 5000)}}}, 400, "/keys/1/metadata"},
			{"same id twice", []any{map[string]any{"name": "x", "id": "apk_0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"}, map[string]any{"name": "y", "id": "apk_0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"}}, 400, "/keys/1/id"},
			{"taken id", []any{good, map[string]any{"name": "x", "id": taken}}, 409, ""},
			{"too many", slices.Repeat([]any{good}, 101), 400, "/keys"},
			{"empty", []any{}, 400, "/keys"},
		}
		for _, tt := range tests {
			r := e.do("POST", "/api-keys/batch", adminToken, map[string]any{"keys": tt.items})
			if r.Status != tt.status {
				t.Errorf("%s: %d, want %d (%s)", tt.name, r.Status, tt.status, r.Body)
				continue
			}
			if tt.field != "" && !hasField(t, r, tt.field) {
				t.Errorf("%s: errors do not name %s: %s", tt.name, tt.field, r.Body)
			}
		}
		if n := e.count(); n != 1 {
			t.Errorf("%d keys stored after rejected batches, want 1", n)
		}
		r := e.do("POST", "/api-keys/batch", adminToken, map[string]any{"keys": slices.Repeat([]any{good}, 100)})
		if r.Status != 201 {
			t.Fatalf("batch of 100: %d %s", r.Status, r.Body)
		}
		var created []map[string]any
		r.JSON(t, &created)
		secrets := map[any]bool{}
		for _, k := range created {
			secrets[k["secretKey"]] = true
		}
		if len(created) != 100 || len(secrets) != 100 {
			t.Errorf("batch made %d keys with %d distinct secrets", len(created), len(secrets))
		}
		if v := e.verify(map[string]any{"key": created[99]["secretKey"]}); v["code"] != "VALID" {
			t.Errorf("batch key verifies as %v", v)
		}
	})
}

func hasField(t *testing.T, r *resp, field string) bool {
	t.Helper()
	var p struct {
		Errors []struct{ Field string } `json:"errors"`
	}
	r.JSON(t, &p)
	for _, f := range p.Errors {
		if f.Field == field || strings.HasPrefix(f.Field, field+"/") {
			return true
		}
	}
	return false
}

// TestVerifyCodes walks every verdict in the documented order.
func TestVerifyCodes(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		k := e.create(map[string]any{"name": "k", "tenantId": "tenant_a", "environmentId": "env_prod",
			"scopes": []string{"api_keys:read"}, "metadata": map[string]any{"plan": "pro"}, "expiresAt": e.clock.Now().Add(time.Hour)})
		secret := k["secretKey"].(string)
		revoked := e.create(map[string]any{"name": "r"})
		e.do("POST", "/api-keys/"+revoked["id"].(string)+"/revoke", adminToken, nil)
		unknown, _ := keys.Generate(keys.DefaultPrefix)
		flipped := []byte(secret)
		flipped[20] ^= 1 // one typo: the checksum catches it
		tests := []struct {
			name string
			body map[string]any
			code string
		}{
			{"valid", map[string]any{"key": secret}, "VALID"},
			{"valid with every constraint", map[string]any{"key": secret, "tenantId": "tenant_a", "environmentId": "env_prod", "requiredScopes": []string{"api_keys:read"}}, "VALID"},
			{"junk", map[string]any{"key": "hello"}, "MALFORMED"},
			{"typo", map[string]any{"key": string(flipped)}, "MALFORMED"},
			{"unknown handle", map[string]any{"key": unknown.Secret()}, "NOT_FOUND"},
			{"wrong secret", map[string]any{"key": forge(t, secret)}, "NOT_FOUND"},
			{"wrong secret of a revoked key", map[string]any{"key": forge(t, revoked["secretKey"].(string))}, "NOT_FOUND"},
			{"revoked", map[string]any{"key": revoked["secretKey"]}, "REVOKED"},
			{"tenant", map[string]any{"key": secret, "tenantId": "tenant_b"}, "TENANT_MISMATCH"},
			{"environment", map[string]any{"key": secret, "environmentId": "env_dev"}, "ENVIRONMENT_MISMATCH"},
			{"scopes", map[string]any{"key": secret, "requiredScopes": []string{"api_keys:read", "api_keys:write"}}, "INSUFFICIENT_SCOPES"},
		}
		for _, tt := range tests {
			v := e.verify(tt.body)
			if v["code"] != tt.code || v["valid"] != (tt.code == "VALID") {
				t.Errorf("%s: %v, want %s", tt.name, v, tt.code)
			}
			if tt.code != "VALID" && len(v) != 2 {
				t.Errorf("%s: an invalid verdict tells more than valid and code: %v", tt.name, v)
			}
		}
		v := e.verify(map[string]any{"key": secret})
		if v["keyId"] != k["id"] || v["subjectId"] != k["subjectId"] || v["tenantId"] != "tenant_a" || v["environmentId"] != "env_prod" ||
			jsonOf(v["scopes"]) != `["api_keys:read"]` || jsonOf(v["metadata"]) != `{"plan":"pro"}` || v["expiresAt"] != k["expiresAt"] {
			t.Errorf("valid verdict = %v", v)
		}
		e.clock.Advance(time.Hour)
		if v := e.verify(map[string]any{"key": secret}); v["code"] != "EXPIRED" {
			t.Errorf("after expiry: %v", v)
		}
	})
}

// TestUsageIsRecordedWithoutAWritePerRequest: lastUsedAt and lastUsedIp appear after a
// flush, from clientIp or else the caller's address.
func TestUsageIsRecordedWithoutAWritePerRequest(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		a := e.create(map[string]any{"name": "a"})
		b := e.create(map[string]any{"name": "b", "scopes": []string{"api_keys:verify"}})
		t1 := e.clock.Now()
		e.verify(map[string]any{"key": a["secretKey"], "clientIp": "2001:db8::1"})
		e.verify(map[string]any{"key": b["secretKey"]})
		e.clock.Advance(time.Second)
		e.verify(map[string]any{"key": a["secretKey"], "clientIp": "192.168.1.1"})
		// Nothing is written until the recorder flushes.
		if got := e.do("GET", "/api-keys/"+a["id"].(string), adminToken, nil).obj(t); got["lastUsedAt"] != nil {
			t.Errorf("usage written before a flush: %v", got["lastUsedAt"])
		}
		// Using a key as a bearer token is a use too.
		e.do("POST", "/api-keys/verify", b["secretKey"].(string), map[string]any{"key": "x"})
		if err := e.svc.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		ga := e.do("GET", "/api-keys/"+a["id"].(string), adminToken, nil).obj(t)
		if ga["lastUsedAt"] != t1.Add(time.Second).Format(time.RFC3339) || ga["lastUsedIp"] != "192.168.1.1" {
			t.Errorf("a used at %v from %v", ga["lastUsedAt"], ga["lastUsedIp"])
		}
		gb := e.do("GET", "/api-keys/"+b["id"].(string), adminToken, nil).obj(t)
		if gb["lastUsedIp"] != "127.0.0.1" || gb["lastUsedAt"] == nil {
			t.Errorf("b used at %v from %v, want the caller's address", gb["lastUsedAt"], gb["lastUsedIp"])
		}
	})
}

// TestPaginationFollowsLinkHeaders lists keys page by page through the Link header.
func TestPaginationFollowsLinkHeaders(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		var want []string
		for i := 0; i < 7; i++ {
			intended := []string{"ci-cd", "backup"}[i%2]
			want = append([]string{e.create(map[string]any{"name": fmt.Sprint(i), "intendedUse": intended})["id"].(string)}, want...)
			e.clock.Advance(time.Millisecond)
		}
		next := regexp.MustCompile(`^<([^>]+)>; rel="next"$`)
		var got []string
		path := "/api-keys?limit=3"
		for pages := 1; ; pages++ {
			r := e.do("GET", path, adminToken, nil)
			var list []map[string]any
			r.JSON(t, &list)
			for _, k := range list {
				got = append(got, k["id"].(string))
			}
			link := r.Header.Get("Link")
			if link == "" {
				if pages != 3 {
					t.Errorf("%d pages, want 3", pages)
				}
				break
			}
			m := next.FindStringSubmatch(link)
			if m == nil || pages > 3 {
				t.Fatalf("Link = %q", link)
			}
			path = m[1]
		}
		if !slices.Equal(got, want) {
			t.Errorf("paged ids =\n%v\nwant newest first\n%v", got, want)
		}
		// Filters survive into the next page's link.
		r := e.do("GET", "/api-keys?limit=2&intendedUse=backup", adminToken, nil)
		u, err := url.Parse(strings.Trim(strings.TrimSuffix(r.Header.Get("Link"), `; rel="next"`), "<>"))
		if err != nil || u.Query().Get("intendedUse") != "backup" || u.Query().Get("cursor") == "" {
			t.Errorf("Link = %q", r.Header.Get("Link"))
		}
	})
}

// TestLifecycleIsVisible: the admin's subject answers like any other; a key in its rotation
// grace says so (replacedById, expiresAt at the grace's end); a replacement keeps the old
// expiry unless the rotation sets one, within the caller's rights; an expired key is not
// brought back by a new expiry.
func TestLifecycleIsVisible(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		r := e.do("GET", "/subjects/"+apikeys.AdminSubjectID, adminToken, nil)
		if s := r.obj(t); r.Status != 200 || s["id"] != apikeys.AdminSubjectID || s["type"] != "admin" || s["tenantId"] != nil {
			t.Errorf("GET /subjects/subject_admin: %d %s", r.Status, r.Body)
		}
		k := e.create(map[string]any{"name": "k", "expiresAt": e.clock.Now().Add(48 * time.Hour)})
		if k["createdBySubjectId"] != apikeys.AdminSubjectID {
			t.Fatalf("createdBySubjectId = %v", k["createdBySubjectId"])
		}

		// During the grace: replacedById and the grace's end as expiresAt; status active.
		start := e.clock.Now()
		r = e.do("POST", "/api-keys/"+k["id"].(string)+"/rotate", adminToken, map[string]any{"gracePeriodSeconds": 3600})
		if r.Status != 201 {
			t.Fatalf("rotate: %d %s", r.Status, r.Body)
		}
		repl := r.obj(t)
		if repl["expiresAt"] != k["expiresAt"] {
			t.Errorf("the replacement's expiresAt %v, want the old key's %v", repl["expiresAt"], k["expiresAt"])
		}
		old := e.do("GET", "/api-keys/"+k["id"].(string), adminToken, nil).obj(t)
		graceEnd, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(old["expiresAt"]))
		if old["status"] != "active" || old["replacedById"] != repl["id"] || !graceEnd.Equal(start.Add(time.Hour)) {
			t.Errorf("the old key in its grace: %v; want active, replacedById %v, expiresAt %v", old, repl["id"], start.Add(time.Hour))
		}

		// The rotation sets the replacement's expiry; a key may not give one past its own.
		later := e.clock.Now().Add(24 * time.Hour).Truncate(time.Second)
		k2 := e.create(map[string]any{"name": "k2"})
		r = e.do("POST", "/api-keys/"+k2["id"].(string)+"/rotate", adminToken, map[string]any{"expiresAt": later})
		if got, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(r.obj(t)["expiresAt"])); r.Status != 201 || !got.Equal(later) {
			t.Errorf("rotate with expiresAt: %d %s, want expiresAt %v", r.Status, r.Body, later)
		}
		bearer := e.create(map[string]any{"name": "b", "scopes": []string{"api_keys:write", "api_keys:read"}, "expiresAt": e.clock.Now().Add(time.Hour)})
		k3 := e.create(map[string]any{"name": "k3"})
		if r := e.do("POST", "/api-keys/"+k3["id"].(string)+"/rotate", bearer["secretKey"].(string), map[string]any{"expiresAt": later}); r.Status != 403 {
			t.Errorf("a key living an hour rotating to an expiry a day away: %d %s, want 403", r.Status, r.Body)
		}

		// An expired key stays expired: a new expiry (or none) is refused, other fields change.
		x := e.create(map[string]any{"name": "x", "expiresAt": e.clock.Now().Add(time.Minute)})
		e.clock.Advance(2 * time.Minute)
		path := "/api-keys/" + x["id"].(string)
		before := e.do("GET", path, adminToken, nil).Body
		for _, exp := range []any{nil, e.clock.Now().Add(time.Hour)} {
			r := e.do("PATCH", path, adminToken, map[string]any{"expiresAt": exp})
			if r.Status != 409 || !strings.Contains(string(r.Body), "expired") {
				t.Errorf("PATCH expiresAt %v of an expired key: %d %s, want 409", exp, r.Status, r.Body)
			}
		}
		if after := e.do("GET", path, adminToken, nil).Body; string(after) != string(before) {
			t.Errorf("a refused renewal changed the key:\n%s\n%s", before, after)
		}
		if v := e.verify(map[string]any{"key": x["secretKey"]}); v["code"] != "EXPIRED" {
			t.Errorf("the expired key verifies %v", v)
		}
		if r := e.do("PATCH", path, adminToken, map[string]any{"name": "x, retired"}); r.Status != 200 || r.obj(t)["status"] != "expired" {
			t.Errorf("renaming an expired key: %d %s", r.Status, r.Body)
		}
	})
}
