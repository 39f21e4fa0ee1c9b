package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestCLIAgainstAHostileServer: what a proxy or a hostile server in the service's place
// answers cannot take the token or a secret elsewhere, put it on stderr, drive the terminal,
// or exhaust the client's memory.
func TestCLIAgainstAHostileServer(t *testing.T) {
	const token = "hostile-test-token-0123456789"
	const secret = "qs_live_AbCd0123456789abcdefghijklmnopqrstuvwxyz00"
	var elsewhere atomic.Int64
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	defer sink.Close()
	mode := ""
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch mode {
		case "redirect":
			http.Redirect(w, r, sink.URL+r.URL.Path, http.StatusPermanentRedirect)
		case "echo":
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte("you sent " + r.Header.Get("Authorization")))
		case "escapes":
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`[{"id":"apk_\u001b[31mred","name":"n\u001b]52;c;cHduZWQ=\u0007\u202e","status":"active","subjectId":"subject_x","prefix":"qs_live_abcd","lastFour":"wxyz","hashAlgo":"argon2id","createdBySubjectId":"subject_x","createdAt":"2026-01-01T00:00:00Z"}]`))
		case "problem":
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"type":"about:blank","title":"Bad\u001b[2J","status":400,"detail":"` + strings.Repeat("d", 100_000) + `"}`))
		case "empty":
			w.WriteHeader(http.StatusOK)
		case "created-as-ok":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNoContent)
		case "huge":
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte("["))
			chunk := []byte(strings.Repeat(" ", 1<<20))
			for range 40 {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}
	}))
	defer fake.Close()
	env := map[string]string{"APIKEYS_URL": fake.URL, "APIKEYS_TOKEN": token}
	clean := func(r cliResult) {
		t.Helper()
		out := r.stdout + r.stderr
		if strings.Contains(out, token) || strings.Contains(out, secret) {
			t.Errorf("%s: %v printed the token or the secret:\n%s", mode, r.args, out)
		}
		if strings.ContainsAny(out, "\x1b\x07\u202e") {
			t.Errorf("%s: %v printed terminal controls:\n%q", mode, r.args, out)
		}
	}

	mode = "redirect"
	for _, args := range [][]string{{"keys", "list"}, {"keys", "verify"}} {
		r := runCLI(env, secret+"\n", args...)
		clean(r)
		if r.code != exitFailure || !strings.Contains(r.stderr, "308") {
			t.Errorf("redirect: %v: exit %d, stderr %q", args, r.code, r.stderr)
		}
	}
	if n := elsewhere.Load(); n != 0 {
		t.Errorf("the CLI followed a redirect to another server %d times (with the token, or the secret of keys verify)", n)
	}

	mode = "echo"
	r := runCLI(env, "", "keys", "list")
	clean(r)
	if r.code != exitFailure || !strings.Contains(r.stderr, "<APIKEYS_TOKEN>") {
		t.Errorf("echo: exit %d, stderr %q", r.code, r.stderr)
	}

	mode = "escapes"
	clean(runCLI(env, "", "keys", "list"))

	mode = "problem"
	r = runCLI(env, "", "keys", "list")
	clean(r)
	if r.code != exitFailure || len(r.stderr) > 2000 {
		t.Errorf("problem: exit %d, %d bytes of stderr", r.code, len(r.stderr))
	}

	// A success the API does not document (a proxy's page, a 204) is an error, not a crash.
	for _, mode = range []string{"empty", "created-as-ok"} {
		for _, args := range [][]string{{"keys", "list"}, {"keys", "create", "--name", "n"}, {"keys", "verify", secret}, {"subjects", "get", "subject_x"}} {
			r := runCLI(env, "", args...)
			clean(r)
			if r.code != exitFailure || !strings.Contains(r.stderr, "not one the API documents") {
				t.Errorf("%s: %v: exit %d, stderr %q", mode, args, r.code, r.stderr)
			}
		}
	}

	mode = "huge"
	start := time.Now()
	r = runCLI(env, "", "keys", "list")
	clean(r)
	if r.code != exitFailure || !strings.Contains(r.stderr, "larger than") || time.Since(start) > 20*time.Second {
		t.Errorf("huge: exit %d after %v, stderr %q", r.code, time.Since(start), r.stderr)
	}
}
