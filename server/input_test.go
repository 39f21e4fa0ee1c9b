package server_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	apikeys "github.com/qs/apikeys"
	"github.com/qs/apikeys/internal/testdb"
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
			{"year 10000 in UTC", "POST", "/api-keys", map[string]any{"name": "x", "expiresAt": "9999-12-31T23:59:59-23:59"}, 400, "/expiresAt"},
			{"NUL in name", "POST", "/api-keys", map[string]any{"name": "a\x00b"}, 400, "/name"},
			{"control character in name", "POST", "/api-keys", map[string]any{"name": "a\nb"}, 400, "/name"},
			{"NUL in description", "POST", "/api-keys", map[string]any{"name": "x", "description": "x\x00"}, 400, "/description"},
			{"body over 64 KiB", "POST", "/api-keys", map[string]any{"name": "x", "metadata": map[string]any{"a": strings.Repeat("x", 70<<10)}}, 413, ""},
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
			{"misspelt filter", "GET", "/api-keys?tenantid=nobody", nil, 400, "tenantid"},
			{"repeated parameter", "GET", "/api-keys?limit=1&limit=2", nil, 400, "limit"},
			{"empty parameter", "GET", "/api-keys?tenantId=", nil, 400, "tenantId"},
			{"query on a key", "GET", key + "?verbose=1", nil, 400, "verbose"},
			{"empty patch", "PATCH", key, map[string]any{}, 400, "/"},
			{"patch unknown field", "PATCH", key, map[string]any{"status": "active"}, 400, "/"},
			{"patch null name", "PATCH", key, map[string]any{"name": nil}, 400, "/name"},
			{"patch past expiry", "PATCH", key, map[string]any{"expiresAt": past}, 400, "/expiresAt"},
			{"patch oversize metadata", "PATCH", key, map[string]any{"metadata": map[string]any{"a": strings.Repeat("x", 4100)}}, 400, "/metadata"},
			{"revoke unknown field", "POST", key + "/revoke", map[string]any{"why": "x"}, 400, "/"},
			{"revoke empty reason", "POST", key + "/revoke", map[string]any{"reason": ""}, 400, "/reason"},
			{"revoke NUL reason", "POST", key + "/revoke", map[string]any{"reason": "\x00"}, 400, "/reason"},
			{"patch NUL name", "PATCH", key, map[string]any{"name": "\x00"}, 400, "/name"},
			{"rotate NUL name", "POST", key + "/rotate", map[string]any{"name": "x\x00"}, 400, "/name"},
			{"patch year 10000", "PATCH", key, map[string]any{"expiresAt": "9999-12-31T23:59:59-01:00"}, 400, "/expiresAt"},
			{"rotate negative grace", "POST", key + "/rotate", map[string]any{"gracePeriodSeconds": -1}, 400, "/gracePeriodSeconds"},
			{"rotate long grace", "POST", key + "/rotate", map[string]any{"gracePeriodSeconds": 2592001}, 400, "/gracePeriodSeconds"},
			{"rotate fractional grace", "POST", key + "/rotate", map[string]any{"gracePeriodSeconds": 1.5}, 400, "/gracePeriodSeconds"},
			{"rotate grace in exponent notation", "POST", key + "/rotate", `{"gracePeriodSeconds":1e3}`, 400, "/gracePeriodSeconds"},
			{"rotate grace past int64 seconds", "POST", key + "/rotate", `{"gracePeriodSeconds":18446744074}`, 400, "/gracePeriodSeconds"},
			{"rotate past expiry", "POST", key + "/rotate", map[string]any{"expiresAt": past}, 400, "/expiresAt"},
			{"verify without key", "POST", "/api-keys/verify", map[string]any{"clientIp": "1.2.3.4"}, 400, "/key"},
			{"verify bad ip", "POST", "/api-keys/verify", map[string]any{"key": "x", "clientIp": "not-an-ip"}, 400, "/clientIp"},
			{"verify long key", "POST", "/api-keys/verify", map[string]any{"key": strings.Repeat("k", 257)}, 400, "/key"},
			{"verify zoned ip", "POST", "/api-keys/verify", map[string]any{"key": "x", "clientIp": "fe80::1%eth0"}, 400, "/clientIp"},
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
			if strings.Contains(string(r.Body), "Go ") || strings.Contains(string(r.Body), "struct") {
				t.Errorf("%s: the problem speaks of Go types: %s", tt.name, r.Body)
			}
			if tt.field != "" && !hasField(t, r, tt.field) {
				t.Errorf("%s: errors do not name %q: %s", tt.name, tt.field, r.Body)
			}
			checkSentences(t, tt.name, r)
		}
		if after := snapshot(t, e); after != before {
			t.Errorf("bad input changed stored keys:\nbefore %s\nafter  %s", before, after)
		}
	})
}

// checkSentences holds a problem's field errors to one sentence a field, with plain numbers.
func checkSentences(t *testing.T, name string, r *resp) {
	t.Helper()
	var p struct {
		Errors []struct{ In, Field, Detail string } `json:"errors"`
	}
	r.JSON(t, &p)
	seen := map[string]bool{}
	for _, f := range p.Errors {
		if seen[f.In+" "+f.Field] {
			t.Errorf("%s: %s %s is named twice for one mistake: %s", name, f.In, f.Field, r.Body)
		}
		seen[f.In+" "+f.Field] = true
		if floatNotation.MatchString(f.Detail) || strings.Contains(f.Detail, " 1 properties") || strings.Contains(f.Detail, " 1 items") {
			t.Errorf("%s: %s %s: %q is not a sentence with plain numbers", name, f.In, f.Field, f.Detail)
		}
	}
}

var floatNotation = regexp.MustCompile(`\d[eE][+-]?\d`)

// TestFieldErrorsSayWhatIsWanted: the rule a value breaks is said as a sentence with the
// bound as written in openapi.yaml, once a field.
func TestFieldErrorsSayWhatIsWanted(t *testing.T) {
	e := newEnv(t, testdb.SQLite, fastHash)
	key := "/api-keys/" + e.create(map[string]any{"name": "k"})["id"].(string)
	for _, tt := range []struct {
		method, path string
		body         any
		field, want  string
	}{
		{"POST", "/api-keys", map[string]any{"name": ""}, "/name", "must not be empty"},
		{"POST", "/api-keys", map[string]any{"name": strings.Repeat("n", 201)}, "/name", "must be at most 200 characters long"},
		{"POST", key + "/rotate", map[string]any{"gracePeriodSeconds": 2592001}, "/gracePeriodSeconds", "must be at most 2592000"},
		{"POST", key + "/rotate", map[string]any{"gracePeriodSeconds": -1}, "/gracePeriodSeconds", "must be at least 0"},
		{"PATCH", key, map[string]any{}, "/", "must set at least 1 field"},
		{"POST", "/api-keys", map[string]any{"name": "x", "scopes": []string{"api_keys:read", "api_keys:read"}}, "/scopes", "must not hold the same item twice"},
	} {
		r := e.do(tt.method, tt.path, adminToken, tt.body)
		var p struct {
			Errors []struct{ Field, Detail string } `json:"errors"`
		}
		r.JSON(t, &p)
		if r.Status != 400 || len(p.Errors) != 1 || p.Errors[0].Field != tt.field || p.Errors[0].Detail != tt.want {
			t.Errorf("%s %s %v: %d %s, want one error %s: %q", tt.method, tt.path, tt.body, r.Status, r.Body, tt.field, tt.want)
		}
	}
}

func snapshot(t *testing.T, e *env) string {
	t.Helper()
	keys, _, err := e.store.ListKeys(context.Background(), apikeys.KeyFilter{Limit: 1000, Now: e.clock.Now()})
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

// TestHashParametersCanChange issues a key under the OWASP parameters (the default of
// earlier versions), restarts the service on the defaults (sized for generated secrets), and
// checks that the old key still verifies (its PHC string carries its parameters) and is
// rehashed under the new ones on that first verification, while new keys get the new ones
// from the start; and that a server on the old parameters still verifies the rehashed key.
func TestHashParametersCanChange(t *testing.T) {
	for _, engine := range testdb.Engines(t) {
		t.Run(engine, func(t *testing.T) { hashParametersCanChange(t, newEnv(t, engine, keys.OWASPParams())) })
	}
}

func hashParametersCanChange(t *testing.T, e *env) {
	{
		old := e.create(map[string]any{"name": "old"})
		stored := func(id string) string {
			k, err := e.store.GetKey(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(k.Hash, "qs_live_") {
				t.Fatalf("stored hash %q holds the secret", k.Hash)
			}
			return k.Hash
		}
		if h := stored(old["id"].(string)); !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
			t.Fatalf("stored hash %q, want the OWASP parameters", h)
		}
		restarted := newServerWith(t, e.store, keys.DefaultParams())
		restarted.clock.Set(e.clock.Now())
		for i := 0; i < 2; i++ {
			if v := restarted.verify(map[string]any{"key": old["secretKey"]}); v["code"] != "VALID" {
				t.Errorf("a key hashed under the old parameters, verification %d: %v", i, v)
			}
		}
		fresh := restarted.create(map[string]any{"name": "new"})
		if v := restarted.verify(map[string]any{"key": fresh["secretKey"]}); v["code"] != "VALID" {
			t.Errorf("a key hashed under the defaults: %v", v)
		}
		for _, id := range []string{old["id"].(string), fresh["id"].(string)} {
			if h := stored(id); !strings.HasPrefix(h, "$argon2id$v=19$m=64,t=1,p=1$") {
				t.Errorf("stored hash %q, want the defaults (rehashed on verification)", h)
			}
		}
		if n := restarted.svc.Stats().Rehashed.Load(); n != 1 {
			t.Errorf("%d rehashes, want 1", n)
		}
		// The first server, on the old parameters, still verifies the rehashed key.
		if v := e.verify(map[string]any{"key": old["secretKey"]}); v["code"] != "VALID" {
			t.Errorf("the rehashed key on the first server: %v", v)
		}
	}
}

// TestValuesAreKeptAsStored: timestamps come back in UTC at the stored precision from
// every endpoint, and metadata comes back byte for byte, big numbers included.
func TestValuesAreKeptAsStored(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		body := `{"name":"n","expiresAt":"2030-01-01T05:00:00.123456789+05:00",` +
			`"metadata":{"z":1,"n":12345678901234567890,"m":9007199254740993,"s":"a\u0000b","a":[1.50,{"b":null}]}}`
		r := e.do("POST", "/api-keys", adminToken, body)
		if r.Status != 201 {
			t.Fatalf("create: %d %s", r.Status, r.Body)
		}
		const wantExp = `"expiresAt":"2030-01-01T00:00:00.123456Z"`
		const wantMeta = `"metadata":{"z":1,"n":12345678901234567890,"m":9007199254740993,"s":"a\u0000b","a":[1.50,{"b":null}]}`
		id := r.obj(t)["id"].(string)
		secret := r.obj(t)["secretKey"].(string)
		got := e.do("GET", "/api-keys/"+id, adminToken, nil)
		v := e.do("POST", "/api-keys/verify", adminToken, map[string]any{"key": secret})
		for name, b := range map[string][]byte{"create": r.Body, "get": got.Body, "verify": v.Body} {
			if !bytes.Contains(b, []byte(wantExp)) || !bytes.Contains(b, []byte(wantMeta)) {
				t.Errorf("%s: want %s and %s in\n%s", name, wantExp, wantMeta, b)
			}
		}
		p := e.do("PATCH", "/api-keys/"+id, adminToken, `{"expiresAt":"2031-06-01T12:00:00.999999999-02:00","metadata":{"k": 1e2}}`)
		if !bytes.Contains(p.Body, []byte(`"expiresAt":"2031-06-01T14:00:00.999999Z"`)) || !bytes.Contains(p.Body, []byte(`"metadata":{"k":1e2}`)) {
			t.Errorf("patch: %s", p.Body)
		}
		if g := e.do("GET", "/api-keys/"+id, adminToken, nil); !bytes.Equal(g.Body, p.Body) {
			t.Errorf("GET after PATCH differs from the PATCH response:\n%s\n%s", g.Body, p.Body)
		}
	})
}

// TestKeysCannotWidenWhatTheyHold: a key cannot revive, extend or otherwise change a key
// that holds scopes it lacks, nor change its own expiry; refused requests do not count
// as uses of the key.
func TestKeysCannotWidenWhatTheyHold(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		strong := e.create(map[string]any{"name": "strong", "tenantId": "t", "scopes": allScopes, "expiresAt": e.clock.Now().Add(time.Minute)})
		writer := e.create(map[string]any{"name": "writer", "tenantId": "t", "scopes": []string{"api_keys:write"}, "expiresAt": e.clock.Now().Add(time.Hour)})
		w := writer["secretKey"].(string)
		e.clock.Advance(2 * time.Minute) // strong has expired
		for _, tt := range []struct {
			name string
			path string
			body map[string]any
		}{
			{"revive a stronger key", "/api-keys/" + strong["id"].(string), map[string]any{"expiresAt": nil}},
			{"rename a stronger key", "/api-keys/" + strong["id"].(string), map[string]any{"name": "mine"}},
			{"extend its own expiry", "/api-keys/" + writer["id"].(string), map[string]any{"expiresAt": nil}},
		} {
			if r := e.do("PATCH", tt.path, w, tt.body); r.Status != 403 {
				t.Errorf("%s: %d, want 403 (%s)", tt.name, r.Status, r.Body)
			}
		}
		if got := e.do("GET", "/api-keys/"+strong["id"].(string), adminToken, nil).obj(t); got["status"] != "expired" || got["name"] != "strong" {
			t.Errorf("the stronger key changed: %v", got)
		}
		// A key it may change (no stronger scopes) is fine, expiry included, within its own.
		weak := e.create(map[string]any{"name": "weak", "tenantId": "t", "scopes": []string{"api_keys:write"}})
		if r := e.do("PATCH", "/api-keys/"+weak["id"].(string), w, map[string]any{"expiresAt": e.clock.Now().Add(30 * time.Minute)}); r.Status != 200 {
			t.Errorf("changing a weaker key: %d %s", r.Status, r.Body)
		}
		// The refused requests above were not uses; only the accepted one is.
		idle := e.create(map[string]any{"name": "idle", "tenantId": "t"})
		e.do("GET", "/api-keys", idle["secretKey"].(string), nil) // 403: no scope
		if err := e.svc.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := e.do("GET", "/api-keys/"+idle["id"].(string), adminToken, nil).obj(t); got["lastUsedAt"] != nil {
			t.Errorf("a refused request was recorded as a use: %v", got["lastUsedAt"])
		}
		if got := e.do("GET", "/api-keys/"+writer["id"].(string), adminToken, nil).obj(t); got["lastUsedAt"] == nil {
			t.Error("an accepted request was not recorded as a use")
		}
	})
}

// TestAuthorizationHeaderIsUnambiguous: exactly one header with exactly one token.
func TestAuthorizationHeaderIsUnambiguous(t *testing.T) {
	e := newEnv(t, "sqlite", fastHash)
	for _, tt := range []struct {
		headers []string
		status  int
	}{
		{[]string{"Bearer " + adminToken}, 200},
		{[]string{"bearer   " + adminToken + "  "}, 200},
		{[]string{"Bearer " + adminToken, "Bearer junk"}, 401},
		{[]string{"Bearer junk", "Bearer " + adminToken}, 401},
		{[]string{"Bearer " + adminToken + " extra"}, 401},
		{[]string{"Basic " + adminToken}, 401},
		{[]string{adminToken}, 401},
		{[]string{"Bearer"}, 401},
	} {
		req, _ := http.NewRequest("GET", e.http.URL+"/api-keys", nil)
		for _, h := range tt.headers {
			req.Header.Add("Authorization", h)
		}
		if r := e.send(req); r.Status != tt.status {
			t.Errorf("Authorization %q: %d, want %d", tt.headers, r.Status, tt.status)
		}
	}
	// Media types compare case-insensitively; a charset other than UTF-8, or another type,
	// is 415 and creates nothing.
	for _, tt := range []struct {
		contentType string
		status      int
	}{
		{"application/JSON", 201},
		{"Application/Json; Charset=UTF-8", 201},
		{"application/json;charset=utf-8", 201},
		{"application/json; charset=iso-8859-1", 415},
		{"application/json; charset=utf-16", 415},
		{"application/json; version=2", 415},
		{"text/plain", 415},
		{"application/x-www-form-urlencoded", 415},
		{"application/json; charset", 415},
	} {
		req, _ := http.NewRequest("POST", e.http.URL+"/api-keys", strings.NewReader(`{"name":"x"}`))
		req.Header.Set("Authorization", "Bearer "+adminToken)
		req.Header.Set("Content-Type", tt.contentType)
		r := e.send(req)
		if r.Status != tt.status || (r.Status == 415 && !hasField(t, r, "Content-Type")) {
			t.Errorf("Content-Type %s: %d, want %d (%s)", tt.contentType, r.Status, tt.status, r.Body)
		}
	}
	if n := e.count(); n != 3 {
		t.Errorf("%d keys after three accepted and six refused media types, want 3", n)
	}
}
