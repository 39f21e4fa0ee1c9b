package server_test

import (
	"strings"
	"testing"
)

// TestControlsOverHTTP: the usage controls round-trip through create, get, list and PATCH
// in canonical form; verify honours them; a bad permission query or allowlist is a 400
// naming the field (and the query's position) and changes nothing. Every response is
// validated against openapi.yaml by the harness.
func TestControlsOverHTTP(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		k := e.create(map[string]any{"name": "fenced", "permissions": []string{"documents.read", "billing:*"},
			"ipAllowlist": []string{"192.0.2.9/24", "2001:db8::1"}, "enabled": false})
		id, secret := k["id"].(string), k["secretKey"].(string)
		if k["enabled"] != false || jsonOf(k["ipAllowlist"]) != `["192.0.2.0/24","2001:db8::1/128"]` || jsonOf(k["permissions"]) != `["documents.read","billing:*"]` {
			t.Errorf("created: %v", k)
		}
		if v := e.verify(map[string]any{"key": secret, "clientIp": "192.0.2.1"}); v["code"] != "DISABLED" {
			t.Errorf("disabled: %v", v)
		}
		if r := e.do("PATCH", "/api-keys/"+id, adminToken, map[string]any{"enabled": true}); r.Status != 200 || r.obj(t)["enabled"] != true {
			t.Fatalf("enable: %d %s", r.Status, r.Body)
		}
		q := "documents.read AND (billing:read OR admin)"
		if v := e.verify(map[string]any{"key": secret, "clientIp": "192.0.2.1", "permissions": q}); v["code"] != "VALID" || jsonOf(v["permissions"]) != `["documents.read","billing:*"]` || v["enabled"] != true {
			t.Errorf("valid: %v", v)
		}
		if v := e.verify(map[string]any{"key": secret, "clientIp": "2001:db8::2"}); v["code"] != "IP_NOT_ALLOWED" {
			t.Errorf("outside the allowlist: %v", v)
		}
		if v := e.verify(map[string]any{"key": secret, "clientIp": "2001:db8::1", "permissions": "admin"}); v["code"] != "INSUFFICIENT_PERMISSIONS" || v["keyId"] != nil {
			t.Errorf("lacking a permission: %v", v)
		}
		r := e.do("POST", "/api-keys/verify", adminToken, map[string]any{"key": secret, "permissions": "documents.read AND (admin"})
		if r.Status != 400 || !strings.Contains(string(r.Body), `"field":"/permissions"`) || !strings.Contains(string(r.Body), `position 26: the \"(\" at position 20 is not closed`) {
			t.Errorf("bad query: %d %s", r.Status, r.Body)
		}
		before := e.do("GET", "/api-keys/"+id, adminToken, nil).Body
		for _, body := range []map[string]any{
			{"ipAllowlist": []string{"not-a-network"}},
			{"ipAllowlist": []string{"10.0.0.0/8", "10.1.2.3/8"}},
			{"permissions": []string{"has space"}},
			{"permissions": []string{"a", "a"}},
			{"enabled": "yes"},
		} {
			if r := e.do("PATCH", "/api-keys/"+id, adminToken, body); r.Status != 400 {
				t.Errorf("PATCH %v: %d %s", body, r.Status, r.Body)
			}
		}
		if after := e.do("GET", "/api-keys/"+id, adminToken, nil).Body; string(after) != string(before) {
			t.Errorf("a refused PATCH changed the key:\n%s\n%s", before, after)
		}
		r = e.do("PATCH", "/api-keys/"+id, adminToken, map[string]any{"permissions": []string{}, "ipAllowlist": []string{}})
		if o := r.obj(t); r.Status != 200 || jsonOf(o["permissions"]) != "[]" || jsonOf(o["ipAllowlist"]) != "[]" {
			t.Errorf("clearing: %d %s", r.Status, r.Body)
		}
		if v := e.verify(map[string]any{"key": secret, "clientIp": "203.0.113.5"}); v["code"] != "VALID" {
			t.Errorf("after clearing the allowlist: %v", v)
		}
	})
}
