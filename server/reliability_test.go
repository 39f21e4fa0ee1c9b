package server_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	apikeys "github.com/qs/apikeys"
	"github.com/qs/apikeys/internal/testdb"
	"github.com/qs/apikeys/keys"
	"github.com/qs/apikeys/server"
	"github.com/qs/apikeys/store"
)

// stalledCreate is a store whose CreateKeys takes delay before it starts, ignoring its
// context (as a stuck dependency would), or blocks until its context ends when delay is 0.
type stalledCreate struct {
	*store.Store
	delay time.Duration
}

func (s stalledCreate) CreateKeys(ctx context.Context, ks []apikeys.NewKey) error {
	if s.delay == 0 {
		<-ctx.Done()
		return ctx.Err()
	}
	time.Sleep(s.delay)
	return s.Store.CreateKeys(ctx, ks)
}

// TestWorkPastItsDeadlineIsNotCommitted: a create that reaches the database after its
// deadline is not stored, and its client is told so with 503 and Retry-After, not left
// without an answer while the keys exist.
func TestWorkPastItsDeadlineIsNotCommitted(t *testing.T) {
	for _, engine := range testdb.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			base := newEnv(t, engine, fastHash)
			e := newServerWith(t, stalledCreate{base.store, 400 * time.Millisecond}, fastHash,
				func(c *server.Config) { c.RequestTimeout = 250 * time.Millisecond })
			before := e.count()
			for _, req := range []struct{ path, body string }{
				{"/api-keys", `{"name":"late"}`},
				{"/api-keys/batch", `{"keys":[{"name":"late-1"},{"name":"late-2"}]}`},
			} {
				r := e.do("POST", req.path, adminToken, req.body)
				if r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" {
					t.Errorf("POST %s past its deadline: %d (Retry-After %q) %s", req.path, r.Status, r.Header.Get("Retry-After"), r.Body)
				}
			}
			if after := e.count(); after != before {
				t.Errorf("%d keys before, %d after: work past its deadline was committed", before, after)
			}
		})
	}
}

// TestSlowHashingStopsAtItsDeadline: a batch whose deadline passes while its keys are being
// hashed stops hashing (no key is started after the deadline), stores nothing and is answered
// 503 with Retry-After soon after the deadline, far sooner than hashing all of it would take.
func TestSlowHashingStopsAtItsDeadline(t *testing.T) {
	const maxBatch = 100 // openapi.yaml's maxItems of a batch
	slow := fastHash
	slow.MemoryKiB, slow.Iterations = 4096, 4
	one := keys.NewHasher(slow, 1, 0)
	start := time.Now()
	if _, err := one.Hash(context.Background(), "calibrate"); err != nil {
		t.Fatal(err)
	}
	d := max(time.Since(start), 5*time.Millisecond) // one argon2id run with these parameters
	timeout := 10 * d
	var batch strings.Builder
	batch.WriteString(`{"keys":[`)
	for i := range maxBatch {
		if i > 0 {
			batch.WriteString(",")
		}
		fmt.Fprintf(&batch, `{"name":"slow-%d"}`, i)
	}
	batch.WriteString("]}")
	for _, engine := range testdb.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			base := newEnv(t, engine, slow)
			e := newServerWith(t, base.store, slow, func(c *server.Config) { c.RequestTimeout = timeout })
			before := e.count()
			start := time.Now()
			r := e.do("POST", "/api-keys/batch", adminToken, batch.String())
			took := time.Since(start)
			if r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" {
				t.Errorf("batch of %d past its deadline: %d (Retry-After %q) %s", maxBatch, r.Status, r.Header.Get("Retry-After"), r.Body)
			}
			// Hashing it all takes MaxBatch*d over the hasher's slots; stopping at the deadline
			// leaves at most the runs already started, one per slot.
			full := time.Duration(maxBatch/runtime.GOMAXPROCS(0)) * d
			if bound := timeout + 6*d + 300*time.Millisecond; took > bound { // slack for a loaded machine
				t.Errorf("answered after %v: want at most %v (deadline %v, one hash %v, all of it %v)", took, bound, timeout, d, full)
			}
			if after := e.count(); after != before {
				t.Errorf("%d keys before, %d after: a batch past its deadline was stored", before, after)
			}
			t.Logf("%s: 503 after %v (deadline %v, one hash %v, all of it about %v)", engine, took.Round(time.Millisecond), timeout, d.Round(time.Millisecond), full)
		})
	}
}

// TestClientThatLeftIsNotAnError: a client that disconnects while its request waits is
// logged at INFO with status 499, never as an internal error or a 500.
func TestClientThatLeftIsNotAnError(t *testing.T) {
	base := newEnv(t, testdb.SQLite, fastHash)
	e := newServerWith(t, stalledCreate{base.store, 0}, fastHash)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", e.http.URL+"/api-keys", strings.NewReader(`{"name":"gone"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+adminToken)
	if res, err := http.DefaultClient.Do(req); err == nil {
		res.Body.Close()
		t.Fatalf("the request was answered: %d", res.StatusCode)
	}
	deadline := time.Now().Add(3 * time.Second)
	for !strings.Contains(e.logs.String(), `"status":499`) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, `"msg":"client closed the request","level":"INFO"`) && !strings.Contains(logs, `"level":"INFO","msg":"client closed the request"`) {
		t.Errorf("no INFO line for the client that left:\n%s", logs)
	}
	if !strings.Contains(logs, `"status":499`) {
		t.Errorf("the request line does not say 499:\n%s", logs)
	}
	if strings.Contains(logs, `"level":"ERROR"`) || strings.Contains(logs, `"status":500`) {
		t.Errorf("a client that left was logged as an error:\n%s", logs)
	}
}

// unavailableStore answers every list as a database that cannot serve would.
type unavailableStore struct{ *store.Store }

func (unavailableStore) ListKeys(context.Context, apikeys.KeyFilter) ([]apikeys.Key, *apikeys.Cursor, error) {
	return nil, nil, &apikeys.Error{Code: apikeys.EUNAVAILABLE, Detail: "the database is unavailable; retry shortly",
		Err: errors.New("dial tcp 127.0.0.1:5432: connect: connection refused (password=hunter2)")}
}

// TestUnavailableDatabaseIs503: 503 problem+json with Retry-After; the cause goes to the
// log at WARN, and nothing of it to the client.
func TestUnavailableDatabaseIs503(t *testing.T) {
	base := newEnv(t, testdb.SQLite, fastHash)
	e := newServerWith(t, unavailableStore{base.store}, fastHash)
	r := e.do("GET", "/api-keys", adminToken, nil)
	if r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" {
		t.Fatalf("list with the database unavailable: %d (Retry-After %q) %s", r.Status, r.Header.Get("Retry-After"), r.Body)
	}
	if bytes.Contains(r.Body, []byte("refused")) || bytes.Contains(r.Body, []byte("hunter2")) {
		t.Errorf("the driver's error reached the client: %s", r.Body)
	}
	if !strings.Contains(e.logs.String(), `"level":"WARN"`) {
		t.Errorf("no WARN line for the outage:\n%s", e.logs.String())
	}
}

// TestBodySizesAreBoundedBeforeDecoding: a metadata member over its size, or a body of more
// values than any valid request holds, is refused with the offending member named, before
// a tree is built of it; whitespace does not count against metadata, and values inside
// metadata do not count against the body.
func TestBodySizesAreBoundedBeforeDecoding(t *testing.T) {
	e := newEnv(t, testdb.SQLite, fastHash)
	item := func(meta string) string { return `{"name":"k","metadata":` + meta + `}` }
	batch := func(items ...string) string { return `{"keys":[` + strings.Join(items, ",") + `]}` }
	bigMeta := `{"a":"` + strings.Repeat("x", 4100) + `"}`
	spacious := `{"a":` + strings.Repeat(" ", 20000) + `"` + strings.Repeat("x", 3000) + `"}` // 3,008 bytes compacted
	many := `{"a":[` + strings.Repeat("1,", 1999) + `1]}`                                     // 2,000 values, 4,007 bytes
	ones := `[` + strings.Repeat("1,", 6000) + `1]`
	nineteen := make([]string, 19)
	for i := range nineteen {
		nineteen[i] = item(many)
	}
	tests := []struct {
		name, path, body string
		status           int
		field            string
	}{
		{"metadata over its size, in a batch", "/api-keys/batch", batch(item(`{}`), item(`{}`), item(`{}`), item(bigMeta)), 400, "/keys/3/metadata"},
		{"metadata over its size", "/api-keys", item(bigMeta), 400, "/metadata"},
		{"metadata over its size once compacted, not before", "/api-keys", item(spacious), 201, ""},
		{"a huge array of numbers where no array belongs", "/api-keys/batch", `{"keys":[{"name":"k"}],"junk":` + ones + `}`, 400, "/"},
		{"a huge array of numbers in metadata", "/api-keys", item(`{"a":` + ones + `}`), 400, "/metadata"},
		{"38,000 values inside metadata", "/api-keys/batch", batch(nineteen...), 201, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.count()
			r := e.do("POST", tt.path, adminToken, tt.body)
			if r.Status != tt.status {
				t.Fatalf("%d, want %d: %.300s", r.Status, tt.status, r.Body)
			}
			if tt.status != 400 {
				return
			}
			var p struct{ Errors []struct{ Field string } }
			r.JSON(t, &p)
			if len(p.Errors) != 1 || p.Errors[0].Field != tt.field {
				t.Errorf("fields %+v, want %s", p.Errors, tt.field)
			}
			if after := e.count(); after != before {
				t.Errorf("a refused body changed the keys: %d -> %d", before, after)
			}
		})
	}
}

// TestBodyBudgetIsShared: while one request holds the whole budget of body bytes (its
// client is slow to send), another waits for it and, at its deadline, gets 503 with
// Retry-After; once the first is done, the budget is whole again.
func TestBodyBudgetIsShared(t *testing.T) {
	base := newEnv(t, testdb.SQLite, fastHash)
	e := newServerWith(t, base.store, fastHash, func(c *server.Config) {
		c.BodyBudget = 64
		c.RequestTimeout = 300 * time.Millisecond
	})
	body := `{"name":"slow"}`
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.http.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /api-keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 64\r\n\r\n%s", adminToken, body[:5])
	time.Sleep(100 * time.Millisecond) // the slow request has its share
	r := e.do("POST", "/api-keys", adminToken, body)
	if r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" {
		t.Errorf("with the budget taken: %d (Retry-After %q) %s", r.Status, r.Header.Get("Retry-After"), r.Body)
	}
	conn.Close()
	deadline := time.Now().Add(3 * time.Second)
	for {
		r := e.do("POST", "/api-keys", adminToken, body)
		if r.Status == http.StatusCreated {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the budget was not given back: %d %s", r.Status, r.Body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// hangingPing is a store whose database never answers a ping and ignores the context, as a
// driver blocked on a frozen server does.
type hangingPing struct {
	*store.Store
	release chan struct{}
}

func (h hangingPing) Ping(context.Context) error {
	<-h.release
	return errors.New("never answered")
}

// TestReadinessAnswersWithinTwoSeconds: /readyz says 503 within its 2 s even when the ping
// never returns, and probes that come meanwhile do not pile up pings.
func TestReadinessAnswersWithinTwoSeconds(t *testing.T) {
	base := newEnv(t, testdb.SQLite, fastHash)
	h := hangingPing{base.store, make(chan struct{})}
	defer close(h.release)
	e := newServerWith(t, h, fastHash)
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			began := time.Now()
			r := e.do("GET", "/readyz", "", nil)
			if took := time.Since(began); r.Status != http.StatusServiceUnavailable || took > 2500*time.Millisecond {
				t.Errorf("readyz with a hanging database: %d after %v", r.Status, took)
			}
		}()
	}
	wg.Wait()
}

// TestDeepBodiesAreCheap: deeply nested bodies are refused at once. Before, a 30 KB body
// nesting 4999 objects cost about 3 s and 2.3 GB to refuse, because the validator's error
// quoted the offending value, pretty-printed (quadratic in its depth); metadata may still
// nest as deep as its 4096 bytes allow, and an error beside it is as cheap.
func TestDeepBodiesAreCheap(t *testing.T) {
	e := newEnv(t, testdb.SQLite, fastHash)
	deepObject := strings.Repeat(`{"a":`, 4999) + "1" + strings.Repeat("}", 4999)
	deepMeta := `{"a":` + strings.Repeat("[", 2000) + strings.Repeat("]", 2000) + `}`
	for _, tt := range []struct{ name, body, field string }{
		{"4999 objects deep", deepObject, "/"},
		{"4999 objects deep in a member", `{"name":"x","description":` + deepObject + `}`, "/"},
		{"metadata 2000 arrays deep, beside an unknown member", `{"name":"x","junk":1,"metadata":` + deepMeta + `}`, "/junk"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			began := time.Now()
			r := e.do("POST", "/api-keys", adminToken, tt.body)
			took := time.Since(began)
			if r.Status != http.StatusBadRequest {
				t.Fatalf("%d %.200s", r.Status, r.Body)
			}
			if !strings.Contains(string(r.Body), `"field":"`+tt.field+`"`) && !strings.Contains(string(r.Body), `"field":"/"`) {
				t.Errorf("field %s not named: %s", tt.field, r.Body)
			}
			if took > time.Second {
				t.Errorf("took %v to refuse", took)
			}
		})
	}
}
