package server_test

import (
	"net/http"
	"strings"
	"testing"
	"unicode"
)

// TestTextPatternErrorsAreReadable: a name, description or reason that fails its pattern is
// answered with a sentence, not the pattern, which is written with the very characters it
// refuses (bidirectional overrides, line separators) and would carry them to the client's
// terminal. ASCII patterns (ids, tenants) are still quoted: they read as what they mean.
func TestTextPatternErrorsAreReadable(t *testing.T) {
	e := newEnv(t, "sqlite", fastHash)
	for _, body := range []map[string]any{
		{"name": "   "},
		{"name": "a\u202eb"},
		{"name": "ok", "description": "a\u2028b"},
	} {
		r := e.do("POST", "/api-keys", adminToken, body)
		if r.Status != http.StatusBadRequest {
			t.Fatalf("%q: %d %s", body, r.Status, r.Body)
		}
		for _, c := range string(r.Body) {
			if c > unicode.MaxASCII {
				t.Errorf("%q: the answer holds %U: %s", body, c, r.Body)
				break
			}
		}
		if !strings.Contains(string(r.Body), "lacks the visible character it needs") {
			t.Errorf("%q: %s", body, r.Body)
		}
	}
	r := e.do("POST", "/api-keys", adminToken, map[string]any{"name": "ok", "tenantId": "-bad"})
	if r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), "A-Za-z0-9") {
		t.Errorf("an ASCII pattern is still quoted: %d %s", r.Status, r.Body)
	}
}

// TestParameterErrorsDoNotQuoteTheValue: a query parameter that does not parse is named, and
// its value (which may be anything a client pasted, a secret included) is not repeated.
func TestParameterErrorsDoNotQuoteTheValue(t *testing.T) {
	e := newEnv(t, "sqlite", fastHash)
	const pasted = "qs_live_PastedByMistake0123456789abcdefghij"
	r := e.do("GET", "/api-keys?limit="+pasted, adminToken, nil)
	if r.Status != http.StatusBadRequest || strings.Contains(string(r.Body), pasted) || !strings.Contains(string(r.Body), `"field":"limit"`) {
		t.Errorf("%d %s", r.Status, r.Body)
	}
}
