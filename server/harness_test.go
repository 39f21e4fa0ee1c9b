package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	apikeys "github.com/qs/apikeys"
	"github.com/qs/apikeys/internal/testdb"
	"github.com/qs/apikeys/keys"
	"github.com/qs/apikeys/server"
	"github.com/qs/apikeys/service"
	"github.com/qs/apikeys/store"
)

func TestMain(m *testing.M) { os.Exit(testdb.Main(m)) }

const adminToken = "test-admin-token-0123456789"

// fastHash keeps tests quick; one test uses the production defaults.
var fastHash = keys.Params{MemoryKiB: 64, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}

// specRouter finds the operation of a request in openapi.yaml, to validate responses.
var specRouter = sync.OnceValues(func() (routers.Router, error) {
	doc, err := openapi3.NewLoader().LoadFromData(apikeys.OpenAPI)
	if err != nil {
		return nil, err
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, err
	}
	doc.Servers = nil
	// openapi.yaml describes GET /openapi.yaml as YAML text (a string), which is what a
	// client receives; kin-openapi would otherwise parse YAML bodies into a tree first.
	openapi3filter.RegisterBodyDecoder("application/yaml", openapi3filter.PlainBodyDecoder)
	openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.PlainBodyDecoder) // GET /docs
	return gorillamux.NewRouter(doc)
})

// clock is a settable time source shared by a test and its server.
type clock struct{ ns atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Set(t time.Time)         { c.ns.Store(t.UnixNano()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// env is one server on a fresh database.
type env struct {
	t      testing.TB
	engine string
	srv    *server.Server
	svc    *service.Service
	http   *httptest.Server
	store  *store.Store
	clock  *clock
	logs   *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// eachEngine runs fn against a fresh server on every database engine.
func eachEngine(t *testing.T, fn func(t *testing.T, e *env)) {
	t.Helper()
	for _, engine := range testdb.Engines(t) {
		t.Run(engine, func(t *testing.T) { fn(t, newEnv(t, engine, fastHash)) })
	}
}

func newEnv(t testing.TB, engine string, hash keys.Params) *env {
	t.Helper()
	st, err := store.Open(context.Background(), testdb.New(t, engine).URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := newServerWith(t, st, hash)
	e.engine, e.store = engine, st
	return e
}

// newServerWith starts a server on st, which tests may wrap to inject failures.
func newServerWith(t testing.TB, st apikeys.KeyStore, hash keys.Params, tune ...func(*server.Config)) *env {
	t.Helper()
	e := &env{t: t, clock: &clock{}, logs: &syncBuffer{}}
	e.clock.Set(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	log := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	feed, _ := st.(apikeys.ChangeFeed)
	e.svc = service.New(service.Config{
		Store: st, AdminToken: adminToken, Hasher: keys.NewHasher(hash, 0, 0), Now: e.clock.Now,
		Logger: log, UsageFlushInterval: time.Hour, // tests flush explicitly
		Feed: feed,
	})
	var err error
	cfg := server.Config{Service: e.svc, Spec: apikeys.OpenAPI, Logger: log}
	for _, f := range tune {
		f(&cfg)
	}
	e.srv, err = server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.http = httptest.NewServer(e.srv)
	t.Cleanup(func() {
		e.http.Close()
		e.svc.Close(context.Background())
	})
	return e
}

// resp is a response whose body has been read and checked against openapi.yaml.
type resp struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r *resp) JSON(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

// obj decodes the body as a JSON object.
func (r *resp) obj(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	r.JSON(t, &m)
	return m
}

// do sends a request with a bearer token ("" for none) and a body (nil for none; a string
// or []byte is sent as is; anything else is encoded as JSON), and validates the response
// against the spec: its status must be documented for the operation and its body must
// match the schema. Requests that match no operation must still get problem+json.
func (e *env) do(method, path, token string, body any) *resp {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(buf)
	}
	req, err := http.NewRequest(method, e.http.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return e.send(req)
}

func (e *env) send(req *http.Request) *resp {
	e.t.Helper()
	var reqBody []byte
	if req.Body != nil {
		reqBody, _ = io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(reqBody))
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	r := &resp{Status: res.StatusCode, Header: res.Header, Body: b}
	if r.Status >= 500 && r.Status != http.StatusServiceUnavailable {
		e.t.Errorf("%s %s answered %d: %s", req.Method, req.URL.Path, r.Status, b)
	}
	validateResponse(e.t, req, reqBody, r)
	return r
}

func validateResponse(t testing.TB, req *http.Request, reqBody []byte, r *resp) {
	t.Helper()
	if err := checkResponse(req, reqBody, r); err != nil {
		t.Errorf("%s %s: %v\nbody: %s", req.Method, req.URL.Path, err, r.Body)
	}
}

// checkResponse reports how a response departs from openapi.yaml: an undocumented status,
// a body that does not match its schema, or an error that is not problem+json.
func checkResponse(req *http.Request, reqBody []byte, r *resp) error {
	router, err := specRouter()
	if err != nil {
		return fmt.Errorf("load spec: %w", err)
	}
	route, params, err := router.FindRoute(req)
	if err != nil {
		if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
			return fmt.Errorf("no operation; answered %d with Content-Type %q", r.Status, ct)
		}
		return nil
	}
	req.Body = io.NopCloser(bytes.NewReader(reqBody))
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 r.Status,
		Header:                 r.Header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	in.SetBodyBytes(r.Body)
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		return fmt.Errorf("response %d does not match openapi.yaml: %w", r.Status, err)
	}
	// 431 is the HTTP server's own answer, before any route: plain text, as declared.
	if r.Status >= 400 && r.Status != http.StatusRequestHeaderFieldsTooLarge && r.Header.Get("Content-Type") != "application/problem+json" {
		return fmt.Errorf("error %d with Content-Type %q", r.Status, r.Header.Get("Content-Type"))
	}
	return nil
}

// create makes a key with the admin token and returns the response object.
func (e *env) create(body map[string]any) map[string]any {
	e.t.Helper()
	r := e.do("POST", "/api-keys", adminToken, body)
	if r.Status != http.StatusCreated {
		e.t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	return r.obj(e.t)
}

// verify presents secret with the admin token and returns the verdict.
func (e *env) verify(body map[string]any) map[string]any {
	e.t.Helper()
	r := e.do("POST", "/api-keys/verify", adminToken, body)
	if r.Status != http.StatusOK {
		e.t.Fatalf("verify: %d %s", r.Status, r.Body)
	}
	return r.obj(e.t)
}

func (e *env) count() int {
	e.t.Helper()
	r := e.do("GET", "/api-keys?limit=100", adminToken, nil)
	var list []map[string]any
	r.JSON(e.t, &list)
	return len(list)
}

// newFuzzEnv is one SQLite-backed server for the whole of a fuzz target.
func newFuzzEnv(f *testing.F) *env {
	f.Helper()
	return newEnv(f, testdb.SQLite, fastHash)
}
