package server_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/qs/apikeys/internal/testdb"
	"github.com/qs/apikeys/keys"
)

// The HTTP benchmarks run the whole Echo stack in-process on SQLite. BenchmarkHealthz is
// the baseline (routing, middleware, logging); the verify benchmarks add authentication,
// validation, the handle lookup and, for a real key, one argon2id verification with the
// production parameters. Report them as ratios to the baseline.

func benchEnv(b *testing.B) (*env, string) {
	e := newEnv(b, testdb.SQLite, keys.DefaultParams())
	return e, e.create(map[string]any{"name": "bench"})["secretKey"].(string)
}

func benchServe(b *testing.B, e *env, method, path string, body []byte) {
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(method, path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+adminToken)
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		e.srv.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("%d %s", w.Code, w.Body)
		}
	}
}

func BenchmarkHealthz(b *testing.B) {
	e, _ := benchEnv(b)
	benchServe(b, e, "GET", "/healthz", nil)
}

func BenchmarkVerifyValidKey(b *testing.B) {
	e, secret := benchEnv(b)
	body, _ := json.Marshal(map[string]any{"key": secret})
	benchServe(b, e, "POST", "/api-keys/verify", body)
}

func BenchmarkVerifyMalformedKey(b *testing.B) {
	e, secret := benchEnv(b)
	body, _ := json.Marshal(map[string]any{"key": secret[:len(secret)-1] + "x"})
	benchServe(b, e, "POST", "/api-keys/verify", body)
}

func BenchmarkVerifyUnknownHandle(b *testing.B) {
	e, _ := benchEnv(b)
	tok, _ := keys.Generate(keys.DefaultPrefix)
	body, _ := json.Marshal(map[string]any{"key": tok.Secret()})
	benchServe(b, e, "POST", "/api-keys/verify", body)
}
