package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	apikeys "github.com/qs/apikeys"
	"github.com/qs/apikeys/internal/testdb"
	"github.com/qs/apikeys/keys"
	"github.com/qs/apikeys/store"
)

// logged is one request of a scenario and what its log line must say.
type logged struct {
	id      string // the X-Request-ID answered
	method  string
	route   string
	status  int
	subject string // "" for none
}

// logScenario sends requests and remembers what their log lines must say.
type logScenario struct {
	t    *testing.T
	e    *env
	sent []logged
}

// send sends a request with a bearer token ("" for none), a JSON body (nil for none) and
// an X-Request-ID (none when ""), checks that the id answered is the one sent when it is
// sane and a fresh UUID otherwise, and records what its log line must say.
func (s *logScenario) send(method, path, route, token string, body any, requestID, subject string) *resp {
	s.t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			s.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	var req *http.Request
	var err error
	if rd != nil {
		req, err = http.NewRequest(method, s.e.http.URL+path, rd)
		req.Header.Set("Content-Type", "application/json")
	} else {
		req, err = http.NewRequest(method, s.e.http.URL+path, nil)
	}
	if err != nil {
		s.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if requestID != "" {
		req.Header.Set("X-Request-ID", requestID)
	}
	r := s.e.send(req)
	id := r.Header.Get("X-Request-ID")
	if values := r.Header.Values("X-Request-ID"); len(values) != 1 {
		s.t.Errorf("%s %s: X-Request-ID %q, want exactly one", method, path, values)
	}
	if sane := requestID != "" && !strings.HasPrefix(requestID, "hostile"); sane && id != requestID {
		s.t.Errorf("%s %s: X-Request-ID %q, want the one sent, %q", method, path, id, requestID)
	} else if !sane {
		if u, err := uuid.Parse(id); err != nil || u.Version() != 7 {
			s.t.Errorf("%s %s: X-Request-ID %q, want a fresh UUIDv7 in place of %q", method, path, id, requestID)
		}
	}
	s.sent = append(s.sent, logged{id: id, method: method, route: route, status: r.Status, subject: subject})
	return r
}

// logLines parses a JSON log, waiting up to 5 s for at least n lines of requests: a
// request's line is written once it is answered, and the client may read the answer first.
func logLines(t *testing.T, e *env, n int) (all []map[string]any, raw string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		raw = e.logs.String()
		all = all[:0]
		requests := 0
		for _, line := range strings.Split(strings.TrimSpace(raw), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("a log line that is not JSON: %q", line)
			}
			if m["msg"] == "request" {
				requests++
			}
			all = append(all, m)
		}
		if requests >= n || time.Now().After(deadline) {
			return all, raw
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRequestLogs runs a full scenario and reads every line the server logged: each request
// has exactly one line, with its id, method, route template, status, latency and caller; the
// X-Request-ID sent is honoured and answered, a hostile one replaced; and no line holds a
// secret, the admin token or any bearer token, nor the tail of one.
func TestRequestLogs(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		s := &logScenario{t: t, e: e}
		admin := apikeys.AdminSubjectID
		created := s.send("POST", "/api-keys", "/api-keys", adminToken,
			map[string]any{"name": "a", "scopes": []string{"api_keys:read", "api_keys:verify"}}, "req-create.1:a_b", admin)
		if created.Status != 201 {
			t.Fatalf("create: %d %s", created.Status, created.Body)
		}
		a := created.obj(t)
		id, secret, subject := a["id"].(string), a["secretKey"].(string), a["subjectId"].(string)
		b := s.send("POST", "/api-keys", "/api-keys", adminToken, map[string]any{"name": "b"}, "", admin).obj(t)
		s.send("GET", "/api-keys", "/api-keys", adminToken, nil, strings.Repeat("x", 128), admin)
		s.send("POST", "/api-keys/verify", "/api-keys/verify", adminToken, map[string]any{"key": secret}, "", admin)
		wrong := forge(t, secret)
		s.send("POST", "/api-keys/verify", "/api-keys/verify", secret, map[string]any{"key": wrong}, "", subject)
		s.send("GET", "/api-keys/"+id, "/api-keys/{id}", secret, nil, "hostile"+strings.Repeat("x", 129), subject)
		s.send("GET", "/api-keys/"+id, "/api-keys/{id}", secret, nil, "hostile id", subject)
		s.send("GET", "/api-keys/"+id, "/api-keys/{id}", secret, nil, "hostile<script>", subject)
		// A known caller refused (the key lacks api_keys:write) is named in its 403 line.
		if r := s.send("POST", "/api-keys", "/api-keys", secret, map[string]any{"name": "c"}, "", subject); r.Status != 403 {
			t.Fatalf("create with a read-only key: %d %s", r.Status, r.Body)
		}
		rotated := s.send("POST", "/api-keys/"+id+"/rotate", "/api-keys/{id}/rotate", adminToken, nil, "", admin).obj(t)
		newSecret := rotated["secretKey"].(string)
		s.send("POST", "/api-keys/"+b["id"].(string)+"/revoke", "/api-keys/{id}/revoke", adminToken, nil, "", admin)
		// Failures: a secret in a body that does not validate, in a query string, a rotated
		// key as bearer, a malformed bearer, none at all, a path no route has.
		s.send("POST", "/api-keys/verify", "/api-keys/verify", adminToken, map[string]any{"key": newSecret, "extra": 1}, "", admin)
		s.send("GET", "/api-keys?secret="+newSecret, "/api-keys", adminToken, nil, "", "") // refused before authentication
		s.send("GET", "/healthz?token="+adminToken, "/healthz", "", nil, "", "")
		s.send("GET", "/api-keys", "/api-keys", secret, nil, "", "")
		s.send("GET", "/api-keys", "/api-keys", "Bearer-"+b["secretKey"].(string), nil, "", "")
		s.send("GET", "/api-keys", "/api-keys", "", nil, "", "")
		s.send("GET", "/nowhere/"+newSecret, "(unmatched)", "", nil, "", "")
		s.send("GET", "/metrics", "/metrics", "", nil, "", "")

		// Two X-Request-ID headers: neither is trusted.
		req, _ := http.NewRequest("GET", e.http.URL+"/healthz", nil)
		req.Header.Add("X-Request-ID", "one")
		req.Header.Add("X-Request-ID", "two")
		r := e.send(req)
		if got := r.Header.Get("X-Request-ID"); got == "one" || got == "two" || len(r.Header.Values("X-Request-ID")) != 1 {
			t.Errorf("two X-Request-IDs sent, %q answered", r.Header.Values("X-Request-ID"))
		}
		s.sent = append(s.sent, logged{id: r.Header.Get("X-Request-ID"), method: "GET", route: "/healthz", status: 200})

		lines, raw := logLines(t, e, len(s.sent))
		byID := map[string][]map[string]any{}
		requests := 0
		for _, l := range lines {
			if l["msg"] != "request" {
				continue
			}
			requests++
			rid, _ := l["request_id"].(string)
			byID[rid] = append(byID[rid], l)
		}
		if requests != len(s.sent) {
			t.Errorf("%d request lines for %d requests", requests, len(s.sent))
		}
		for _, want := range s.sent {
			got := byID[want.id]
			if len(got) != 1 {
				t.Errorf("%s %s (id %s): %d lines, want 1", want.method, want.route, want.id, len(got))
				continue
			}
			l := got[0]
			if l["method"] != want.method || l["route"] != want.route || l["status"] != float64(want.status) || l["level"] != "INFO" {
				t.Errorf("line %v, want method %s, route %s, status %d at INFO", l, want.method, want.route, want.status)
			}
			if ms, ok := l["duration_ms"].(float64); !ok || ms < 0 || ms > 60_000 {
				t.Errorf("line %v: duration_ms %v", l, l["duration_ms"])
			}
			if sub, _ := l["subject"].(string); sub != want.subject {
				t.Errorf("%s %s: subject %q, want %q", want.method, want.route, sub, want.subject)
			}
		}

		tokens := []string{adminToken, secret, newSecret, wrong, b["secretKey"].(string), "Bearer-" + b["secretKey"].(string)}
		for _, tok := range tokens {
			for _, part := range []string{tok, tok[len(tok)-20:]} {
				if strings.Contains(raw, part) {
					t.Errorf("the log holds %q (of a secret or token)", part)
				}
			}
		}
		for _, hostile := range []string{"hostile", "<script>"} {
			if strings.Contains(raw, hostile) {
				t.Errorf("the log holds a hostile request id (%q)", hostile)
			}
		}
	})
}

// listDown is a store whose lists fail as an unreachable database's do.
type listDown struct{ *store.Store }

func (listDown) ListKeys(context.Context, apikeys.KeyFilter) ([]apikeys.Key, *apikeys.Cursor, error) {
	return nil, nil, &apikeys.Error{Code: apikeys.EUNAVAILABLE, Detail: "the database does not answer", Err: errors.New("dial tcp: connection refused")}
}

// TestLogLinesOfARequestCarryItsID: what else the server logs about a request (here the
// warning of a 503) carries the request's id, and the request still has its one line.
func TestLogLinesOfARequestCarryItsID(t *testing.T) {
	st, err := store.Open(context.Background(), testdb.New(t, testdb.SQLite).URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := newServerWith(t, listDown{st}, fastHash)
	s := &logScenario{t: t, e: e}
	if r := s.send("GET", "/api-keys", "/api-keys", adminToken, nil, "trace-503", apikeys.AdminSubjectID); r.Status != 503 {
		t.Fatalf("list with the database down: %d", r.Status)
	}
	lines, _ := logLines(t, e, 1)
	var warned, requested int
	for _, l := range lines {
		switch {
		case l["level"] == "WARN" && l["msg"] == "unavailable":
			warned++
			if l["request_id"] != "trace-503" {
				t.Errorf("the warning of the 503: %v, want request_id trace-503", l)
			}
		case l["msg"] == "request":
			requested++
			if l["request_id"] != "trace-503" || l["status"] != float64(503) {
				t.Errorf("the request line: %v", l)
			}
		}
	}
	if warned != 1 || requested != 1 {
		t.Errorf("%d warnings and %d request lines, want 1 of each:\n%v", warned, requested, lines)
	}
}

// TestRequestIDIsSane: 1 to 128 characters of A-Z a-z 0-9 . _ : - are honoured; anything
// else is replaced.
func TestRequestIDIsSane(t *testing.T) {
	e := newEnv(t, testdb.SQLite, fastHash)
	s := &logScenario{t: t, e: e}
	for _, id := range []string{"a", "A.b_c:d-e", strings.Repeat("9", 128)} {
		s.send("GET", "/healthz", "/healthz", "", nil, id, "")
	}
	for _, id := range []string{"hostile" + strings.Repeat("9", 122), "hostile/x", "hostile\tx", "hostile\"x", "hostile\u00e9", "hostile x"} {
		s.send("GET", "/healthz", "/healthz", "", nil, id, "")
	}
	// A key of this service sent as the request id (a header pasted under the wrong name) is
	// neither logged nor echoed.
	tok, err := keys.Generate(keys.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	if r := s.e.do("GET", "/healthz", "", nil); r.Status != 200 {
		t.Fatal(r.Status)
	}
	req, _ := http.NewRequest("GET", e.http.URL+"/healthz", nil)
	req.Header.Set("X-Request-ID", tok.Secret())
	if got := e.send(req).Header.Get("X-Request-ID"); got == tok.Secret() {
		t.Errorf("a key sent as X-Request-ID was echoed")
	}
	s.sent = append(s.sent, logged{}, logged{}) // the two requests above, in order
	all, _ := logLines(t, e, len(s.sent))
	var lines []map[string]any // the requests' lines (the service logs other events too)
	for _, l := range all {
		if id, _ := l["request_id"].(string); id == tok.Secret() {
			t.Errorf("a key sent as X-Request-ID was logged: %v", l)
		}
		if l["msg"] == "request" {
			lines = append(lines, l)
		}
	}
	if len(lines) != len(s.sent) {
		t.Errorf("%d lines for %d requests", len(lines), len(s.sent))
	}
	for i, l := range lines {
		if id, _ := l["request_id"].(string); id == tok.Secret() {
			t.Errorf("a key sent as X-Request-ID was logged: %v", l)
		}
		if i < len(s.sent) && s.sent[i].id != "" && l["request_id"] != s.sent[i].id {
			t.Errorf("line %d has request_id %v, the answer had %s", i, l["request_id"], s.sent[i].id)
		}
	}
}

// TestClientsCannotWriteErrorLines: a scrape that refuses every encoding promhttp offers is
// the client's doing, not an ERROR of the service.
func TestClientsCannotWriteErrorLines(t *testing.T) {
	e := newEnv(t, testdb.SQLite, fastHash)
	for _, enc := range []string{"identity;q=0", "gzip;q=0, identity;q=0"} {
		req, _ := http.NewRequest("GET", e.http.URL+"/metrics", nil)
		req.Header.Set("Accept-Encoding", enc)
		res, err := e.http.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
	}
	lines, _ := logLines(t, e, 2)
	for _, l := range lines {
		if l["level"] == "ERROR" || l["level"] == "WARN" {
			t.Errorf("a client wrote a %s line: %v", l["level"], l)
		}
	}
}
