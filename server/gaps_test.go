package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"
)

// Regression tests for rules that were once missing: each holds one rule of "who may call
// what" or of the input rules to its behaviour at the HTTP edge, on every database.

// in is e reporting to t, for use inside a subtest (a subtest may not stop its parent).
func (e *env) in(t *testing.T) *env {
	c := *e
	c.t = t
	return &c
}

// expectStatus checks that r answered status and, for an error, a problem that names field
// when field is not "". It reports under what.
func expectStatus(t *testing.T, what string, r *resp, status int, field string) bool {
	t.Helper()
	if r.Status != status {
		t.Errorf("%s: %d, want %d (%s)", what, r.Status, status, r.Body)
		return false
	}
	if status < 400 {
		return true
	}
	p := r.obj(t)
	if p["status"] != float64(status) || p["title"] == "" || p["detail"] == "" {
		t.Errorf("%s: problem = %v", what, p)
	}
	if field != "" && !hasField(t, r, field) {
		t.Errorf("%s: errors do not name %q: %s", what, field, r.Body)
		return false
	}
	return true
}

// adminGet is the admin's view of a key.
func (e *env) adminGet(id string) map[string]any {
	e.t.Helper()
	r := e.do("GET", "/api-keys/"+id, adminToken, nil)
	if r.Status != http.StatusOK {
		e.t.Fatalf("GET %s: %d %s", id, r.Status, r.Body)
	}
	return r.obj(e.t)
}

// changesNothing runs fn and reports under what if any stored key changed meanwhile.
func changesNothing(t *testing.T, e *env, what string, fn func()) {
	t.Helper()
	before := snapshot(t, e)
	fn()
	if after := snapshot(t, e); after != before {
		t.Errorf("%s changed stored keys:\nbefore %s\nafter  %s", what, before, after)
	}
}

// TestRevokeNeedsTheTargetsScopes: a key with api_keys:write cannot revoke a key holding a
// scope it lacks; it can revoke one whose scopes it holds.
func TestRevokeNeedsTheTargetsScopes(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		writer := e.create(map[string]any{"name": "writer", "scopes": []string{"api_keys:write"}})
		w := writer["secretKey"].(string)
		for _, scopes := range [][]string{{"api_keys:read"}, {"api_keys:verify"}, allScopes, {"api_keys:write", "api_keys:read"}} {
			t.Run(fmt.Sprintf("stronger %v", scopes), func(t *testing.T) {
				e := e.in(t)
				target := e.create(map[string]any{"name": "stronger", "scopes": scopes})
				id := target["id"].(string)
				changesNothing(t, e, "a refused revocation", func() {
					expectStatus(t, "revoke a key holding "+jsonOf(scopes), e.do("POST", "/api-keys/"+id+"/revoke", w, map[string]any{"reason": "mine now"}), 403, "")
				})
				if got := e.adminGet(id); got["status"] != "active" || got["revokedAt"] != nil || got["revokedBySubjectId"] != nil {
					t.Errorf("the stronger key after a refused revocation: %v", got)
				}
				if v := e.verify(map[string]any{"key": target["secretKey"]}); v["code"] != "VALID" {
					t.Errorf("the stronger key verifies as %v", v)
				}
			})
		}
		for _, scopes := range [][]string{{}, {"api_keys:write"}} {
			t.Run(fmt.Sprintf("held %v", scopes), func(t *testing.T) {
				e := e.in(t)
				target := e.create(map[string]any{"name": "held", "scopes": scopes})
				r := e.do("POST", "/api-keys/"+target["id"].(string)+"/revoke", w, map[string]any{"reason": "done"})
				if expectStatus(t, "revoke a key holding "+jsonOf(scopes), r, 200, "") {
					if got := r.obj(t); got["status"] != "revoked" || got["revokedBySubjectId"] != writer["subjectId"] || got["revokedReason"] != "done" {
						t.Errorf("revoked = %v", got)
					}
				}
			})
		}
	})
}

// TestLifetimeCannotOutliveTheCaller: a caller with an expiry gives no key (created, batch,
// updated or rotated, its own replacement included) a later expiry than its own, nor none.
// An equal or earlier one is fine; a caller without expiry and the admin are unrestricted.
func TestLifetimeCannotOutliveTheCaller(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		now := e.clock.Now()
		own := now.Add(time.Hour)
		later, earlier := own.Add(time.Hour), own.Add(-30*time.Minute)
		caller := e.create(map[string]any{"name": "caller", "scopes": allScopes, "expiresAt": own})
		c, callerID := caller["secretKey"].(string), caller["id"].(string)
		ownText := caller["expiresAt"].(string)
		// target is a key the caller may manage (no scopes), with expiry exp (nil: none).
		target := func(e *env, exp any) string {
			body := map[string]any{"name": "target"}
			if exp != nil {
				body["expiresAt"] = exp
			}
			return e.create(body)["id"].(string)
		}

		t.Run("create", func(t *testing.T) {
			e := e.in(t)
			changesNothing(t, e, "refused creations", func() {
				expectStatus(t, "create with a later expiry", e.do("POST", "/api-keys", c, map[string]any{"name": "x", "expiresAt": later}), 403, "")
				expectStatus(t, "create with expiry in 9999", e.do("POST", "/api-keys", c, `{"name":"x","expiresAt":"9999-01-01T00:00:00Z"}`), 403, "")
				expectStatus(t, "create with no expiry", e.do("POST", "/api-keys", c, map[string]any{"name": "x"}), 403, "")
			})
			r := e.do("POST", "/api-keys", c, map[string]any{"name": "equal", "expiresAt": own})
			if expectStatus(t, "create with the caller's own expiry", r, 201, "") && r.obj(t)["expiresAt"] != ownText {
				t.Errorf("expiresAt = %v, want %s", r.obj(t)["expiresAt"], ownText)
			}
			expectStatus(t, "create with an earlier expiry", e.do("POST", "/api-keys", c, map[string]any{"name": "earlier", "expiresAt": earlier}), 201, "")
		})

		t.Run("batch", func(t *testing.T) {
			e := e.in(t)
			ok := map[string]any{"name": "ok", "expiresAt": earlier}
			changesNothing(t, e, "refused batches", func() {
				expectStatus(t, "batch with one later expiry", e.do("POST", "/api-keys/batch", c,
					map[string]any{"keys": []any{ok, map[string]any{"name": "bad", "expiresAt": later}}}), 403, "")
				expectStatus(t, "batch with one key without expiry", e.do("POST", "/api-keys/batch", c,
					map[string]any{"keys": []any{ok, ok, map[string]any{"name": "bad"}}}), 403, "")
			})
			r := e.do("POST", "/api-keys/batch", c, map[string]any{"keys": []any{ok, map[string]any{"name": "equal", "expiresAt": own}}})
			if expectStatus(t, "batch within the caller's lifetime", r, 201, "") {
				var got []map[string]any
				r.JSON(t, &got)
				if len(got) != 2 || got[1]["expiresAt"] != ownText {
					t.Errorf("batch = %v", got)
				}
			}
		})

		t.Run("patch", func(t *testing.T) {
			e := e.in(t)
			id := target(e, earlier)
			path := "/api-keys/" + id
			changesNothing(t, e, "refused updates", func() {
				expectStatus(t, "patch to a later expiry", e.do("PATCH", path, c, map[string]any{"expiresAt": later}), 403, "")
				expectStatus(t, "patch to no expiry", e.do("PATCH", path, c, `{"expiresAt":null}`), 403, "")
				expectStatus(t, "patch to no expiry with a rename", e.do("PATCH", path, c, `{"name":"renamed","expiresAt":null}`), 403, "")
			})
			r := e.do("PATCH", path, c, map[string]any{"expiresAt": own})
			if expectStatus(t, "patch to the caller's own expiry", r, 200, "") && r.obj(t)["expiresAt"] != ownText {
				t.Errorf("expiresAt = %v, want %s", r.obj(t)["expiresAt"], ownText)
			}
		})

		t.Run("rotate another key", func(t *testing.T) {
			e := e.in(t)
			forever := target(e, nil)
			longer := target(e, later)
			changesNothing(t, e, "refused rotations", func() {
				expectStatus(t, "rotate a key without expiry, keeping it", e.do("POST", "/api-keys/"+forever+"/rotate", c, map[string]any{}), 403, "")
				expectStatus(t, "rotate a key without expiry, no body", e.do("POST", "/api-keys/"+forever+"/rotate", c, nil), 403, "")
				expectStatus(t, "rotate a key with a later expiry, keeping it", e.do("POST", "/api-keys/"+longer+"/rotate", c, map[string]any{}), 403, "")
				expectStatus(t, "rotate to a later expiry", e.do("POST", "/api-keys/"+forever+"/rotate", c, map[string]any{"expiresAt": later}), 403, "")
			})
			if got := e.adminGet(forever); got["status"] != "active" || got["replacedById"] != nil {
				t.Errorf("the target after refused rotations: %v", got)
			}
			r := e.do("POST", "/api-keys/"+forever+"/rotate", c, map[string]any{"expiresAt": own})
			if expectStatus(t, "rotate to the caller's own expiry", r, 201, "") && r.obj(t)["expiresAt"] != ownText {
				t.Errorf("replacement expiresAt = %v, want %s", r.obj(t)["expiresAt"], ownText)
			}
			expectStatus(t, "rotate to an earlier expiry", e.do("POST", "/api-keys/"+longer+"/rotate", c, map[string]any{"expiresAt": earlier}), 201, "")
			within := target(e, earlier)
			expectStatus(t, "rotate a key within the caller's lifetime, keeping its expiry", e.do("POST", "/api-keys/"+within+"/rotate", c, nil), 201, "")
		})

		t.Run("rotate itself", func(t *testing.T) {
			e := e.in(t)
			path := "/api-keys/" + callerID + "/rotate"
			changesNothing(t, e, "refused rotations of itself", func() {
				expectStatus(t, "rotate itself to 9999", e.do("POST", path, c, `{"expiresAt":"9999-01-01T00:00:00Z"}`), 403, "")
				expectStatus(t, "rotate itself to a later expiry", e.do("POST", path, c, map[string]any{"expiresAt": later}), 403, "")
				expectStatus(t, "rotate itself with grace to a later expiry", e.do("POST", path, c, map[string]any{"expiresAt": later, "gracePeriodSeconds": 60}), 403, "")
			})
			if got := e.adminGet(callerID); got["status"] != "active" || got["replacedById"] != nil || got["expiresAt"] != ownText {
				t.Errorf("the caller after refused rotations: %v", got)
			}
			r := e.do("POST", path, c, nil)
			if expectStatus(t, "rotate itself with no body", r, 201, "") {
				if repl := r.obj(t); repl["expiresAt"] != ownText || repl["rotatedFromId"] != callerID {
					t.Errorf("replacement = %v, want expiresAt %s", repl, ownText)
				}
			}
		})

		t.Run("unrestricted", func(t *testing.T) {
			e := e.in(t)
			free := e.create(map[string]any{"name": "free", "scopes": allScopes})["secretKey"].(string)
			for name, token := range map[string]string{"a key without expiry": free, "the admin": adminToken} {
				expectStatus(t, name+": create without expiry", e.do("POST", "/api-keys", token, map[string]any{"name": "x"}), 201, "")
				expectStatus(t, name+": create expiring in 9999", e.do("POST", "/api-keys", token, `{"name":"x","expiresAt":"9999-01-01T00:00:00Z"}`), 201, "")
				expectStatus(t, name+": batch without expiry", e.do("POST", "/api-keys/batch", token, map[string]any{"keys": []any{map[string]any{"name": "x"}}}), 201, "")
				id := target(e, earlier)
				expectStatus(t, name+": patch to a later expiry", e.do("PATCH", "/api-keys/"+id, token, map[string]any{"expiresAt": later}), 200, "")
				expectStatus(t, name+": patch to no expiry", e.do("PATCH", "/api-keys/"+id, token, `{"expiresAt":null}`), 200, "")
				expectStatus(t, name+": rotate a key without expiry", e.do("POST", "/api-keys/"+id+"/rotate", token, nil), 201, "")
				id = target(e, nil)
				expectStatus(t, name+": rotate to a later expiry", e.do("POST", "/api-keys/"+id+"/rotate", token, map[string]any{"expiresAt": later}), 201, "")
			}
		})
	})
}

// TestKeyInGraceCannotManageItsReplacement: a key rotated with a grace period still
// authenticates, but cannot revoke, rotate or update the key that replaces it, directly or
// through a key it creates or reshapes.
func TestKeyInGraceCannotManageItsReplacement(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		old := e.create(map[string]any{"name": "old", "scopes": allScopes})
		oldID, k := old["id"].(string), old["secretKey"].(string)
		r := e.do("POST", "/api-keys/"+oldID+"/rotate", adminToken, map[string]any{"gracePeriodSeconds": 3600})
		if r.Status != 201 {
			t.Fatalf("rotate with grace: %d %s", r.Status, r.Body)
		}
		replID := r.obj(t)["id"].(string)
		if r := e.do("GET", "/api-keys/"+oldID, k, nil); !expectStatus(t, "GET itself in its grace period", r, 200, "") || r.obj(t)["replacedById"] != replID {
			t.Errorf("itself = %s", r.Body)
		}
		before := e.do("GET", "/api-keys/"+replID, adminToken, nil).Body
		path := "/api-keys/" + replID
		withinGrace := e.clock.Now().Add(30 * time.Minute)
		changesNothing(t, e, "refused management of the replacement", func() {
			expectStatus(t, "revoke its replacement", e.do("POST", path+"/revoke", k, map[string]any{"reason": "mine"}), 403, "")
			expectStatus(t, "revoke its replacement, no body", e.do("POST", path+"/revoke", k, nil), 403, "")
			expectStatus(t, "rotate its replacement", e.do("POST", path+"/rotate", k, map[string]any{"expiresAt": withinGrace}), 403, "")
			expectStatus(t, "rotate its replacement, no body", e.do("POST", path+"/rotate", k, nil), 403, "")
			expectStatus(t, "rename its replacement", e.do("PATCH", path, k, map[string]any{"name": "mine"}), 403, "")
			expectStatus(t, "shorten its replacement", e.do("PATCH", path, k, map[string]any{"expiresAt": withinGrace}), 403, "")
		})
		if after := e.do("GET", path, adminToken, nil).Body; string(after) != string(before) {
			t.Errorf("the replacement changed:\nbefore %s\nafter  %s", before, after)
		}
		if v := e.verify(map[string]any{"key": old["secretKey"]}); v["code"] != "VALID" {
			t.Errorf("the old key in its grace verifies as %v", v)
		}
		// Nor can it act on the replacement through another key: it creates none and
		// manages none but itself (the bypass a review found: create a key, rotate the
		// replacement with it). It may still read, and give itself up.
		other := e.create(map[string]any{"name": "other"})["id"].(string)
		changesNothing(t, e, "refused writes of a key in its grace period", func() {
			expectStatus(t, "create a key", e.do("POST", "/api-keys", k, map[string]any{"name": "g3", "expiresAt": withinGrace}), 403, "")
			expectStatus(t, "batch-create a key", e.do("POST", "/api-keys/batch", k, map[string]any{"keys": []any{map[string]any{"name": "g3"}}}), 403, "")
			expectStatus(t, "rename an unrelated key", e.do("PATCH", "/api-keys/"+other, k, map[string]any{"name": "renamed"}), 403, "")
			expectStatus(t, "revoke an unrelated key", e.do("POST", "/api-keys/"+other+"/revoke", k, nil), 403, "")
		})
		expectStatus(t, "list keys", e.do("GET", "/api-keys", k, nil), 200, "")
		expectStatus(t, "revoke itself", e.do("POST", "/api-keys/"+oldID+"/revoke", k, nil), 200, "")
		expectStatus(t, "after revoking itself", e.do("GET", "/api-keys", k, nil), 401, "")
	})
}

// TestVerifyByBoundCallerHidesOtherTenants: a caller bound to a tenant (environment) that
// presents another tenant's (environment's) genuine secret is told NOT_FOUND, and nothing
// more; an unbound caller asking for a tenant (environment) gets the mismatch codes.
func TestVerifyByBoundCallerHidesOtherTenants(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		verifier := func(body map[string]any) string {
			body["name"], body["scopes"] = "verifier", []string{"api_keys:verify"}
			return e.create(body)["secretKey"].(string)
		}
		byTenant := verifier(map[string]any{"tenantId": "tenant_a"})
		byEnv := verifier(map[string]any{"environmentId": "env_a"})
		home := e.create(map[string]any{"name": "home", "tenantId": "tenant_a", "environmentId": "env_a"})["secretKey"].(string)
		away := e.create(map[string]any{"name": "away", "tenantId": "tenant_b", "environmentId": "env_b", "scopes": allScopes})
		awaySecret := away["secretKey"].(string)
		revokedAway := e.create(map[string]any{"name": "revoked away", "tenantId": "tenant_b", "environmentId": "env_b"})
		e.do("POST", "/api-keys/"+revokedAway["id"].(string)+"/revoke", adminToken, nil)
		unbound := e.create(map[string]any{"name": "unbound"})["secretKey"].(string)

		for _, tt := range []struct {
			name   string
			caller string
			body   map[string]any
			code   string
		}{
			{"tenant-bound, another tenant's key", byTenant, map[string]any{"key": awaySecret}, "NOT_FOUND"},
			{"tenant-bound, naming the key's tenant", byTenant, map[string]any{"key": awaySecret, "tenantId": "tenant_b"}, "NOT_FOUND"},
			{"tenant-bound, naming its own tenant", byTenant, map[string]any{"key": awaySecret, "tenantId": "tenant_a"}, "NOT_FOUND"},
			{"tenant-bound, another environment", byTenant, map[string]any{"key": awaySecret, "environmentId": "env_a"}, "NOT_FOUND"},
			{"tenant-bound, another tenant's revoked key", byTenant, map[string]any{"key": revokedAway["secretKey"]}, "NOT_FOUND"},
			{"tenant-bound, with required scopes", byTenant, map[string]any{"key": awaySecret, "requiredScopes": []string{"api_keys:read"}}, "NOT_FOUND"},
			{"tenant-bound, a key of no tenant", byTenant, map[string]any{"key": unbound}, "NOT_FOUND"},
			{"environment-bound, another environment's key", byEnv, map[string]any{"key": awaySecret}, "NOT_FOUND"},
			{"environment-bound, naming the key's environment", byEnv, map[string]any{"key": awaySecret, "environmentId": "env_b"}, "NOT_FOUND"},
			{"environment-bound, another environment's revoked key", byEnv, map[string]any{"key": revokedAway["secretKey"]}, "NOT_FOUND"},
			{"tenant-bound, its own tenant's key", byTenant, map[string]any{"key": home}, "VALID"},
			{"environment-bound, its own environment's key", byEnv, map[string]any{"key": home}, "VALID"},
			{"admin, tenant mismatch", adminToken, map[string]any{"key": awaySecret, "tenantId": "tenant_a"}, "TENANT_MISMATCH"},
			{"admin, environment mismatch", adminToken, map[string]any{"key": awaySecret, "environmentId": "env_a"}, "ENVIRONMENT_MISMATCH"},
			{"admin, both mismatched", adminToken, map[string]any{"key": awaySecret, "tenantId": "tenant_a", "environmentId": "env_a"}, "TENANT_MISMATCH"},
			{"admin, matching", adminToken, map[string]any{"key": awaySecret, "tenantId": "tenant_b", "environmentId": "env_b"}, "VALID"},
		} {
			r := e.do("POST", "/api-keys/verify", tt.caller, tt.body)
			if !expectStatus(t, tt.name, r, 200, "") {
				continue
			}
			got := r.obj(t)
			if got["code"] != tt.code || got["valid"] != (tt.code == "VALID") {
				t.Errorf("%s: %s, want code %s", tt.name, r.Body, tt.code)
			}
			if tt.code != "VALID" && len(got) != 2 {
				t.Errorf("%s: a refusal tells more than valid and code: %s", tt.name, r.Body)
			}
		}
	})
}

// TestTextRulesRefuseInvisibleAndFormattingCharacters: a name must show something; C1
// controls, bidirectional controls and the line and paragraph separators are refused in
// every text field; line breaks and tabs stay fine in multi-line text, and so does visible
// Unicode. Refused input changes nothing.
func TestTextRulesRefuseInvisibleAndFormattingCharacters(t *testing.T) {
	blanks := []string{"\u00a0", "\u2003", "\u3000", "\ufeff", "\u200b", "\u2060", "\u180e",
		" \u00a0 ", "\u200b \u3000", "\u2003\u2003", "\ufeff\u200b\u2060", " \u180e",
		// Default-ignorable code points a review found accepted: fillers, marks, selectors.
		"\u3164", "\u200e", "\u00ad", "\u034f", "\u2800", "\ufe0f", "\u180b", "\u206a", "\u2065",
		"\ufff0", "\u200b\ufe0f", "\u115f\u1160"}
	refused := []rune{0x85, 0x9b, 0x80, 0x9f, 0x202a, 0x202b, 0x202c, 0x202d, 0x202e, 0x2066, 0x2067, 0x2068, 0x2069, 0x2028, 0x2029}
	eachEngine(t, func(t *testing.T, e *env) {
		k := e.create(map[string]any{"name": "k", "description": "d"})
		key := "/api-keys/" + k["id"].(string)
		changesNothing(t, e, "refused text", func() {
			t.Run("blank names", func(t *testing.T) {
				e := e.in(t)
				for _, s := range blanks {
					what := fmt.Sprintf("name %+q", s)
					expectStatus(t, "create with "+what, e.do("POST", "/api-keys", adminToken, map[string]any{"name": s}), 400, "/name")
					expectStatus(t, "batch with "+what, e.do("POST", "/api-keys/batch", adminToken, map[string]any{"keys": []any{map[string]any{"name": "ok"}, map[string]any{"name": s}}}), 400, "/keys/1/name")
					expectStatus(t, "patch to "+what, e.do("PATCH", key, adminToken, map[string]any{"name": s}), 400, "/name")
					expectStatus(t, "rotate to "+what, e.do("POST", key+"/rotate", adminToken, map[string]any{"name": s}), 400, "/name")
					expectStatus(t, "revoke with reason "+fmt.Sprintf("%+q", s), e.do("POST", key+"/revoke", adminToken, map[string]any{"reason": s}), 400, "/reason")
				}
			})
			for _, c := range refused {
				t.Run(fmt.Sprintf("U+%04X", c), func(t *testing.T) {
					e := e.in(t)
					s := "a" + string(c) + "b"
					expectStatus(t, "create name", e.do("POST", "/api-keys", adminToken, map[string]any{"name": s}), 400, "/name")
					expectStatus(t, "create description", e.do("POST", "/api-keys", adminToken, map[string]any{"name": "x", "description": s}), 400, "/description")
					expectStatus(t, "batch name", e.do("POST", "/api-keys/batch", adminToken, map[string]any{"keys": []any{map[string]any{"name": s}}}), 400, "/keys/0/name")
					expectStatus(t, "batch description", e.do("POST", "/api-keys/batch", adminToken, map[string]any{"keys": []any{map[string]any{"name": "x", "description": s}}}), 400, "/keys/0/description")
					expectStatus(t, "revoke reason", e.do("POST", key+"/revoke", adminToken, map[string]any{"reason": s}), 400, "/reason")
					expectStatus(t, "rotate name", e.do("POST", key+"/rotate", adminToken, map[string]any{"name": s}), 400, "/name")
					expectStatus(t, "patch name", e.do("PATCH", key, adminToken, map[string]any{"name": s}), 400, "/name")
					expectStatus(t, "patch description", e.do("PATCH", key, adminToken, map[string]any{"description": s}), 400, "/description")
					// The same character sent as a \u escape.
					expectStatus(t, "create name, escaped", e.do("POST", "/api-keys", adminToken, fmt.Sprintf(`{"name":"a\u%04xb"}`, c)), 400, "/name")
				})
			}
		})
		t.Run("accepted", func(t *testing.T) {
			e := e.in(t)
			key := "/api-keys/" + e.create(map[string]any{"name": "fresh"})["id"].(string)
			for _, name := range []string{"🔑 deploy", "😀", "部署キー", "café", "build\u00a0bot", "Ünïcödé ✓"} {
				r := e.do("POST", "/api-keys", adminToken, map[string]any{"name": name})
				if expectStatus(t, fmt.Sprintf("create name %+q", name), r, 201, "") && r.obj(t)["name"] != name {
					t.Errorf("name %+q came back as %+q", name, r.obj(t)["name"])
				}
			}
			const multi = "line one\nline two\r\n\tindented"
			r := e.do("POST", "/api-keys", adminToken, map[string]any{"name": "multi", "description": multi})
			if expectStatus(t, "create a multi-line description", r, 201, "") && r.obj(t)["description"] != multi {
				t.Errorf("description = %+q", r.obj(t)["description"])
			}
			r = e.do("PATCH", key, adminToken, map[string]any{"name": "café ☕", "description": multi})
			if expectStatus(t, "patch to visible Unicode and a multi-line description", r, 200, "") {
				if got := r.obj(t); got["name"] != "café ☕" || got["description"] != multi {
					t.Errorf("patched = %v", got)
				}
			}
			r = e.do("POST", key+"/revoke", adminToken, map[string]any{"reason": "leaked\nin CI\tlog"})
			if expectStatus(t, "revoke with a multi-line reason", r, 200, "") && r.obj(t)["revokedReason"] != "leaked\nin CI\tlog" {
				t.Errorf("revokedReason = %+q", r.obj(t)["revokedReason"])
			}
		})
	})
}

// TestBodiesMustBeOneValueOfPortableJSON: lone surrogate escapes, invalid UTF-8, data after
// the JSON value and numbers a double cannot hold are refused in every body and store
// nothing, so the list stays valid JSON; their valid neighbours are accepted.
func TestBodiesMustBeOneValueOfPortableJSON(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		k := e.create(map[string]any{"name": "k", "metadata": map[string]any{"a": 1}})
		key := "/api-keys/" + k["id"].(string)
		bad := []struct{ name, method, path, body string }{
			{"lone high surrogate in name", "POST", "/api-keys", `{"name":"x\ud800"}`},
			{"lone low surrogate in name", "POST", "/api-keys", `{"name":"\udc00"}`},
			{"high surrogate then a letter", "POST", "/api-keys", `{"name":"x\ud800\u0041"}`},
			{"two high surrogates", "POST", "/api-keys", `{"name":"x\ud800\ud800"}`},
			{"reversed pair", "POST", "/api-keys", `{"name":"\ude00\ud83d"}`},
			{"upper-case escape", "POST", "/api-keys", `{"name":"x\uDBFF"}`},
			{"lone surrogate in description", "POST", "/api-keys", `{"name":"x","description":"\ud800"}`},
			{"lone surrogate in a metadata key", "POST", "/api-keys", `{"name":"x","metadata":{"\ud800":1}}`},
			{"lone surrogate in a metadata value", "POST", "/api-keys", `{"name":"x","metadata":{"a":"\udfff"}}`},
			{"lone surrogate deep in metadata", "POST", "/api-keys", `{"name":"x","metadata":{"a":[{"b":"c\ud83d"}]}}`},
			{"lone surrogate in a batch item", "POST", "/api-keys/batch", `{"keys":[{"name":"ok"},{"name":"\ud800"}]}`},
			{"lone surrogate in batch metadata", "POST", "/api-keys/batch", `{"keys":[{"name":"ok","metadata":{"\udc00":"v"}}]}`},
			{"lone surrogate in a patched name", "PATCH", key, `{"name":"\ud800"}`},
			{"lone surrogate in patched metadata", "PATCH", key, `{"metadata":{"a":"\udc00"}}`},
			{"lone surrogate in a reason", "POST", key + "/revoke", `{"reason":"\ud800"}`},
			{"lone surrogate in a rotated name", "POST", key + "/rotate", `{"name":"\ud800"}`},
			{"lone surrogate in a verified key", "POST", "/api-keys/verify", `{"key":"qs_live_\ud800"}`},
			{"invalid UTF-8 in name", "POST", "/api-keys", "{\"name\":\"a\xff\"}"},
			{"truncated UTF-8 in name", "POST", "/api-keys", "{\"name\":\"caf\xc3\"}"},
			{"UTF-8 encoded surrogate in description", "POST", "/api-keys", "{\"name\":\"x\",\"description\":\"\xed\xa0\x80\"}"},
			{"invalid UTF-8 in a metadata key", "POST", "/api-keys", "{\"name\":\"x\",\"metadata\":{\"\xfe\":1}}"},
			{"invalid UTF-8 in a metadata value", "POST", "/api-keys", "{\"name\":\"x\",\"metadata\":{\"a\":\"\x80\"}}"},
			{"invalid UTF-8 in a batch item", "POST", "/api-keys/batch", "{\"keys\":[{\"name\":\"a\xff\"}]}"},
			{"invalid UTF-8 in a patch", "PATCH", key, "{\"name\":\"a\xff\"}"},
			{"invalid UTF-8 in a reason", "POST", key + "/revoke", "{\"reason\":\"a\xff\"}"},
			{"invalid UTF-8 outside strings", "POST", "/api-keys", "{\"name\":\"x\"}\xff"},
			{"letters after the value", "POST", "/api-keys", `{"name":"x"}xyz`},
			{"a second object", "POST", "/api-keys", `{"name":"x"}{"name":"y"}`},
			{"a number after the value", "POST", "/api-keys", `{"name":"x"} 1`},
			{"a bracket after the value", "POST", "/api-keys", `{"name":"x"}]`},
			{"a second batch", "POST", "/api-keys/batch", `{"keys":[{"name":"x"}]}{"keys":[{"name":"y"}]}`},
			{"data after a patch", "PATCH", key, `{"name":"y"} null`},
			{"data after a reason", "POST", key + "/revoke", `{"reason":"r"} {}`},
			{"data after a rotation", "POST", key + "/rotate", `{} x`},
			{"data after a verification", "POST", "/api-keys/verify", `{"key":"x"} 1`},
			{"huge exponent in metadata", "POST", "/api-keys", `{"name":"x","metadata":{"n":1e999999}}`},
			{"a member named twice", "POST", "/api-keys", `{"name":"a","name":"b"}`},
			{"a metadata member named twice", "POST", "/api-keys", `{"name":"x","metadata":{"a":1,"a":2}}`},
			{"a member named twice deep in metadata", "PATCH", key, `{"metadata":{"a":{"b":1,"b":1}}}`},
			{"a batch item naming a member twice", "POST", "/api-keys/batch", `{"keys":[{"name":"x","scopes":[],"scopes":["api_keys:read"]}]}`},
			{"negative huge number in metadata", "POST", "/api-keys", `{"name":"x","metadata":{"n":-1e400}}`},
			{"huge number deep in metadata", "POST", "/api-keys", `{"name":"x","metadata":{"a":[{"n":2e308}]}}`},
			{"huge number in batch metadata", "POST", "/api-keys/batch", `{"keys":[{"name":"x","metadata":{"n":1e400}}]}`},
			{"huge number in patched metadata", "PATCH", key, `{"metadata":{"n":1e999999}}`},
			{"huge grace period", "POST", key + "/rotate", `{"gracePeriodSeconds":1e400}`},
		}
		changesNothing(t, e, "refused bodies", func() {
			for _, tt := range bad {
				t.Run(tt.name, func(t *testing.T) {
					expectStatus(t, tt.name, e.in(t).do(tt.method, tt.path, adminToken, tt.body), 400, "")
				})
			}
		})
		n := e.count()
		good := []struct{ name, body, field, want string }{
			{"surrogate pair in name", `{"name":"\ud83d\ude00"}`, "name", `"😀"`},
			{"upper-case surrogate pair", `{"name":"x\uD83D\uDE00"}`, "name", `"x😀"`},
			{"surrogate pair in metadata", `{"name":"x","metadata":{"\ud83d\ude00":"\ud83d\ude00"}}`, "metadata", `{"😀":"😀"}`},
			{"escaped backslash before u", `{"name":"x\\ud800"}`, "name", `"x\\ud800"`},
			{"trailing white space", "{\"name\":\"x\"} \n\t\r\n", "name", `"x"`},
			{"largest exponent a double holds", `{"name":"x","metadata":{"n":1e308}}`, "metadata", `{"n":1e308}`},
			{"negative large number", `{"name":"x","metadata":{"n":-1.7976931348623157e308}}`, "metadata", `{"n":-1.7976931348623157e308}`},
		}
		for _, tt := range good {
			t.Run(tt.name, func(t *testing.T) {
				r := e.in(t).do("POST", "/api-keys", adminToken, tt.body)
				if !expectStatus(t, tt.name, r, 201, "") {
					return
				}
				var got map[string]json.RawMessage
				r.JSON(t, &got)
				if g, w := canonicalJSON(t, got[tt.field]), canonicalJSON(t, []byte(tt.want)); g != w {
					t.Errorf("%s: %s = %s, want %s", tt.name, tt.field, g, w)
				}
			})
		}
		r := e.do("GET", "/api-keys?limit=100", adminToken, nil)
		var list []map[string]any
		if r.Status != 200 || !json.Valid(r.Body) {
			t.Fatalf("list: %d %s", r.Status, r.Body)
		}
		r.JSON(t, &list)
		if len(list) != n+len(good) {
			t.Errorf("listed %d keys, want %d", len(list), n+len(good))
		}
		for _, k := range list {
			if r := e.do("GET", "/api-keys/"+k["id"].(string), adminToken, nil); r.Status != 200 || !json.Valid(r.Body) {
				t.Errorf("GET %s: %d %s", k["id"], r.Status, r.Body)
			}
		}
	})
}

// canonicalJSON is JSON text decoded and encoded again, numbers kept as written, so that two
// spellings of the same value (escaped or not) compare equal.
func canonicalJSON(t *testing.T, raw []byte) string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	return jsonOf(v)
}

// TestNewKeyIDsAreUUIDv7: a client-supplied id is "apk_" and a lower-case UUIDv7; an
// existing key of another shape is still reachable by its id.
func TestNewKeyIDsAreUUIDv7(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		const v4 = "apk_0190a1b2-c3d4-4e5f-8a9b-0c1d2e3f4a5b"
		changesNothing(t, e, "refused ids", func() {
			for _, tt := range []struct{ name, id string }{
				{"version 4", v4},
				{"version 1", "apk_0190a1b2-c3d4-1e5f-8a9b-0c1d2e3f4a5b"},
				{"version 8", "apk_0190a1b2-c3d4-8e5f-8a9b-0c1d2e3f4a5b"},
				{"NCS variant", "apk_0190a1b2-c3d4-7e5f-0a9b-0c1d2e3f4a5b"},
				{"Microsoft variant", "apk_0190a1b2-c3d4-7e5f-ca9b-0c1d2e3f4a5b"},
				{"future variant", "apk_0190a1b2-c3d4-7e5f-ea9b-0c1d2e3f4a5b"},
				{"upper case", "apk_0190A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B"},
				{"upper-case prefix", "APK_0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"},
				{"nil UUID", "apk_00000000-0000-0000-0000-000000000000"},
				{"no hyphens", "apk_0190a1b2c3d47e5f8a9b0c1d2e3f4a5b"},
				{"braces", "apk_{0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b}"},
			} {
				t.Run(tt.name, func(t *testing.T) {
					e := e.in(t)
					expectStatus(t, "create with id "+tt.id, e.do("POST", "/api-keys", adminToken, map[string]any{"name": "x", "id": tt.id}), 400, "/id")
					expectStatus(t, "batch with id "+tt.id, e.do("POST", "/api-keys/batch", adminToken,
						map[string]any{"keys": []any{map[string]any{"name": "ok"}, map[string]any{"name": "x", "id": tt.id}}}), 400, "/keys/1/id")
				})
			}
		})
		const v7 = "apk_0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
		r := e.do("POST", "/api-keys", adminToken, map[string]any{"name": "mine", "id": v7})
		if expectStatus(t, "create with a v7 id", r, 201, "") && r.obj(t)["id"] != v7 {
			t.Errorf("id = %v, want %s", r.obj(t)["id"], v7)
		}
		if got := e.adminGet(v7); got["name"] != "mine" {
			t.Errorf("GET %s = %v", v7, got)
		}
		const v7b = "apk_0190a1b2-c3d4-7e5f-bfff-0c1d2e3f4a5c"
		r = e.do("POST", "/api-keys/batch", adminToken, map[string]any{"keys": []any{map[string]any{"name": "b", "id": v7b}}})
		if expectStatus(t, "batch with a v7 id", r, 201, "") {
			var got []map[string]any
			r.JSON(t, &got)
			if len(got) != 1 || got[0]["id"] != v7b {
				t.Errorf("batch = %v", got)
			}
		}
		// A v4-shaped id is still a key id in a path: an old key stays reachable.
		expectStatus(t, "GET a v4 id", e.do("GET", "/api-keys/"+v4, adminToken, nil), 404, "")
		expectStatus(t, "PATCH a v4 id", e.do("PATCH", "/api-keys/"+v4, adminToken, map[string]any{"name": "y"}), 404, "")
		expectStatus(t, "revoke a v4 id", e.do("POST", "/api-keys/"+v4+"/revoke", adminToken, nil), 404, "")
		expectStatus(t, "rotate a v4 id", e.do("POST", "/api-keys/"+v4+"/rotate", adminToken, nil), 404, "")
	})
}
