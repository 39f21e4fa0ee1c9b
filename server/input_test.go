package server_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/qs/apikeys/keys"
	"github.com/qs/apikeys/store"
)

// TestBadInputIsRejectedAndChangesNothing sends malformed, mistyped and out-of-bounds
// requests to every endpoint: each gets a 4xx problem naming the field, and afterwards
// every stored key is exactly as it was.
func TestBadInputIsRejectedAndChangesNothing(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		k := e.create(map[string]any{"name": "k", "description": "d", "metadata": map[string]any{"a": 1}})
		id := k["id"].(string)
		key := "/api-keys/" + id
		manyProps := map[string]any{}
		for i := 0; i < 51; i++ {
			manyProps[fmt.Sprint("p", i)] = i
		}
		past := e.clock.Now().Add(-time.Second).Format(time.RFC3339)
		tests := []struct {
			name, method, path string
			body               any
			status             int
			field              string // in the problem's errors, when the rule is a field's
		}{
			{"malformed JSON", "POST", "/api-keys", `{"name": "x",`, 400, ""},
			{"not an object", "POST", "/api-keys", `["name"]`, 400, "/"},
			{"unknown field", "POST", "/api-keys", map[string]any{"name": "x", "secretKey": "mine"}, 400, "/"},
			{"wrong type", "POST", "/api-keys", map[string]any{"name": 5}, 400, "/name"},
			{"missing name", "POST", "/api-keys", map[string]any{"description": "x"}, 400, "/name"},
			{"blank name", "POST", "/api-keys", map[string]any{"name": "   "}, 400, "/name"},
			{"long name", "POST", "/api-keys", map[string]any{"name": strings.Repeat("n", 201)}, 400, "/name"},
			{"bad id", "POST", "/api-keys", map[string]any{"name": "x", "id": "apk_nope"}, 400, "/id"},
			{"taken id", "POST", "/api-keys", map[string]any{"name": "x", "id": id}, 409, ""},
			{"bad tenant", "POST", "/api-keys", map[string]any{"name": "x", "tenantId": "a b"}, 400, "/tenantId"},
			{"unknown scope", "POST", "/api-keys", map[string]any{"name": "x", "scopes": []string{"admin"}}, 400, "/scopes"},
			{"repeated scope", "POST", "/api-keys", map[string]any{"name": "x", "scopes": []string{"api_keys:read", "api_keys:read"}}, 400, "/scopes"},
			{"past expiry", "POST", "/api-keys", map[string]any{"name": "x", "expiresAt": past}, 400, "/expiresAt"},
			{"bad date", "POST", "/api-keys", map[string]any{"name": "x", "expiresAt": "tomorrow"}, 400, "/expiresAt"},
			{"metadata not an object", "POST", "/api-keys", map[string]any{"name": "x", "metadata": "x"}, 400, "/metadata"},
			{"oversize metadata", "POST", "/api-keys", map[string]any{"name": "x", "metadata": map[string]any{"a": strings.Repeat("x", 4100)}}, 400, "/metadata"},
			{"metadata with too many properties", "POST", "/api-keys", map[string]any{"name": "x", "metadata": manyProps}, 400, "/metadata"},
			{"no body", "POST", "/api-keys", nil, 400, ""},
			{"text body", "POST", "/api-keys", "name=x", 400, ""},
			{"huge body", "POST", "/api-keys", `{"name":"` + strings.Repeat("x", 2<<20) + `"}`, 413, ""},
			{"bad path id", "GET", "/api-keys/nope", nil, 400, "id"},
			{"upper-case path id", "GET", strings.ToUpper(key), nil, 404, ""},
			{"unknown key", "GET", "/api-keys/apk_0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", nil, 404, ""},
			{"limit 0", "GET", "/api-keys?limit=0", nil, 400, "limit"},
			{"limit 101", "GET", "/api-keys?limit=101", nil, 400, "limit"},
			{"limit word", "GET", "/api-keys?limit=ten", nil, 400, "limit"},
			{"bad status", "GET", "/api-keys?status=paused", nil, 400, "status"},
			{"bad cursor", "GET", "/api-keys?cursor=bm9wZQ", nil, 400, "cursor"},
			{"cursor junk", "GET", "/api-keys?cursor=%%%", nil, 400, ""},
			{"bad subject filter", "GET", "/api-keys?subjectId=jane", nil, 400, "subjectId"},
			{"empty patch", "PATCH", key, map[string]any{}, 400, "/"},
			{"patch unknown field", "PATCH", key, map[string]any{"status": "active"}, 400, "/"},
			{"patch null name", "PATCH", key, map[string]any{"name": nil}, 400, "/name"},
			{"patch past expiry", "PATCH", key, map[string]any{"expiresAt": past}, 400, "/expiresAt"},
			{"patch oversize metadata", "PATCH", key, map[string]any{"metadata": map[string]any{"a": strings.Repeat("x", 4100)}}, 400, "/metadata"},
			{"revoke unknown field", "POST", key + "/revoke", map[string]any{"why": "x"}, 400, "/"},
			{"revoke empty reason", "POST", key + "/revoke", map[string]any{"reason": ""}, 400, "/reason"},
			{"rotate negative grace", "POST", key + "/rotate", map[string]any{"gracePeriodSeconds": -1}, 400, "/gracePeriodSeconds"},
			{"rotate long grace", "POST", key + "/rotate", map[string]any{"gracePeriodSeconds": 2592001}, 400, "/gracePeriodSeconds"},
			{"rotate fractional grace", "POST", key + "/rotate", map[string]any{"gracePeriodSeconds": 1.5}, 400, "/gracePeriodSeconds"},
			{"rotate past expiry", "POST", key + "/rotate", map[string]any{"expiresAt": past}, 400, "/expiresAt"},
			{"verify without key", "POST", "/api-keys/verify", map[string]any{"clientIp": "1.2.3.4"}, 400, "/key"},
			{"verify bad ip", "POST", "/api-keys/verify", map[string]any{"key": "x", "clientIp": "not-an-ip"}, 400, "/clientIp"},
			{"verify long key", "POST", "/api-keys/verify", map[string]any{"key": strings.Repeat("k", 257)}, 400, "/key"},
			{"bad subject id", "GET", "/subjects/jane", nil, 400, "id"},
			{"unknown subject", "GET", "/subjects/subject_nobody", nil, 404, ""},
			{"unknown endpoint", "GET", "/keys", nil, 404, ""},
			{"wrong method", "DELETE", key, nil, 405, ""},
		}
		before := snapshot(t, e)
		for _, tt := range tests {
			r := e.do(tt.method, tt.path, adminToken, tt.body)
			if r.Status != tt.status {
				t.Errorf("%s: %d, want %d (%s)", tt.name, r.Status, tt.status, r.Body)
				continue
			}
			p := r.obj(t)
			if p["status"] != float64(tt.status) || p["title"] == "" || p["detail"] == "" {
				t.Errorf("%s: problem = %v", tt.name, p)
			}
			if tt.field != "" && !hasField(t, r, tt.field) {
				t.Errorf("%s: errors do not name %q: %s", tt.name, tt.field, r.Body)
			}
		}
		if after := snapshot(t, e); after != before {
			t.Errorf("bad input changed stored keys:\nbefore %s\nafter  %s", before, after)
		}
	})
}

func snapshot(t *testing.T, e *env) string {
	t.Helper()
	keys, _, err := e.store.ListKeys(context.Background(), store.Filter{Limit: 1000, Now: e.clock.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%+v", keys)
}

// TestUpdateAndRevoke covers PATCH semantics and idempotent revocation.
func TestUpdateAndRevoke(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		k := e.create(map[string]any{"name": "k", "description": "d", "intendedUse": "ci-cd", "metadata": map[string]any{"a": 1}})
		path := "/api-keys/" + k["id"].(string)
		e.clock.Advance(time.Second)
		exp := e.clock.Now().Add(24 * time.Hour).Format(time.RFC3339)
		r := e.do("PATCH", path, adminToken, map[string]any{"name": "renamed", "description": nil, "metadata": map[string]any{"b": "2"},
			"expiresAt": exp, "scopes": []string{"api_keys:verify"}})
		if r.Status != 200 {
			t.Fatalf("patch: %d %s", r.Status, r.Body)
		}
		got := r.obj(t)
		if got["name"] != "renamed" || got["description"] != nil || jsonOf(got["metadata"]) != `{"b":"2"}` || got["expiresAt"] != exp ||
			jsonOf(got["scopes"]) != `["api_keys:verify"]` || got["intendedUse"] != "ci-cd" || got["updatedAt"] == got["createdAt"] {
			t.Errorf("patched = %v", got)
		}
		if again := e.do("GET", path, adminToken, nil).obj(t); jsonOf(again) != jsonOf(got) {
			t.Errorf("GET after PATCH =\n%v\nwant\n%v", again, got)
		}
		r = e.do("PATCH", path, adminToken, map[string]any{"expiresAt": nil, "metadata": nil, "intendedUse": nil})
		if got := r.obj(t); got["expiresAt"] != nil || got["metadata"] != nil || got["intendedUse"] != nil || got["name"] != "renamed" {
			t.Errorf("cleared = %v", got)
		}

		first := e.do("POST", path+"/revoke", adminToken, map[string]any{"reason": "leaked"}).obj(t)
		e.clock.Advance(time.Minute)
		second := e.do("POST", path+"/revoke", adminToken, map[string]any{"reason": "again"})
		if second.Status != 200 || jsonOf(second.obj(t)) != jsonOf(first) {
			t.Errorf("second revoke changed the key:\n%s\nwant\n%s", second.Body, jsonOf(first))
		}
		if first["status"] != "revoked" || first["revokedReason"] != "leaked" || first["revokedBySubjectId"] != "subject_admin" {
			t.Errorf("revoked = %v", first)
		}
		if r := e.do("PATCH", path, adminToken, map[string]any{"name": "zombie"}); r.Status != 409 {
			t.Errorf("patching a revoked key: %d, want 409", r.Status)
		}
		// Revocation needs no body at all.
		other := e.create(map[string]any{"name": "o"})
		req, _ := http.NewRequest("POST", e.http.URL+"/api-keys/"+other["id"].(string)+"/revoke", nil)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		if r := e.send(req); r.Status != 200 {
			t.Errorf("revoke without a body: %d %s", r.Status, r.Body)
		}
	})
}

// failingPing is a store whose database has gone away.
type failingPing struct{ *store.Store }

func (failingPing) Ping(context.Context) error { return errors.New("connection refused") }

// TestReadinessAndSpec: /readyz follows the database; /openapi.yaml is the contract.
func TestReadinessAndSpec(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		if r := e.do("GET", "/readyz", "", nil); r.Status != 200 {
			t.Errorf("readyz: %d", r.Status)
		}
		r := e.do("GET", "/openapi.yaml", "", nil)
		if !bytes.HasPrefix(r.Body, []byte("openapi: 3.0")) || r.Header.Get("Content-Type") != "application/yaml" {
			t.Errorf("openapi.yaml: %s %.40s", r.Header.Get("Content-Type"), r.Body)
		}
	})
	e := newEnv(t, "sqlite", fastHash)
	down := newServerWith(t, failingPing{e.store}, fastHash)
	r := down.do("GET", "/readyz", "", nil)
	if r.Status != 503 || strings.Contains(string(r.Body), "refused") {
		t.Errorf("readyz with the database down: %d %s", r.Status, r.Body)
	}
}

// TestHashParametersCanChange issues a key under cheap argon2id parameters, restarts the
// service on the production defaults, and checks that the old key still verifies (its
// PHC string carries its parameters) while new keys get the new ones.
func TestHashParametersCanChange(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		old := e.create(map[string]any{"name": "old"})
		restarted := newServerWith(t, e.store, keys.DefaultParams())
		restarted.clock.Set(e.clock.Now())
		if v := restarted.verify(map[string]any{"key": old["secretKey"]}); v["code"] != "VALID" {
			t.Errorf("a key hashed under the old parameters: %v", v)
		}
		fresh := restarted.create(map[string]any{"name": "new"})
		if v := restarted.verify(map[string]any{"key": fresh["secretKey"]}); v["code"] != "VALID" {
			t.Errorf("a key hashed under the defaults: %v", v)
		}
		for id, want := range map[string]string{old["id"].(string): "m=64,t=1,p=1", fresh["id"].(string): "m=19456,t=2,p=1"} {
			k, err := e.store.GetKey(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(k.Hash, "$argon2id$v=19$"+want+"$") || strings.Contains(k.Hash, "qs_live_") {
				t.Errorf("stored hash %q, want parameters %s", k.Hash, want)
			}
		}
	})
}
