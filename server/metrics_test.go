package server_test

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/qs/apikeys/internal/testdb"
	"github.com/qs/apikeys/keys"
	"github.com/qs/apikeys/server"
	"github.com/qs/apikeys/store"
)

// newMetricsEnv is newEnv with the store's pool given to the server, as cmd/apikeys does.
func newMetricsEnv(t *testing.T, engine string) *env {
	t.Helper()
	st, err := store.Open(context.Background(), testdb.New(t, engine).URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := newServerWith(t, st, fastHash, func(c *server.Config) { c.DB = st.DB() })
	e.engine, e.store = engine, st
	return e
}

// scrape is one reading of GET /metrics, checked against openapi.yaml by e.do.
type scrape struct {
	text     []byte
	families map[string]*dto.MetricFamily
}

func (e *env) scrape(t *testing.T) scrape {
	t.Helper()
	r := e.do("GET", "/metrics", "", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", r.Status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain;") || !strings.Contains(ct, "version=0.0.4") {
		t.Errorf("GET /metrics Content-Type %q, want Prometheus's text format", ct)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(r.Body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, r.Body)
	}
	return scrape{text: r.Body, families: families}
}

// value is the value of the series of name whose labels include labels (counter, gauge,
// or a histogram's count), and whether there is one.
func (s scrape) value(name string, labels ...string) (float64, bool) {
	f := s.families[name]
	if f == nil {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		if matches(m, labels) {
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue(), true
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue(), true
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount()), true
			}
		}
	}
	return 0, false
}

func matches(m *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// series returns every series of name by the values of labels, joined by spaces.
func (s scrape) series(name string, labels ...string) map[string]float64 {
	out := map[string]float64{}
	for _, m := range s.families[name].GetMetric() {
		var key []string
		for _, want := range labels {
			for _, l := range m.GetLabel() {
				if l.GetName() == want {
					key = append(key, l.GetValue())
				}
			}
		}
		v := m.GetCounter().GetValue()
		if m.GetHistogram() != nil {
			v = float64(m.GetHistogram().GetSampleCount())
		}
		out[strings.Join(key, " ")] = v
	}
	return out
}

// delta is after minus before, series by series, leaving out those that did not move.
func delta(before, after map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// TestMetricsCountTheScenario runs a scenario (create, list, verify VALID and NOT_FOUND,
// bearer authentication with a key, rotate, revoke, a 400, two 401s, a usage flush) between
// two scrapes and checks that every counter moved by exactly what the scenario did, and
// that the output is valid for Prometheus (promlint) and names no key, subject or secret.
func TestMetricsCountTheScenario(t *testing.T) {
	for _, engine := range testdb.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			e := newMetricsEnv(t, engine)
			// Until the feed vouches for it the cache is bypassed, and hits would not show.
			deadline := time.Now().Add(10 * time.Second)
			for {
				if v, _ := e.scrape(t).value("apikeys_change_feed_connected"); v == 1 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("apikeys_change_feed_connected never became 1")
				}
				time.Sleep(50 * time.Millisecond)
			}
			hitsBefore := e.svc.Snapshot().Cache.Hits
			before := e.scrape(t)

			a := e.create(map[string]any{"name": "a", "tenantId": "tenant_metrics", "scopes": []string{"api_keys:read"}})
			b := e.create(map[string]any{"name": "b"})
			if r := e.do("GET", "/api-keys", adminToken, nil); r.Status != 200 {
				t.Fatalf("list: %d", r.Status)
			}
			for i := range 2 { // the second is a hit
				if v := e.verify(map[string]any{"key": a["secretKey"]}); v["code"] != "VALID" {
					t.Fatalf("verify %d: %v", i, v)
				}
			}
			unknown, _ := keys.Generate(keys.DefaultPrefix)
			if v := e.verify(map[string]any{"key": unknown.Secret()}); v["code"] != "NOT_FOUND" {
				t.Fatalf("verify an unknown key: %v", v)
			}
			if r := e.do("GET", "/api-keys/"+a["id"].(string), a["secretKey"].(string), nil); r.Status != 200 {
				t.Fatalf("get with the key as bearer: %d %s", r.Status, r.Body)
			}
			rotated := e.do("POST", "/api-keys/"+a["id"].(string)+"/rotate", adminToken, nil)
			if rotated.Status != 201 {
				t.Fatalf("rotate: %d %s", rotated.Status, rotated.Body)
			}
			if v := e.verify(map[string]any{"key": a["secretKey"]}); v["code"] != "REVOKED" {
				t.Fatalf("verify the rotated key: %v", v)
			}
			if r := e.do("POST", "/api-keys/"+b["id"].(string)+"/revoke", adminToken, nil); r.Status != 200 {
				t.Fatalf("revoke: %d %s", r.Status, r.Body)
			}
			if r := e.do("POST", "/api-keys", adminToken, map[string]any{"name": 7}); r.Status != 400 {
				t.Fatalf("a bad body: %d", r.Status)
			}
			if r := e.do("GET", "/api-keys", "not-a-key", nil); r.Status != 401 {
				t.Fatalf("a malformed bearer: %d", r.Status)
			}
			if r := e.do("GET", "/api-keys", "", nil); r.Status != 401 {
				t.Fatalf("no bearer: %d", r.Status)
			}
			if err := e.svc.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			hitsAfter := e.svc.Snapshot().Cache.Hits
			after := e.scrape(t)

			// Requests: exactly those sent, by route template (the one scrape in between
			// included), and one latency observation for each.
			wantRequests := map[string]float64{
				"POST /api-keys 201": 2, "POST /api-keys 400": 1,
				"GET /api-keys 200": 1, "GET /api-keys 401": 2,
				"POST /api-keys/verify 200":      4,
				"GET /api-keys/{id} 200":         1,
				"POST /api-keys/{id}/rotate 201": 1,
				"POST /api-keys/{id}/revoke 200": 1,
				"GET /metrics 200":               1,
			}
			requests := delta(before.series("apikeys_http_requests_total", "method", "route", "status"),
				after.series("apikeys_http_requests_total", "method", "route", "status"))
			if !maps.Equal(requests, wantRequests) {
				t.Errorf("apikeys_http_requests_total moved by\n%v\nwant\n%v", requests, wantRequests)
			}
			latency := delta(before.series("apikeys_http_request_duration_seconds", "method", "route"),
				after.series("apikeys_http_request_duration_seconds", "method", "route"))
			wantLatency := map[string]float64{}
			for k, v := range wantRequests {
				wantLatency[k[:strings.LastIndex(k, " ")]] += v
			}
			if !maps.Equal(latency, wantLatency) {
				t.Errorf("apikeys_http_request_duration_seconds counts moved by\n%v\nwant\n%v", latency, wantLatency)
			}

			verifications := delta(before.series("apikeys_verifications_total", "via", "code"),
				after.series("apikeys_verifications_total", "via", "code"))
			wantVerifications := map[string]float64{"verify VALID": 2, "verify NOT_FOUND": 1, "verify REVOKED": 1,
				"bearer VALID": 1, "bearer MALFORMED": 1}
			if !maps.Equal(verifications, wantVerifications) {
				t.Errorf("apikeys_verifications_total moved by %v, want %v", verifications, wantVerifications)
			}
			if n := len(after.series("apikeys_verifications_total", "via", "code")); n != 19 {
				t.Errorf("%d verification series, want every verdict of each kind (11 + 8)", n)
			}

			moved := func(name string) float64 {
				t.Helper()
				a, ok := after.value(name)
				b, _ := before.value(name)
				if !ok {
					t.Errorf("%s is missing", name)
				}
				return a - b
			}
			// Five lookups of a key (two verifications of a, the unknown key, a as bearer,
			// a again after the rotation dropped it): hits only while the feed vouched.
			// The unknown key is a hit too when the handle filter had loaded (no read).
			hits, misses := moved("apikeys_key_cache_hits_total"), moved("apikeys_key_cache_misses_total")
			absent := moved("apikeys_handle_filter_absent_total")
			if hits+misses != 5 || hits < 1 || misses < 3-absent || absent > 1 {
				t.Errorf("cache hits %v, misses %v, handle filter %v: want 5 lookups, at least 3 misses (first reads, the unknown key's unless the filter answered it) and a hit", hits, misses, absent)
			}
			if got, want := hits, float64(hitsAfter-hitsBefore); got != want {
				t.Errorf("cache hits moved by %v, the verifier counted %v", got, want)
			}
			// Five keys written (two created, one rotated into a new one, one revoked), each
			// heard once from this process; PostgreSQL's NOTIFY may echo each once more.
			inval := moved("apikeys_key_cache_invalidations_total")
			if inval < 5 || inval > 5 && engine == testdb.SQLite || inval > 10 {
				t.Errorf("cache invalidations moved by %v, want 5 (at most 10 on PostgreSQL)", inval)
			}
			if v := moved("apikeys_key_cache_flushes_total"); v != 0 {
				t.Errorf("cache flushes moved by %v with the feed up", v)
			}
			if v, _ := after.value("apikeys_change_feed_connected"); v != 1 {
				t.Errorf("apikeys_change_feed_connected = %v", v)
			}
			// Three hashes (two creates, a rotation) and one verification by argon2id: the
			// others were answered by the proof memo.
			if v := moved("apikeys_argon2_wait_seconds"); v != 4 {
				t.Errorf("argon2id waits observed: %v, want 4", v)
			}
			if v, _ := after.value("apikeys_argon2_in_flight"); v != 0 {
				t.Errorf("argon2id in flight after the scenario: %v", v)
			}
			if v, _ := after.value("apikeys_argon2_slots"); v < 1 {
				t.Errorf("argon2id slots: %v", v)
			}
			// Key a was used by three requests: one row, in one batch.
			if v := moved("apikeys_usage_flushes_total"); v != 1 {
				t.Errorf("usage flushes moved by %v, want 1", v)
			}
			if v := moved("apikeys_usage_flushed_keys_total"); v != 1 {
				t.Errorf("usage rows moved by %v, want 1", v)
			}

			// The pool, the runtime and the process.
			maxOpen, ok := after.value("go_sql_max_open_connections", "db_name", "apikeys")
			if !ok || maxOpen < 1 {
				t.Errorf("go_sql_max_open_connections = %v, %v", maxOpen, ok)
			}
			for _, name := range []string{"go_sql_open_connections", "go_goroutines", "go_memstats_heap_alloc_bytes",
				"process_cpu_seconds_total", "process_resident_memory_bytes"} {
				if _, ok := after.value(name); !ok {
					t.Errorf("%s is missing", name)
				}
			}

			problems, err := promlint.New(bytes.NewReader(after.text)).Lint()
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range problems {
				t.Errorf("promlint: %s: %s", p.Metric, p.Text)
			}
			for name := range after.families {
				if !strings.HasPrefix(name, "apikeys_") && !strings.HasPrefix(name, "go_") &&
					!strings.HasPrefix(name, "process_") && !strings.HasPrefix(name, "promhttp_") {
					t.Errorf("metric %s has none of the expected prefixes", name)
				}
			}

			// No label names a key, a subject, a tenant, a token or an address.
			repl := rotated.obj(t)
			for _, s := range []string{a["id"].(string), a["subjectId"].(string), b["id"].(string), repl["id"].(string),
				"tenant_metrics", a["secretKey"].(string), repl["secretKey"].(string), b["secretKey"].(string),
				unknown.Secret(), adminToken, "127.0.0.1"} {
				if bytes.Contains(after.text, []byte(s)) {
					t.Errorf("/metrics names %q", s)
				}
			}
		})
	}
}

// TestMetricsLabelsStayBounded: requests that match no route, or use a method HTTP does
// not define, add no series of their own.
func TestMetricsLabelsStayBounded(t *testing.T) {
	e := newEnv(t, testdb.SQLite, fastHash)
	for i := range 3 {
		e.do("GET", fmt.Sprintf("/no/such/path/%d", i), "", nil)
		req, _ := http.NewRequest(fmt.Sprintf("BREW%d", i), e.http.URL+"/healthz", nil)
		e.send(req)
	}
	s := e.scrape(t)
	got := s.series("apikeys_http_requests_total", "method", "route", "status")
	want := map[string]float64{"GET (unmatched) 404": 3, "OTHER /healthz 405": 3}
	keysGot := slices.Sorted(maps.Keys(got))
	for k, v := range want {
		if got[k] != v {
			t.Errorf("series %q = %v, want %v (all: %v)", k, got[k], v, keysGot)
		}
	}
	if len(got) != len(want) {
		t.Errorf("series %v, want only %v", keysGot, slices.Sorted(maps.Keys(want)))
	}
}

// TestMetricsOfServersApart: each server counts in its own registry.
func TestMetricsOfServersApart(t *testing.T) {
	a, b := newEnv(t, testdb.SQLite, fastHash), newEnv(t, testdb.SQLite, fastHash)
	a.do("GET", "/healthz", "", nil)
	if v, _ := a.scrape(t).value("apikeys_http_requests_total", "route", "/healthz"); v != 1 {
		t.Errorf("server a counted %v health checks, want 1", v)
	}
	if v, ok := b.scrape(t).value("apikeys_http_requests_total", "route", "/healthz"); ok {
		t.Errorf("server b counted %v health checks of server a", v)
	}
}
