package server_test

import (
	"net/http"
	"testing"
)

// TestResponseCheckCatchesDrift shows that the response check used by every test fails on
// the drift it exists to catch.
func TestResponseCheckCatchesDrift(t *testing.T) {
	key := `{"id":"apk_0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","subjectId":"subject_x","name":"n","prefix":"qs_live_abcd","lastFour":"wxyz","hashAlgo":"argon2id","createdBySubjectId":"subject_admin","createdAt":"2024-01-15T10:30:00Z","status":"active"`
	json := http.Header{"Content-Type": {"application/json"}}
	problem := http.Header{"Content-Type": {"application/problem+json"}}
	tests := []struct {
		name   string
		method string
		path   string
		status int
		header http.Header
		body   string
		ok     bool
	}{
		{"a valid key", "GET", "/api-keys/apk_0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", 200, json, key + `}`, true},
		{"a secret where none belongs", "GET", "/api-keys/apk_0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", 200, json, key + `,"secretKey":"qs_live_x"}`, false},
		{"an unknown status", "GET", "/api-keys", 418, problem, `{"type":"about:blank","title":"t","status":418}`, false},
		{"a missing required field", "GET", "/api-keys/apk_0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", 200, json, `{"id":"apk_0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"}`, false},
		{"an error as plain JSON", "GET", "/api-keys/apk_0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", 404, json, `{"type":"about:blank","title":"t","status":404,"detail":"d"}`, false},
		{"a documented problem", "GET", "/api-keys/apk_0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", 404, problem, `{"type":"about:blank","title":"t","status":404,"detail":"d"}`, true},
		{"a bad status enum", "GET", "/api-keys/apk_0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", 200, json, `{"id":"apk_0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","subjectId":"subject_x","name":"n","prefix":"qs_live_abcd","lastFour":"wxyz","hashAlgo":"argon2id","createdBySubjectId":"subject_admin","createdAt":"2024-01-15T10:30:00Z","status":"paused"}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, "http://localhost"+tt.path, nil)
			err := checkResponse(req, nil, &resp{Status: tt.status, Header: tt.header, Body: []byte(tt.body)})
			if got := err == nil; got != tt.ok {
				t.Errorf("checkResponse ok = %v, want %v (err: %v)", got, tt.ok, err)
			}
		})
	}
}
