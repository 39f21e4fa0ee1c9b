package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qs/apikeys/internal/testdb"
	"github.com/qs/apikeys/store"
)

const cliAdminToken = "cli-test-admin-token-0123456789"

// cliHarness drives the command line in-process against a service started by run, and
// holds every secret it has seen so that no run may print one on standard error.
type cliHarness struct {
	t       *testing.T
	env     map[string]string
	svc     *started
	secrets []string
}

type cliResult struct {
	args           []string
	code           int
	stdout, stderr string
}

func newCLIHarness(t *testing.T) *cliHarness {
	t.Helper()
	svc := start(t, map[string]string{
		"APIKEYS_DATABASE_URL":      "file:" + filepath.Join(t.TempDir(), "cli.db"),
		"APIKEYS_ADMIN_TOKEN":       cliAdminToken,
		"APIKEYS_ARGON2_MEMORY_KIB": "64",
		"APIKEYS_ARGON2_ITERATIONS": "1",
	})
	return &cliHarness{
		t:       t,
		svc:     svc,
		env:     map[string]string{"APIKEYS_URL": svc.url, "APIKEYS_TOKEN": cliAdminToken},
		secrets: []string{cliAdminToken},
	}
}

// runCLI runs the binary's command line as main does, returning its exit status.
func runCLI(env map[string]string, stdin string, args ...string) cliResult {
	var out, errb bytes.Buffer
	err := run(context.Background(), args, func(k string) string { return env[k] }, strings.NewReader(stdin), &out, &errb)
	code := exitCode(err, &errb)
	return cliResult{args: args, code: code, stdout: out.String(), stderr: errb.String()}
}

func (h *cliHarness) run(stdin string, args ...string) cliResult {
	h.t.Helper()
	r := runCLI(h.env, stdin, args...)
	for _, s := range h.secrets {
		if strings.Contains(r.stderr, s) {
			h.t.Errorf("%v printed a secret or the token on stderr:\n%s", args, r.stderr)
		}
	}
	return r
}

// ok runs a command that must succeed.
func (h *cliHarness) ok(stdin string, args ...string) cliResult {
	h.t.Helper()
	r := h.run(stdin, args...)
	if r.code != 0 {
		h.t.Fatalf("%v: exit %d, want 0\nstdout:\n%s\nstderr:\n%s", args, r.code, r.stdout, r.stderr)
	}
	return r
}

// fails runs a command that must exit with code.
func (h *cliHarness) fails(code int, stdin string, args ...string) cliResult {
	h.t.Helper()
	r := h.run(stdin, args...)
	if r.code != code {
		h.t.Fatalf("%v: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", args, r.code, code, r.stdout, r.stderr)
	}
	return r
}

// field returns the value of a row of a detail table ("name   value").
func field(t *testing.T, table, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` +(.*)$`).FindStringSubmatch(table)
	if m == nil {
		t.Fatalf("no %s row in:\n%s", name, table)
	}
	return m[1]
}

func hasField(table, name string) bool {
	return regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` `).MatchString(table)
}

// decode parses a command's whole standard output as JSON.
func decode[T any](t *testing.T, r cliResult) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("%v: stdout is not JSON: %v\n%s", r.args, err, r.stdout)
	}
	return v
}

type keyJSON struct {
	ID            string          `json:"id"`
	SubjectID     string          `json:"subjectId"`
	Name          string          `json:"name"`
	Description   *string         `json:"description"`
	TenantID      *string         `json:"tenantId"`
	EnvironmentID *string         `json:"environmentId"`
	IntendedUse   *string         `json:"intendedUse"`
	ExpiresAt     *time.Time      `json:"expiresAt"`
	Metadata      json.RawMessage `json:"metadata"`
	Scopes        []string        `json:"scopes"`
	Status        string          `json:"status"`
	SecretKey     string          `json:"secretKey"`
	RotatedFromID *string         `json:"rotatedFromId"`
	RevokedReason *string         `json:"revokedReason"`
}

var secretPattern = regexp.MustCompile(`qs_live_[A-Za-z0-9]+`)

// TestCLIKeys drives every client command against a running service: create (the secret
// once, on stdout), list with filters and pages, get, update and clear, verify from stdin
// and from the argument, rotate, revoke, subjects get.
func TestCLIKeys(t *testing.T) {
	h := newCLIHarness(t)

	// create, as a table: the secret once, on stdout only, with a warning on stderr.
	before := time.Now()
	r := h.ok("", "keys", "create", "--name", "CI pipeline", "--description", "deploys",
		"--tenant-id", "tenant_acme", "--environment-id", "environment_prod", "--intended-use", "ci-cd",
		"--scopes", "api_keys:read", "--scopes", "api_keys:verify", "--expires-in", "30d", "--metadata", `{"team": "infra"}`)
	secret := field(t, r.stdout, "secretKey")
	if !secretPattern.MatchString(secret) {
		t.Fatalf("secretKey row %q is not a secret", secret)
	}
	h.secrets = append(h.secrets, secret)
	if n := strings.Count(r.stdout, secret); n != 1 {
		t.Errorf("the secret is printed %d times, want once:\n%s", n, r.stdout)
	}
	if !strings.Contains(r.stderr, "cannot be shown again") {
		t.Errorf("create gives no warning that the secret cannot be shown again: %q", r.stderr)
	}
	id := field(t, r.stdout, "id")
	for name, want := range map[string]string{
		"name": "CI pipeline", "description": "deploys", "tenantId": "tenant_acme", "environmentId": "environment_prod",
		"intendedUse": "ci-cd", "scopes": "api_keys:read,api_keys:verify", "metadata": `{"team":"infra"}`, "status": "active",
		"createdBySubjectId": "subject_admin",
	} {
		if got := field(t, r.stdout, name); got != want {
			t.Errorf("create: %s = %q, want %q", name, got, want)
		}
	}
	exp, err := time.Parse(time.RFC3339, field(t, r.stdout, "expiresAt"))
	if err != nil {
		t.Fatal(err)
	}
	if lo, hi := before.Add(720*time.Hour-time.Second), time.Now().Add(720*time.Hour+time.Second); exp.Before(lo) || exp.After(hi) {
		t.Errorf("--expires-in 30d gave expiresAt %s, want within [%s, %s]", exp, lo, hi)
	}

	// create, as JSON: stdout is the service's JSON and nothing else.
	r = h.ok("", "keys", "create", "--name", "backup job", "--tenant-id", "tenant_other", "--intended-use", "backup",
		"--expires-at", "2031-02-03T04:05:06Z", "-o", "json")
	other := decode[keyJSON](t, r)
	if !secretPattern.MatchString(other.SecretKey) || other.Name != "backup job" || other.ExpiresAt == nil ||
		!other.ExpiresAt.Equal(time.Date(2031, 2, 3, 4, 5, 6, 0, time.UTC)) {
		t.Errorf("create -o json: %+v", other)
	}
	h.secrets = append(h.secrets, other.SecretKey)
	if !strings.Contains(r.stderr, "cannot be shown again") {
		t.Errorf("create -o json gives no warning on stderr: %q", r.stderr)
	}

	// get: every field but the secret.
	r = h.ok("", "keys", "get", id)
	if got := field(t, r.stdout, "name"); got != "CI pipeline" {
		t.Errorf("get: name = %q", got)
	}
	if hasField(r.stdout, "secretKey") || strings.Contains(r.stdout, secret) {
		t.Errorf("get shows a secret:\n%s", r.stdout)
	}
	if got := decode[keyJSON](t, h.ok("", "keys", "get", "--id", id, "-o", "json")); got.ID != id || got.SubjectID == "" {
		t.Errorf("get --id -o json: %+v", got)
	}

	// subjects get: the subject created with the key.
	sub := field(t, r.stdout, "subjectId")
	r = h.ok("", "subjects", "get", sub)
	if field(t, r.stdout, "id") != sub || field(t, r.stdout, "type") != "service" || field(t, r.stdout, "tenantId") != "tenant_acme" {
		t.Errorf("subjects get:\n%s", r.stdout)
	}
	if got := decode[map[string]any](t, h.ok("", "subjects", "get", sub, "-o", "json")); got["id"] != sub {
		t.Errorf("subjects get -o json: %v", got)
	}

	// verify, from stdin and from the argument.
	r = h.ok(secret+"\n", "keys", "verify")
	if field(t, r.stdout, "valid") != "true" || field(t, r.stdout, "code") != "VALID" || field(t, r.stdout, "keyId") != id {
		t.Errorf("verify from stdin:\n%s", r.stdout)
	}
	h.ok(secret, "keys", "verify", "-", "--tenant-id", "tenant_acme", "--required-scopes", "api_keys:read,api_keys:verify", "--client-ip", "192.0.2.7")
	if v := decode[map[string]any](t, h.ok("", "keys", "verify", secret, "-o", "json")); v["valid"] != true || v["keyId"] != id {
		t.Errorf("verify by argument -o json: %v", v)
	}
	r = h.fails(exitNotValid, secret, "keys", "verify", "--required-scopes", "api_keys:write")
	if field(t, r.stdout, "code") != "INSUFFICIENT_SCOPES" || !strings.Contains(r.stderr, "INSUFFICIENT_SCOPES") {
		t.Errorf("verify without the scope: stdout\n%s\nstderr %q", r.stdout, r.stderr)
	}
	h.fails(exitNotValid, secret, "keys", "verify", "--tenant-id", "tenant_other")
	r = h.fails(exitNotValid, "", "keys", "verify", "qs_live_notavalidsecret0000000000")
	if field(t, r.stdout, "code") != "MALFORMED" && field(t, r.stdout, "code") != "NOT_FOUND" {
		t.Errorf("verify of a made-up secret:\n%s", r.stdout)
	}
	h.fails(exitUsage, "\n", "keys", "verify")

	// update: set fields, then clear every optional one.
	r = h.ok("", "keys", "update", id, "--name", "CI pipeline 2", "--description", "deploys twice",
		"--expires-at", "2032-01-01T00:00:00Z", "--intended-use", "ci", "--metadata", `{"team":"platform"}`, "--scopes", "api_keys:read")
	for name, want := range map[string]string{
		"name": "CI pipeline 2", "description": "deploys twice", "expiresAt": "2032-01-01T00:00:00Z",
		"intendedUse": "ci", "metadata": `{"team":"platform"}`, "scopes": "api_keys:read",
	} {
		if got := field(t, r.stdout, name); got != want {
			t.Errorf("update: %s = %q, want %q", name, got, want)
		}
	}
	cleared := decode[keyJSON](t, h.ok("", "keys", "update", id, "--clear", "description,expires-at", "--clear", "intended-use",
		"--clear", "metadata", "--clear", "scopes", "-o", "json"))
	if cleared.Description != nil || cleared.ExpiresAt != nil || cleared.IntendedUse != nil || cleared.Metadata != nil ||
		cleared.Scopes == nil || len(cleared.Scopes) != 0 || cleared.Name != "CI pipeline 2" {
		t.Errorf("update --clear left %+v", cleared)
	}
	r = h.ok("", "keys", "get", id)
	for _, name := range []string{"description", "expiresAt", "intendedUse", "metadata"} {
		if hasField(r.stdout, name) {
			t.Errorf("get after --clear still shows %s:\n%s", name, r.stdout)
		}
	}

	// rotate with a grace period: a new secret once; the old one works during the grace.
	r = h.ok("", "keys", "rotate", id, "--grace-period", "1h", "--name", "CI pipeline 3")
	newSecret := field(t, r.stdout, "secretKey")
	h.secrets = append(h.secrets, newSecret)
	newID := field(t, r.stdout, "id")
	if newSecret == secret || strings.Count(r.stdout, newSecret) != 1 || field(t, r.stdout, "rotatedFromId") != id ||
		field(t, r.stdout, "name") != "CI pipeline 3" || field(t, r.stdout, "subjectId") != sub {
		t.Errorf("rotate:\n%s", r.stdout)
	}
	if !strings.Contains(r.stderr, "cannot be shown again") {
		t.Errorf("rotate gives no warning: %q", r.stderr)
	}
	if !strings.Contains(r.stderr, "The old key "+id+" keeps working for 1h0m0s, then expires") {
		t.Errorf("rotate does not say how long the old key keeps working: %q", r.stderr)
	}
	h.ok(newSecret, "keys", "verify")
	h.ok(secret, "keys", "verify")
	if got := decode[keyJSON](t, h.ok("", "keys", "get", id, "-o", "json")); got.ExpiresAt == nil || got.ExpiresAt.Before(time.Now().Add(59*time.Minute)) {
		t.Errorf("the rotated key's grace: expiresAt %v, want about an hour from now", got.ExpiresAt)
	}

	// revoke: the key is answered REVOKED from then on (exit 3).
	r = h.ok("", "keys", "revoke", newID, "--reason", "leaked in a log")
	if field(t, r.stdout, "status") != "revoked" || field(t, r.stdout, "revokedReason") != "leaked in a log" {
		t.Errorf("revoke:\n%s", r.stdout)
	}
	r = h.fails(exitNotValid, newSecret+"\n", "keys", "verify")
	if field(t, r.stdout, "code") != "REVOKED" || !strings.Contains(r.stderr, "REVOKED") {
		t.Errorf("verify of a revoked key: stdout\n%s\nstderr %q", r.stdout, r.stderr)
	}
	r = h.fails(exitNotValid, "", "keys", "verify", newSecret, "-o", "json")
	if v := decode[map[string]any](t, r); v["valid"] != false || v["code"] != "REVOKED" {
		t.Errorf("verify -o json of a revoked key: %v", v)
	}

	// list with a filter: only the first tenant's keys (the original and its replacement).
	r = h.ok("", "keys", "list", "--tenant-id", "tenant_acme")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID ") || !strings.HasPrefix(lines[1], newID) || !strings.HasPrefix(lines[2], id) {
		t.Errorf("list --tenant-id tenant_acme:\n%s", r.stdout)
	}
	for _, filter := range [][]string{{"--status", "revoked"}, {"--intended-use", "backup"}, {"--subject-id", sub}, {"--created-by-subject-id", "subject_admin"}, {"--environment-id", "environment_prod"}} {
		keys := decode[[]keyJSON](t, h.ok("", append([]string{"keys", "list", "-o", "json"}, filter...)...))
		want := map[string][]string{"--status": {newID}, "--intended-use": {other.ID}, "--subject-id": {newID, id},
			"--created-by-subject-id": {newID, other.ID, id}, "--environment-id": {newID, id}}[filter[0]]
		if got := ids(keys); !slices.Equal(got, want) {
			t.Errorf("list %v: %v, want %v", filter, got, want)
		}
	}
}

func ids(keys []keyJSON) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.ID
	}
	return out
}

// TestCLIListPages: --limit gives one page and the cursor of the next on stderr, --cursor
// reads it, --all follows every page (one JSON array with -o json).
func TestCLIListPages(t *testing.T) {
	h := newCLIHarness(t)
	var created []string
	for i := range 5 {
		r := h.ok("", "keys", "create", "--name", "page key", "--intended-use", "paging", "-o", "json")
		k := decode[keyJSON](t, r)
		h.secrets = append(h.secrets, k.SecretKey)
		created = append(created, k.ID)
		if i == 0 {
			h.ok("", "keys", "create", "--name", "not paged", "-o", "json") // filtered out below
		}
	}
	slices.Reverse(created) // newest first

	r := h.ok("", "keys", "list", "--intended-use", "paging", "--limit", "2", "-o", "json")
	first := decode[[]keyJSON](t, r)
	if got := ids(first); !slices.Equal(got, created[:2]) {
		t.Fatalf("first page %v, want %v", got, created[:2])
	}
	m := regexp.MustCompile(`--cursor (\S+)`).FindStringSubmatch(r.stderr)
	if m == nil {
		t.Fatalf("no cursor for the next page on stderr: %q", r.stderr)
	}
	second := decode[[]keyJSON](t, h.ok("", "keys", "list", "--intended-use", "paging", "--limit", "2", "--cursor", m[1], "-o", "json"))
	if got := ids(second); !slices.Equal(got, created[2:4]) {
		t.Errorf("second page %v, want %v", got, created[2:4])
	}

	r = h.ok("", "keys", "list", "--intended-use", "paging", "--limit", "2", "--all", "-o", "json")
	if got := ids(decode[[]keyJSON](t, r)); !slices.Equal(got, created) {
		t.Errorf("--all -o json: %v, want %v", got, created)
	}
	if strings.Contains(r.stderr, "--cursor") {
		t.Errorf("--all still offers a cursor: %q", r.stderr)
	}
	r = h.ok("", "keys", "list", "--intended-use", "paging", "--limit", "1", "--all")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != len(created)+1 {
		t.Fatalf("--all table has %d lines, want a header and %d keys:\n%s", len(lines), len(created), r.stdout)
	}
	for i, id := range created {
		if !strings.HasPrefix(lines[i+1], id+" ") {
			t.Errorf("--all table line %d = %q, want key %s", i+1, lines[i+1], id)
		}
	}
	r = h.ok("", "keys", "list", "--intended-use", "nothing-here", "--all", "-o", "json")
	if strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("--all of nothing: %q, want []", r.stdout)
	}
}

// TestCLIErrors: an API error exits 1 with the problem's title, detail and every field
// error on stderr; so does a refused connection; usage errors exit 2 without a request.
func TestCLIErrors(t *testing.T) {
	h := newCLIHarness(t)

	// What the service itself answers, to compare the printed problem with.
	problemOf := func(method, path, body string) problem {
		t.Helper()
		req, _ := http.NewRequest(method, h.svc.url+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+cliAdminToken)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var p problem
		if err := json.NewDecoder(res.Body).Decode(&p); err != nil || p.Title == "" {
			t.Fatalf("%s %s: not a problem (%v)", method, path, err)
		}
		return p
	}
	printsProblem := func(r cliResult, p problem, status string) {
		t.Helper()
		if !strings.Contains(r.stderr, p.Title) || !strings.Contains(r.stderr, p.Detail) || !strings.Contains(r.stderr, status) {
			t.Errorf("%v: stderr %q lacks the title %q, detail %q or status %s", r.args, r.stderr, p.Title, p.Detail, status)
		}
		for _, f := range p.Errors {
			if !strings.Contains(r.stderr, f.Field+": "+f.Detail) {
				t.Errorf("%v: stderr %q lacks the field error %s: %s", r.args, r.stderr, f.Field, f.Detail)
			}
		}
		if r.stdout != "" {
			t.Errorf("%v: an error printed on stdout: %q", r.args, r.stdout)
		}
		if !regexp.MustCompile(`request id [0-9a-f-]{36}, in the service's log`).MatchString(r.stderr) {
			t.Errorf("%v: stderr %q does not name the request id", r.args, r.stderr)
		}
	}

	const missing = "apk_01900000-0000-7000-8000-000000000000"
	r := h.fails(exitFailure, "", "keys", "get", missing)
	printsProblem(r, problemOf("GET", "/api-keys/"+missing, ""), "404")
	h.fails(exitFailure, "", "keys", "revoke", missing)

	r = h.fails(exitFailure, "", "keys", "create", "--name", "x", "--tenant-id", "not a tenant!", "--scopes", "api_keys:everything")
	p := problemOf("POST", "/api-keys", `{"name":"x","tenantId":"not a tenant!","scopes":["api_keys:everything"]}`)
	if len(p.Errors) < 2 {
		t.Fatalf("the service named %d fields, want 2: %+v", len(p.Errors), p)
	}
	printsProblem(r, p, "400")

	r = h.fails(exitFailure, "", "keys", "list", "--tenant-id", "lost!")
	printsProblem(r, problemOf("GET", "/api-keys?tenantId=lost%21", ""), "400")

	r = h.fails(exitFailure, "", "keys", "update", missing, "--name", "y", "--clear", "description")
	printsProblem(r, problemOf("PATCH", "/api-keys/"+missing, `{"name":"y","description":null}`), "404")

	// A wrong token: 401, and the token is not printed.
	wrong := map[string]string{"APIKEYS_URL": h.svc.url, "APIKEYS_TOKEN": "wrong-token-0123456789"}
	if r := runCLI(wrong, "", "keys", "list"); r.code != exitFailure || !strings.Contains(r.stderr, "401") || strings.Contains(r.stderr, "wrong-token") {
		t.Errorf("a wrong token: exit %d, stderr %q", r.code, r.stderr)
	}

	// A refused connection.
	closed := map[string]string{"APIKEYS_URL": "http://" + freeAddr(t), "APIKEYS_TOKEN": cliAdminToken}
	for _, args := range [][]string{{"keys", "list"}, {"keys", "verify", "qs_live_x"}, {"subjects", "get", "subject_x"}} {
		r := runCLI(closed, "", args...)
		if r.code != exitFailure || !strings.Contains(r.stderr, "cannot reach the service") || strings.Contains(r.stderr, cliAdminToken) {
			t.Errorf("%v with nothing listening: exit %d, stderr %q", args, r.code, r.stderr)
		}
	}

	// Usage errors: 2, a hint, and no request (the service would have answered otherwise).
	for _, args := range [][]string{
		{"frobnicate"},
		{"serve", "extra"},
		{"keys", "frobnicate"},
		{"keys", "list", "--bogus"},
		{"keys", "list", "--limit", "many"},
		{"keys", "list", "--limit", "0"},
		{"keys", "list", "--limit", "101"},
		{"keys", "list", "--status", "bogus"},
		{"keys", "list", "-o", "yaml"},
		{"keys", "list", "extra"},
		{"keys", "create"},
		{"keys", "create", "--name", "x", "--expires-at", "tomorrow"},
		{"keys", "create", "--name", "x", "--expires-in", "soon"},
		{"keys", "create", "--name", "x", "--expires-in", "30x"},
		{"keys", "creat", "--name", "x"},
		{"key", "list"},
		{"keys", "create", "--name", "x", "--expires-in", "-1h"},
		{"keys", "create", "--name", "x", "--expires-at", "2031-01-01T00:00:00Z", "--expires-in", "1h"},
		{"keys", "create", "--name", "x", "--metadata", "[1, 2]"},
		{"keys", "get"},
		{"keys", "get", missing, "--id", missing},
		{"keys", "get", missing, missing},
		{"keys", "update", missing},
		{"keys", "update", missing, "--clear", "name"},
		{"keys", "update", missing, "--description", "d", "--clear", "description"},
		{"keys", "update", missing, "--expires-in", "1h", "--clear", "expires-at"},
		{"keys", "rotate", missing, "--grace-period", "1.5s"},
		{"keys", "rotate", missing, "--grace-period", "-1h"},
		{"keys", "verify", "a", "b"},
		{"subjects", "get"},
	} {
		r := h.run("", args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, "--help' for usage") {
			t.Errorf("%v: exit %d, want %d with a hint; stderr %q", args, r.code, exitUsage, r.stderr)
		}
	}
	noToken := map[string]string{"APIKEYS_URL": h.svc.url}
	if r := runCLI(noToken, "", "keys", "list"); r.code != exitUsage || !strings.Contains(r.stderr, "APIKEYS_TOKEN") {
		t.Errorf("no token: exit %d, stderr %q", r.code, r.stderr)
	}
	serverToken := map[string]string{"APIKEYS_URL": h.svc.url, "APIKEYS_ADMIN_TOKEN": cliAdminToken}
	if r := runCLI(serverToken, "", "keys", "list"); r.code != exitUsage || !strings.Contains(r.stderr, `export APIKEYS_TOKEN="$APIKEYS_ADMIN_TOKEN"`) ||
		strings.Contains(r.stderr, cliAdminToken) {
		t.Errorf("only the server's APIKEYS_ADMIN_TOKEN set: exit %d, stderr %q", r.code, r.stderr)
	}
	badURL := map[string]string{"APIKEYS_URL": "localhost:8080", "APIKEYS_TOKEN": cliAdminToken}
	if r := runCLI(badURL, "", "keys", "list"); r.code != exitUsage || !strings.Contains(r.stderr, "APIKEYS_URL") {
		t.Errorf("a URL without a scheme: exit %d, stderr %q", r.code, r.stderr)
	}
	if got := decode[[]keyJSON](t, h.ok("", "keys", "list", "-o", "json")); len(got) != 0 {
		t.Errorf("failed and refused commands created %d keys", len(got))
	}
}

// TestCLIHelp: the help says where the token comes from and what verify exits with.
func TestCLIHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"keys", "--help"}, {"keys", "create", "--help"}, {"subjects", "get", "-h"}, {"keys"}} {
		r := runCLI(map[string]string{}, "", args...)
		if r.code != 0 || !strings.Contains(r.stdout, "Usage:") {
			t.Errorf("%v: exit %d\n%s%s", args, r.code, r.stdout, r.stderr)
		}
	}
	r := runCLI(map[string]string{}, "", "keys", "--help")
	if !strings.Contains(r.stdout, "APIKEYS_TOKEN") || !strings.Contains(r.stdout, "admin token") {
		t.Errorf("keys --help does not say where the token comes from:\n%s", r.stdout)
	}
	r = runCLI(map[string]string{}, "", "keys", "verify", "--help")
	if !strings.Contains(r.stdout, "3 when it is any other code") || !strings.Contains(r.stdout, "standard input") {
		t.Errorf("verify --help does not document its exit status and stdin:\n%s", r.stdout)
	}
}

// TestCLIMigrate applies the migrations to fresh databases, then finds nothing to do.
func TestCLIMigrate(t *testing.T) {
	fresh := map[string]string{testdb.SQLite: "file:" + filepath.Join(t.TempDir(), "new", "fresh.db")}
	for _, engine := range testdb.Engines(t) {
		if engine != testdb.SQLite {
			fresh[engine] = testdb.New(t, engine).URL
		}
	}
	for engine, url := range fresh {
		t.Run(engine, func(t *testing.T) {
			env := map[string]string{"APIKEYS_DATABASE_URL": url}
			r := runCLI(env, "", "migrate")
			if r.code != 0 || !regexp.MustCompile(`(?m)^0001_init\.sql +applied now$`).MatchString(r.stdout) {
				t.Fatalf("migrate: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
			if want := "The " + dbName(url) + " is up to date."; !strings.Contains(r.stdout, want) || !strings.Contains(want, "database ") {
				t.Errorf("migrate does not name the database it migrated (%q):\n%s", want, r.stdout)
			}
			r = runCLI(env, "", "migrate")
			if r.code != 0 || strings.Contains(r.stdout, "applied now") || !strings.Contains(r.stdout, "0001_init.sql") {
				t.Errorf("migrate again: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
			ms, err := store.Migrate(context.Background(), url, store.Options{})
			if err != nil || len(ms) == 0 || ms[0].New {
				t.Errorf("after migrate, store.Migrate = %+v, %v", ms, err)
			}
		})
	}
	r := runCLI(map[string]string{"APIKEYS_DATABASE_URL": "postgres://u:s3cret-pw@127.0.0.1:1/db", "APIKEYS_DB_TIMEOUT": "1s"}, "", "migrate")
	if r.code != exitFailure || strings.Contains(r.stderr, "s3cret-pw") {
		t.Errorf("migrate of an unreachable database: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestCLIServeIsTheDefault: with no arguments at all the binary serves, as `make run` relies on.
func TestCLIServeIsTheDefault(t *testing.T) {
	addr := freeAddr(t)
	env := map[string]string{"APIKEYS_ADDR": addr, "APIKEYS_DATABASE_URL": "file:" + filepath.Join(t.TempDir(), "d.db"), "APIKEYS_ADMIN_TOKEN": cliAdminToken}
	ctx, cancel := context.WithCancel(context.Background())
	var out lockedBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, func(k string) string { return env[k] }, nil, &out, &out) }()
	var once sync.Once
	stop := func() error {
		var err error = errors.New("run did not return after cancel")
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(20 * time.Second):
			}
		})
		return err
	}
	defer stop()
	deadline := time.Now().Add(15 * time.Second)
	for {
		res, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			res.Body.Close()
			break
		}
		select {
		case err := <-done:
			t.Fatalf("run with no arguments returned: %v\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("run with no arguments does not serve: %v\n%s", err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := stop(); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}
