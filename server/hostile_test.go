package server_test

// The hostile run: requests generated from openapi.yaml's schemas, then mutated one way at a
// time, sent to every operation on every database engine. See TestHostileRequests.

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"mime"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"regexp/syntax"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"

	apikeys "github.com/qs/apikeys"
	"github.com/qs/apikeys/internal/keytest"
	"github.com/qs/apikeys/internal/testdb"
	"github.com/qs/apikeys/keys"
	"github.com/qs/apikeys/store"
)

// hostileSeed seeds every choice the run makes (math/rand/v2's PCG), so the same requests are
// generated in the same order on every run; the server's own random ids and secrets, and the
// interleaving of concurrent requests, are the only variation. APIKEYS_HOSTILE_SEED overrides
// it to explore.
const hostileSeed uint64 = 0x2026_0301

const (
	// hostileRounds is how many times the whole catalogue of mutations is generated afresh
	// (new valid bases, new random details) and sent; each round is preceded by a valid phase.
	hostileRounds = 4
	// hostileChunk is how many hostile requests run between two fingerprints of the database.
	hostileChunk = 300
	// hostileWorkers send a chunk's requests concurrently.
	hostileWorkers = 4
	// hostileMinRequests is the floor the run must reach on each engine (under the race
	// detector, which runs one round: hostileRace, hostileRaceMinRequests).
	hostileMinRequests     = 10_000
	hostileRaceMinRequests = 2_500
	// hostileMaxReported bounds the failures printed in full.
	hostileMaxReported = 40
)

// hostileNearCap is a nesting depth just under the number of JSON values server/shape.go lets a
// body hold (5000): the deepest body that reaches the request validator.
const hostileNearCap = 4990

// The body limits of server/middleware.go (64 KiB; 1 MiB for a batch), restated: the run sends
// bodies at them and a little past them.
const (
	hostileMaxBody      = 64 << 10
	hostileMaxBatchBody = 1 << 20
)

// TestHostileRequests is the hostile run. For each database engine it starts a fresh server
// and repeats, hostileRounds times:
//
//   - a valid phase: requests generated from openapi.yaml's schemas (naming keys that exist,
//     presenting real secrets), each of which must answer its documented success status, and
//     the mutated requests of the previous round that openapi.yaml accepts (they may change
//     data, so they are kept out of the hostile phase);
//   - a hostile phase: every operation's valid request mutated one way at a time (wrong types,
//     lengths at and past maxLength, empty strings, NUL, lone surrogate escapes, bidi controls,
//     invalid UTF-8, huge numbers, deep nesting, duplicate, unknown, missing and null members,
//     broken JSON text, truncated and oversized bodies, wrong/duplicated/unknown query
//     parameters, malformed and forged cursors, SQL injection and path traversal in ids and
//     filters, Content-Type variants, missing/duplicated/forged Authorization, huge headers,
//     wrong methods), sent by hostileWorkers at once, with a fingerprint of the whole database
//     (every row of every table, read with SQL beside the server) before and after every
//     hostileChunk requests.
//
// It holds the server to: no 5xx except a 503 with Retry-After (none is expected, and each is
// logged); every answer matches openapi.yaml (checkResponse, as env.send); no hostile request
// that changes data when accepted is accepted, and no refused request changes stored data; no
// secret returned by the server, nor the admin token, nor any well-formed token, appears in
// the server's log. It logs the counts by status of each phase.
//
// Which mutations of a writing operation are hostile is decided before sending: by
// construction (no or a wrong bearer, an unsupported media type, an oversized body, an
// undeclared query parameter, a malformed or unknown id, a method the path does not have),
// or else by openapi.yaml itself (kin-openapi's request validator, after
// apikeys.CheckJSONText, the server's documented rule for JSON text). Mutations that the
// contract accepts are not hostile: they go to the next valid phase, where any answer but a 5xx
// is allowed.
func TestHostileRequests(t *testing.T) {
	seed := hostileSeed
	if s := os.Getenv("APIKEYS_HOSTILE_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 0, 64)
		if err != nil {
			t.Fatalf("APIKEYS_HOSTILE_SEED: %v", err)
		}
		seed = n
	}
	ops := hostileOperations(t)
	// As eachEngine, with the database's URL kept for the fingerprint.
	for _, engine := range testdb.Engines(t) {
		t.Run(engine, func(t *testing.T) { newHostile(t, engine, ops, seed).run() })
	}
}

// hop is one operation of openapi.yaml, as the generator needs it.
type hop struct {
	id           string // operationId
	method       string
	path         string // the template, /api-keys/{id}
	body         *openapi3.Schema
	bodyRequired bool
	query        []*openapi3.Parameter
	hasID        bool // the path has {id}
	protected    bool // needs a bearer token
	write        bool // changes stored data when it succeeds
	want         int  // the success status
}

// hostileOperations reads every operation of openapi.yaml.
func hostileOperations(t *testing.T) []*hop {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(apikeys.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	var ops []*hop
	for _, path := range slices.Sorted(maps.Keys(doc.Paths.Map())) {
		item := doc.Paths.Value(path)
		for _, method := range slices.Sorted(maps.Keys(item.Operations())) {
			op := item.GetOperation(method)
			o := &hop{id: op.OperationID, method: method, path: path, hasID: strings.Contains(path, "{id}"),
				protected: op.Security == nil || len(*op.Security) > 0}
			// verifyApiKey is the one POST that writes nothing to the database: usage is held in
			// memory and written once an hour in these tests (UsageFlushInterval). HEAD is safe.
			o.write = method != http.MethodGet && method != http.MethodHead && op.OperationID != "verifyApiKey"
			if rb := op.RequestBody; rb != nil && rb.Value != nil {
				o.body = rb.Value.Content.Get("application/json").Schema.Value
				o.bodyRequired = rb.Value.Required
			}
			for _, p := range append(slices.Clone(item.Parameters), op.Parameters...) {
				if p.Value.In == "query" {
					o.query = append(o.query, p.Value)
				}
			}
			for code := range op.Responses.Map() {
				if n, err := strconv.Atoi(code); err == nil && n >= 200 && n < 300 {
					o.want = n
				}
			}
			if o.want == 0 {
				t.Fatalf("%s %s documents no success status", method, path)
			}
			ops = append(ops, o)
		}
	}
	return ops
}

// hkey is a key the run created, and what it knows of its state.
type hkey struct {
	id, subject, secret string
	revoked, rotated    bool
}

// hverdict is what a request must get, decided before it is sent.
type hverdict int

const (
	byContract hverdict = iota // openapi.yaml (and CheckJSONText) decide
	mustRefuse                 // refused by construction
	mayAccept                  // a variant the server documents as accepted
)

// hreq is one request of the run.
type hreq struct {
	op      *hop
	label   string // "valid", or the mutation
	method  string
	rawPath string // escaped
	q       []qpair
	header  http.Header
	model   any    // the body as a JSON value, encoded by finish; nil when body is set directly
	body    []byte // nil: no body
	chunked bool   // sent without Content-Length
	host    string
	write   bool
	verdict hverdict
	refuse  bool  // the run requires a refusal (4xx)
	target  *hkey // the key named in the path
}

type qpair struct {
	k, v string
	raw  bool // already escaped; with v empty, k is sent as it is, without "="
}

func (r *hreq) query() string {
	var parts []string
	for _, p := range r.q {
		if p.raw && p.v == "" {
			parts = append(parts, p.k)
		} else if p.raw {
			parts = append(parts, p.k+"="+p.v)
		} else {
			parts = append(parts, url.QueryEscape(p.k)+"="+url.QueryEscape(p.v))
		}
	}
	return strings.Join(parts, "&")
}

// finish encodes the body model.
func (r *hreq) finish() {
	if r.model != nil {
		var b bytes.Buffer
		encodeJSON(&b, r.model)
		r.body = b.Bytes()
	}
}

func (r *hreq) httpRequest(base string) (*http.Request, error) {
	var body io.Reader
	if r.body != nil {
		if r.chunked {
			body = struct{ io.Reader }{bytes.NewReader(r.body)} // unknown length: chunked
		} else {
			body = bytes.NewReader(r.body)
		}
	}
	req, err := http.NewRequest(r.method, base+"/", body)
	if err != nil {
		return nil, err
	}
	path, err := url.PathUnescape(r.rawPath)
	if err != nil {
		return nil, err
	}
	req.URL.Path, req.URL.RawPath, req.URL.RawQuery = path, r.rawPath, r.query()
	for k, vs := range r.header {
		req.Header[k] = slices.Clone(vs)
	}
	if r.host != "" {
		req.Host = r.host
	}
	return req, nil
}

// String is the request as a reproduction: method, target, headers and the body (abridged).
func (r *hreq) String() string {
	target := r.rawPath
	if q := r.query(); q != "" {
		target += "?" + q
	}
	var hs []string
	for _, k := range slices.Sorted(maps.Keys(r.header)) {
		for _, v := range r.header[k] {
			hs = append(hs, k+": "+abridge(v, 80))
		}
	}
	body := "(none)"
	if r.body != nil {
		body = fmt.Sprintf("%d bytes %s", len(r.body), abridge(strconv.Quote(string(r.body)), 400))
	}
	if r.chunked {
		body += " (chunked)"
	}
	return fmt.Sprintf("[%s] %s %s\n  headers: %s\n  body: %s", r.label, r.method, abridge(target, 300), strings.Join(hs, " | "), body)
}

func abridge(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + fmt.Sprintf("…(%d more bytes)", len(s)-n)
}

// The JSON model: objects keep their members' order and may name one twice; jraw is sent as
// written (numbers a double cannot hold, escapes Go would not write, invalid UTF-8).
type (
	jobj struct{ m []jmem }
	jmem struct {
		k string
		v any
	}
	jraw string
)

func (o *jobj) get(k string) (any, bool) {
	for _, m := range o.m {
		if m.k == k {
			return m.v, true
		}
	}
	return nil, false
}

func (o *jobj) set(k string, v any) {
	for i := range o.m {
		if o.m[i].k == k {
			o.m[i].v = v
			return
		}
	}
	o.m = append(o.m, jmem{k, v})
}

func (o *jobj) del(k string) {
	o.m = slices.DeleteFunc(o.m, func(m jmem) bool { return m.k == k })
}

func (o *jobj) add(k string, v any) { o.m = append(o.m, jmem{k, v}) }

func encodeJSON(b *bytes.Buffer, v any) {
	switch v := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(v))
	case int:
		b.WriteString(strconv.Itoa(v))
	case float64:
		b.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
	case string:
		enc, _ := json.Marshal(v)
		b.Write(enc)
	case jraw:
		b.WriteString(string(v))
	case []any:
		b.WriteByte('[')
		for i, x := range v {
			if i > 0 {
				b.WriteByte(',')
			}
			encodeJSON(b, x)
		}
		b.WriteByte(']')
	case *jobj:
		b.WriteByte('{')
		for i, m := range v.m {
			if i > 0 {
				b.WriteByte(',')
			}
			encodeJSON(b, m.k)
			b.WriteByte(':')
			encodeJSON(b, m.v)
		}
		b.WriteByte('}')
	default:
		panic(fmt.Sprintf("encodeJSON: %T", v))
	}
}

func cloneJSON(v any) any {
	switch v := v.(type) {
	case []any:
		out := make([]any, len(v))
		for i := range v {
			out[i] = cloneJSON(v[i])
		}
		return out
	case *jobj:
		out := &jobj{m: make([]jmem, len(v.m))}
		for i, m := range v.m {
			out.m[i] = jmem{m.k, cloneJSON(m.v)}
		}
		return out
	default:
		return v
	}
}

// containerOf returns the object or array holding the last step of ptr.
func containerOf(root any, ptr []string) any {
	cur := root
	for _, step := range ptr[:len(ptr)-1] {
		switch c := cur.(type) {
		case *jobj:
			v, ok := c.get(step)
			if !ok {
				return nil
			}
			cur = v
		case []any:
			i, err := strconv.Atoi(step)
			if err != nil || i >= len(c) {
				return nil
			}
			cur = c[i]
		default:
			return nil
		}
	}
	return cur
}

// hgen generates values that satisfy a schema.
type hgen struct {
	r        *rand.Rand
	now      time.Time
	labels   map[string][]string // pools of tenant, environment and intended-use values, so filters match
	patterns map[string]*regexp.Regexp
	parsed   map[string]*syntax.Regexp
}

// A few characters beyond ASCII that the generator tries inside character classes.
var hostileRunes = []rune{'é', 'ß', 'Ж', '中', 'ع', '€', '🔑', '\u0301', '\t', '\n', '\uFFFD', '\u00A0'}

func (g *hgen) value(name string, s *openapi3.Schema) any {
	switch name {
	case "clientIp":
		if g.r.IntN(2) == 0 {
			return fmt.Sprintf("%d.%d.%d.%d", 1+g.r.IntN(223), g.r.IntN(256), g.r.IntN(256), 1+g.r.IntN(254))
		}
		return fmt.Sprintf("2001:db8::%x:%x", g.r.IntN(65536), 1+g.r.IntN(65535))
	case "permissions":
		if s.Type.Is("string") && s.MaxLength != nil && *s.MaxLength == 1000 { // verify's permission query: a grammar no pattern states
			names := []string{"documents.read", "billing:*", "admin", "a-b_c.d:e"}
			pick := func() string { return names[g.r.IntN(len(names))] }
			return pick() + " AND (" + pick() + " OR " + pick() + ")"
		}
	case "tenantId", "environmentId", "intendedUse":
		if pool := g.labels[name]; g.r.IntN(4) != 0 {
			return pool[g.r.IntN(len(pool))]
		}
	}
	switch {
	case len(s.Enum) > 0:
		return s.Enum[g.r.IntN(len(s.Enum))]
	case s.Type.Is("string"):
		return g.str(s)
	case s.Type.Is("integer"):
		lo, hi := 0, 1000
		if s.Min != nil {
			lo = int(*s.Min)
		}
		if s.Max != nil {
			hi = int(*s.Max)
		}
		if g.r.IntN(2) == 0 {
			hi = min(hi, lo+120)
		}
		return lo + g.r.IntN(hi-lo+1)
	case s.Type.Is("number"):
		return float64(g.r.IntN(1000)) / 8
	case s.Type.Is("boolean"):
		return g.r.IntN(2) == 0
	case s.Type.Is("array"):
		return g.array(name, s)
	case s.Type.Is("object"):
		return g.object(s)
	}
	return nil
}

func (g *hgen) object(s *openapi3.Schema) *jobj {
	if len(s.Properties) == 0 {
		return g.freeObject(2)
	}
	o := &jobj{}
	names := slices.Sorted(maps.Keys(s.Properties))
	for _, n := range names {
		if slices.Contains(s.Required, n) || g.r.IntN(2) == 0 {
			o.set(n, g.member(n, s.Properties[n].Value))
		}
	}
	for len(o.m) < int(s.MinProps) {
		n := names[g.r.IntN(len(names))]
		if _, ok := o.get(n); !ok {
			o.set(n, g.member(n, s.Properties[n].Value))
		}
	}
	return o
}

func (g *hgen) member(name string, s *openapi3.Schema) any {
	if s.Nullable && g.r.IntN(6) == 0 {
		return nil
	}
	return g.value(name, s)
}

// freeObject is a metadata object: a few members of every JSON type.
func (g *hgen) freeObject(depth int) *jobj {
	names := []string{"team", "owner", "cost-center", "ticket", "nested", "clé", "list", "n", "ratio", "on"}
	o := &jobj{}
	for i, n := 0, g.r.IntN(5); i < n; i++ {
		name := names[g.r.IntN(len(names))]
		var v any
		switch k := g.r.IntN(7); {
		case k == 0 && depth > 0:
			v = g.freeObject(depth - 1)
		case k == 1:
			v = []any{g.r.IntN(100), g.text(4), nil}
		case k == 2:
			v = g.r.IntN(1 << 20)
		case k == 3:
			v = float64(g.r.IntN(1000)) / 4
		case k == 4:
			v = g.r.IntN(2) == 0
		case k == 5:
			v = nil
		default:
			v = g.text(1 + g.r.IntN(20))
		}
		o.set(name, v)
	}
	return o
}

func (g *hgen) array(name string, s *openapi3.Schema) []any {
	lo, hi := int(s.MinItems), int(s.MinItems)+3
	if s.MaxItems != nil {
		hi = min(hi, int(*s.MaxItems))
	}
	n := lo + g.r.IntN(hi-lo+1)
	out := []any{}
	seen := map[string]bool{}
	for tries := 0; len(out) < n && tries < 50; tries++ {
		v := g.value(name, s.Items.Value)
		var b bytes.Buffer
		encodeJSON(&b, v)
		if s.UniqueItems && seen[b.String()] {
			continue
		}
		seen[b.String()] = true
		out = append(out, v)
	}
	return out
}

// text is n characters of printable text, a few of them beyond ASCII.
func (g *hgen) text(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		if g.r.IntN(10) == 0 {
			b.WriteRune([]rune{'é', 'Ж', '中', '🔑'}[g.r.IntN(4)])
		} else {
			b.WriteByte(byte(0x21 + g.r.IntN(0x7e-0x21)))
		}
	}
	return b.String()
}

// future is an RFC 3339 instant between an hour and a year after now, in UTC or an offset.
func (g *hgen) future() string {
	t := g.now.Add(time.Hour + time.Duration(g.r.Int64N(int64(365*24*time.Hour)))).Truncate(time.Second)
	switch g.r.IntN(5) {
	case 0:
		return t.Add(time.Duration(g.r.IntN(1e6)) * time.Microsecond).Format(time.RFC3339Nano)
	case 1:
		return t.In(time.FixedZone("", (5*60+30)*60)).Format(time.RFC3339)
	default:
		return t.Format(time.RFC3339)
	}
}

func (g *hgen) compiled(pattern string) (*regexp.Regexp, *syntax.Regexp) {
	if re, ok := g.patterns[pattern]; ok {
		return re, g.parsed[pattern]
	}
	// As kin-openapi compiles a pattern (openapi3.intoGoRegexp).
	goPattern := regexp.MustCompile(`\\u([0-9A-F]{4})`).ReplaceAllString(pattern, `\x{$1}`)
	re := regexp.MustCompile(goPattern)
	syn, err := syntax.Parse(goPattern, syntax.Perl)
	if err != nil {
		panic(err)
	}
	g.patterns[pattern], g.parsed[pattern] = re, syn
	return re, syn
}

// str generates a string of the schema: a date-time, or a string of the pattern and lengths.
func (g *hgen) str(s *openapi3.Schema) string {
	if s.Format == "date-time" {
		return g.future()
	}
	minLen, maxLen := int(s.MinLength), 40
	if s.MaxLength != nil {
		maxLen = int(*s.MaxLength)
	}
	if s.Pattern == "" {
		return g.text(minLen + g.r.IntN(min(maxLen, minLen+30)-minLen+1))
	}
	re, syn := g.compiled(s.Pattern)
	for tries := 0; tries < 500; tries++ {
		var b strings.Builder
		g.fromRegex(&b, syn)
		out := b.String()
		if n := utf8.RuneCountInString(out); n >= minLen && n <= maxLen && utf8.ValidString(out) && re.MatchString(out) {
			return out
		}
	}
	panic(fmt.Sprintf("cannot generate a string for pattern %q", s.Pattern))
}

func (g *hgen) fromRegex(b *strings.Builder, re *syntax.Regexp) {
	switch re.Op {
	case syntax.OpLiteral:
		for _, r := range re.Rune {
			b.WriteRune(r)
		}
	case syntax.OpCharClass:
		b.WriteRune(g.pick(re.Rune))
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		b.WriteByte(byte('a' + g.r.IntN(26)))
	case syntax.OpCapture:
		g.fromRegex(b, re.Sub[0])
	case syntax.OpConcat:
		for _, sub := range re.Sub {
			g.fromRegex(b, sub)
		}
	case syntax.OpAlternate:
		g.fromRegex(b, re.Sub[g.r.IntN(len(re.Sub))])
	case syntax.OpStar, syntax.OpPlus, syntax.OpQuest, syntax.OpRepeat:
		lo, hi := 0, -1
		switch re.Op {
		case syntax.OpPlus:
			lo = 1
		case syntax.OpQuest:
			hi = 1
		case syntax.OpRepeat:
			lo, hi = re.Min, re.Max
		}
		if hi < 0 {
			hi = lo + 60
		}
		n := lo + g.r.IntN(min(hi-lo, 10)+1) // mostly short
		if g.r.IntN(10) == 0 {
			n = lo + g.r.IntN(hi-lo+1) // sometimes anywhere in the range
		}
		for i := 0; i < n; i++ {
			g.fromRegex(b, re.Sub[0])
		}
	}
}

// pick chooses a character of a class: mostly printable ASCII, sometimes one of hostileRunes.
func (g *hgen) pick(ranges []rune) rune {
	in := func(c rune) bool {
		for i := 0; i < len(ranges); i += 2 {
			if c >= ranges[i] && c <= ranges[i+1] {
				return true
			}
		}
		return false
	}
	var cands []rune
	if g.r.IntN(8) == 0 {
		for _, c := range hostileRunes {
			if in(c) {
				cands = append(cands, c)
			}
		}
	}
	if len(cands) == 0 {
		for c := rune(0x20); c < 0x7f; c++ {
			if in(c) {
				cands = append(cands, c)
			}
		}
	}
	if len(cands) == 0 {
		return ranges[0]
	}
	return cands[g.r.IntN(len(cands))]
}

// hostile is the run on one engine.
type hostile struct {
	t      *testing.T
	e      *env
	engine string
	seed   uint64
	raw    *sql.DB // beside the server, for the fingerprint
	ops    []*hop
	r      *rand.Rand
	g      *hgen
	client *http.Client

	keys     []*hkey
	subjects []string
	cursors  []string // from Link headers
	readOnly string   // secrets of keys used as bearer tokens
	verifier string
	revoked  string
	secrets  map[string]bool // every secretKey the server returned
	deferred []*hreq         // mutants of writing operations that openapi.yaml accepts

	mu       sync.Mutex
	counts   map[string]map[int]int // by phase, then status
	families map[string]int         // mutants by kind of mutation
	failures map[string]int         // by signature: the first of each is printed in full
	total    int
	writes   int // hostile requests to writing operations, each refused
	prints   int // fingerprints taken
	rows     int // rows in the last fingerprint
	slow     time.Duration
	slowest  string
}

func newHostile(t *testing.T, engine string, ops []*hop, seed uint64) *hostile {
	db := testdb.New(t, engine)
	st, err := store.Open(context.Background(), db.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := newServerWith(t, st, fastHash)
	e.engine, e.store = engine, st

	driver, dsn := "postgres", db.URL
	if engine == testdb.SQLite {
		driver, dsn = "sqlite", db.URL+"?_pragma=busy_timeout(10000)&_pragma=query_only(1)"
	}
	raw, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	raw.SetMaxOpenConns(1)
	t.Cleanup(func() { raw.Close() })

	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: hostileWorkers * 2, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return &hostile{
		t: t, e: e, engine: engine, seed: seed, raw: raw, ops: ops, r: r,
		g: &hgen{r: r, now: e.clock.Now(), patterns: map[string]*regexp.Regexp{}, parsed: map[string]*syntax.Regexp{},
			labels: map[string][]string{
				"tenantId":      {"tenant_acme", "tenant_globex", "t"},
				"environmentId": {"environment_prod", "environment_dev"},
				"intendedUse":   {"ci-cd", "backup", "partner:x"},
			}},
		client:   &http.Client{Transport: tr, Timeout: 30 * time.Second},
		secrets:  map[string]bool{},
		counts:   map[string]map[int]int{},
		families: map[string]int{},
		failures: map[string]int{},
	}
}

func (h *hostile) run() {
	start := time.Now()
	h.setup()
	rounds := hostileRounds
	if hostileRace {
		rounds = 1
		h.t.Logf("the race detector is on: one round of the catalogue instead of %d", hostileRounds)
	}
	for round := 0; round < rounds; round++ {
		h.e.clock.Advance(time.Second)
		h.g.now = h.e.clock.Now()
		h.validPhase()
		h.hostilePhase()
	}
	h.validPhase() // the last round's accepted mutants
	h.checkLogs()
	h.report(time.Since(start))
}

// fail records a failure under a signature (what failed, where, and the kind of request), and
// prints the first of each signature in full.
func (h *hostile) fail(sig, format string, args ...any) {
	h.t.Helper()
	h.mu.Lock()
	h.failures[sig]++
	first, kinds := h.failures[sig] == 1, len(h.failures)
	h.mu.Unlock()
	if first && kinds <= hostileMaxReported {
		h.t.Errorf("%s\n%s", sig, fmt.Sprintf(format, args...))
	}
}

// sig is a failure's signature: what failed, the answer's status, the operation and the kind of
// mutation.
func sig(what string, r *hreq, status int) string {
	return fmt.Sprintf("%s: %d to %s %s (%s)", what, status, r.method, r.op.path, family(r.label))
}

// setup creates the keys the first phase names, and the callers of the auth mutations.
func (h *hostile) setup() {
	h.e.t = h.t
	for _, c := range []struct {
		dst    *string
		scopes []string
		revoke bool
	}{
		{&h.readOnly, []string{"api_keys:read"}, false},
		{&h.verifier, []string{"api_keys:verify"}, false},
		{&h.revoked, []string{"api_keys:read", "api_keys:write", "api_keys:verify"}, true},
	} {
		k := h.e.create(map[string]any{"name": "hostile caller", "scopes": c.scopes})
		*c.dst = k["secretKey"].(string)
		h.secrets[*c.dst] = true
		if c.revoke {
			if r := h.e.do("POST", "/api-keys/"+k["id"].(string)+"/revoke", adminToken, nil); r.Status != http.StatusOK {
				h.t.Fatalf("revoke: %d %s", r.Status, r.Body)
			}
		}
	}
	create := h.op("createApiKey")
	for i := 0; i < 12; i++ {
		h.sendValid(h.valid(create, false))
	}
	if len(h.keys) < 12 {
		h.t.Fatalf("setup created %d keys", len(h.keys))
	}
}

func (h *hostile) op(id string) *hop {
	for _, o := range h.ops {
		if o.id == id {
			return o
		}
	}
	h.t.Fatalf("openapi.yaml has no operation %s", id)
	return nil
}

func (h *hostile) pickKey(ok func(*hkey) bool) *hkey {
	var cands []*hkey
	for _, k := range h.keys {
		if ok(k) {
			cands = append(cands, k)
		}
	}
	if len(cands) == 0 {
		cands = h.keys
	}
	return cands[h.r.IntN(len(cands))]
}

func live(k *hkey) bool { return !k.revoked && !k.rotated }

// valid generates a request of op that openapi.yaml accepts, naming existing keys; with
// withBody, an optional body is always present.
func (h *hostile) valid(op *hop, withBody bool) *hreq {
	r := &hreq{op: op, label: "valid", method: op.method, header: http.Header{}, write: op.write, rawPath: op.path}
	if op.hasID {
		var id string
		switch op.id {
		case "getSubject":
			id = h.subjects[h.r.IntN(len(h.subjects))]
		case "updateApiKey", "rotateApiKey":
			r.target = h.pickKey(live)
		case "revokeApiKey":
			r.target = h.pickKey(func(k *hkey) bool { return !k.revoked || h.r.IntN(5) == 0 })
		default:
			r.target = h.pickKey(func(*hkey) bool { return true })
		}
		if r.target != nil {
			id = r.target.id
		}
		r.rawPath = strings.Replace(op.path, "{id}", url.PathEscape(id), 1)
	}
	if op.protected {
		r.header.Set("Authorization", "Bearer "+adminToken)
	}
	for _, p := range op.query {
		if h.r.IntN(3) == 0 {
			r.q = append(r.q, qpair{k: p.Name, v: h.queryValue(p)})
		}
	}
	if op.body != nil && (withBody || op.bodyRequired || h.r.IntN(4) != 0) {
		m := h.g.value("", op.body).(*jobj)
		if op.id == "verifyApiKey" {
			switch n := h.r.IntN(10); {
			case n < 5:
				m.set("key", h.pickKey(func(k *hkey) bool { return !k.revoked }).secret)
			case n < 7:
				m.set("key", keytest.WrongSecret(h.t, h.pickKey(func(*hkey) bool { return true }).secret))
			case n < 8:
				m.set("key", h.revoked)
			} // else the generated string: MALFORMED
		}
		r.model = m
		r.header.Set("Content-Type", "application/json")
	}
	r.finish()
	return r
}

func (h *hostile) queryValue(p *openapi3.Parameter) string {
	switch p.Name {
	case "cursor":
		if len(h.cursors) > 0 && h.r.IntN(2) == 0 {
			return h.cursors[h.r.IntN(len(h.cursors))]
		}
		k := h.pickKey(func(*hkey) bool { return true })
		return apikeys.Cursor{CreatedAt: h.g.now.Add(-time.Duration(h.r.IntN(10)) * time.Second), ID: k.id}.String()
	case "subjectId":
		return h.subjects[h.r.IntN(len(h.subjects))]
	case "createdBySubjectId":
		if h.r.IntN(2) == 0 {
			return apikeys.AdminSubjectID
		}
		return h.subjects[h.r.IntN(len(h.subjects))]
	}
	return fmt.Sprint(h.g.value(p.Name, p.Schema.Value))
}

var (
	secretInBody = regexp.MustCompile(`"secretKey":"([A-Za-z0-9_]+)"`)
	nextCursor   = regexp.MustCompile(`[?&]cursor=([A-Za-z0-9_-]+)`)
)

// observe updates what the run knows from an answer.
func (h *hostile) observe(r *hreq, res *resp) {
	if res == nil || res.Status >= 300 {
		return
	}
	h.mu.Lock()
	for _, m := range secretInBody.FindAllSubmatch(res.Body, -1) {
		h.secrets[string(m[1])] = true
	}
	h.mu.Unlock()
	if !r.write && r.op.id != "listApiKeys" {
		return
	}
	switch r.op.id {
	case "createApiKey", "batchCreateApiKeys", "rotateApiKey":
		var list []struct {
			ID        string `json:"id"`
			SubjectID string `json:"subjectId"`
			Secret    string `json:"secretKey"`
		}
		body := bytes.TrimSpace(res.Body)
		if len(body) > 0 && body[0] == '{' {
			body = append(append([]byte{'['}, body...), ']')
		}
		if err := json.Unmarshal(body, &list); err != nil {
			h.fail(sig("undecodable answer", r, res.Status), "%s: %v", r, err)
			return
		}
		for _, k := range list {
			h.keys = append(h.keys, &hkey{id: k.ID, subject: k.SubjectID, secret: k.Secret})
			if !slices.Contains(h.subjects, k.SubjectID) {
				h.subjects = append(h.subjects, k.SubjectID)
			}
		}
		if r.op.id == "rotateApiKey" && r.target != nil {
			r.target.rotated = true
			var b struct {
				Grace *json.Number `json:"gracePeriodSeconds"`
			}
			if json.Unmarshal(r.body, &b) != nil || b.Grace == nil || b.Grace.String() == "0" {
				r.target.revoked = true
			}
		}
	case "revokeApiKey":
		if r.target != nil {
			r.target.revoked = true
		}
	case "listApiKeys":
		if m := nextCursor.FindStringSubmatch(res.Header.Get("Link")); m != nil && len(h.cursors) < 50 {
			h.cursors = append(h.cursors, m[1])
		}
	}
}

// send sends one request and holds its answer to the rules of the run; nil when no answer came.
func (h *hostile) send(r *hreq, phase string) *resp {
	req, err := r.httpRequest(h.e.http.URL)
	if err != nil {
		h.fail(sig("cannot build", r, 0), "%s: %v", r, err)
		return nil
	}
	start := time.Now()
	res, err := h.client.Do(req)
	if err != nil {
		h.fail(sig("no answer", r, 0), "%s: %v", r, err)
		return nil
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	took := time.Since(start)
	if err != nil {
		h.fail(sig("answer unreadable", r, 0), "%s: %v", r, err)
		return nil
	}
	out := &resp{Status: res.StatusCode, Header: res.Header, Body: b}
	h.mu.Lock()
	if h.counts[phase] == nil {
		h.counts[phase] = map[int]int{}
	}
	h.counts[phase][out.Status]++
	h.total++
	if took > h.slow {
		h.slow, h.slowest = took, r.label+" "+r.method+" "+r.op.path
	}
	h.mu.Unlock()
	switch {
	case out.Status == http.StatusServiceUnavailable && out.Header.Get("Retry-After") == "":
		h.fail(sig("503 without Retry-After", r, 503), "%s\nanswer: %s", r, b)
	case out.Status == http.StatusServiceUnavailable:
		h.t.Logf("unexpected 503 (with Retry-After %s) to %s: %s", out.Header.Get("Retry-After"), r, b)
	case out.Status >= 500:
		h.fail(sig("server error", r, out.Status), "%s\nanswer: %s", r, b)
	}
	if err := checkResponse(req, r.body, out); err != nil {
		h.fail(sig("departs from openapi.yaml", r, out.Status), "%s\n%v\nanswer: %d %s", r, err, out.Status, abridge(string(b), 400))
	}
	return out
}

// sendValid sends a generated valid request, which must get the operation's success status.
func (h *hostile) sendValid(r *hreq) {
	res := h.send(r, "valid")
	if res != nil && res.Status != r.op.want {
		h.fail(sig(fmt.Sprintf("valid request refused (want %d)", r.op.want), r, res.Status), "%s\nanswer: %d %s", r, res.Status, abridge(string(res.Body), 400))
	}
	h.observe(r, res)
}

// validPhase sends generated valid requests of every operation, each built against the
// current state just before it is sent, then the accepted mutants of the last hostile phase.
func (h *hostile) validPhase() {
	var plan []*hop
	for _, op := range h.ops {
		n := 1
		switch {
		case op.id == "createApiKey":
			n = 10 // the pool grows faster than revocations and rotations use it up
		case op.protected:
			n = 5
		}
		for i := 0; i < n; i++ {
			plan = append(plan, op)
		}
	}
	h.r.Shuffle(len(plan), func(i, j int) { plan[i], plan[j] = plan[j], plan[i] })
	for _, op := range plan {
		h.sendValid(h.valid(op, false))
	}
	for _, r := range h.deferred {
		h.observe(r, h.send(r, "accepted mutants"))
	}
	h.deferred = nil
}

// hostilePhase sends the catalogue of mutations of every operation.
func (h *hostile) hostilePhase() {
	var all, reqs []*hreq
	for _, op := range h.ops {
		all = append(all, h.mutants(op)...)
	}
	all = append(all, h.methodMutants()...)
	for _, r := range all {
		h.families[family(r.label)]++
		if r.write && !h.mustBeRefused(r) {
			h.deferred = append(h.deferred, r)
			continue
		}
		r.refuse = r.write
		if r.write {
			h.writes++
		}
		reqs = append(reqs, r)
	}
	h.r.Shuffle(len(reqs), func(i, j int) { reqs[i], reqs[j] = reqs[j], reqs[i] })
	before := h.fingerprint()
	for i := 0; i < len(reqs); i += hostileChunk {
		chunk := reqs[i:min(i+hostileChunk, len(reqs))]
		results := h.sendAll(chunk)
		for j, r := range chunk {
			if res := results[j]; res != nil && r.refuse && res.Status < 400 {
				h.fail(sig("hostile write accepted", r, res.Status), "%s\nanswer: %d %s", r, res.Status, abridge(string(res.Body), 400))
				h.observe(r, res)
			}
		}
		after := h.fingerprint()
		if after != before {
			h.changed(chunk, before, after)
			after = h.fingerprint()
		}
		before = after
	}
}

func family(label string) string {
	if i := strings.IndexAny(label, ":/"); i > 0 {
		return label[:i]
	}
	return label
}

func (h *hostile) sendAll(reqs []*hreq) []*resp {
	out := make([]*resp, len(reqs))
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < hostileWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				out[i] = h.send(reqs[i], "hostile")
			}
		}()
	}
	for i := range reqs {
		next <- i
	}
	close(next)
	wg.Wait()
	return out
}

// changed reports a chunk of refused requests after which the database differs, then replays
// its writing requests one at a time to name the one that changes it.
func (h *hostile) changed(chunk []*hreq, before, after string) {
	gone, added := lineDiff(before, after)
	h.fail("database changed", "the database changed during a chunk of %d refused requests:\nrows before only:\n  %s\nrows after only:\n  %s",
		len(chunk), strings.Join(gone, "\n  "), strings.Join(added, "\n  "))
	for _, r := range chunk {
		if !r.write {
			continue
		}
		b := h.fingerprint()
		res := h.send(r, "replay")
		if a := h.fingerprint(); a != b {
			gone, added := lineDiff(b, a)
			status := 0
			if res != nil {
				status = res.Status
			}
			h.fail(sig("hostile request changed the database", r, status), "replayed alone, this request (answered %d) changes the database:\n%s\nrows before only:\n  %s\nrows after only:\n  %s",
				status, r, strings.Join(gone, "\n  "), strings.Join(added, "\n  "))
			return
		}
	}
}

func lineDiff(a, b string) (onlyA, onlyB []string) {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	ma, mb := in(a), in(b)
	delete(ma, "")
	delete(mb, "")
	for l := range ma {
		if !mb[l] && len(onlyA) < 10 {
			onlyA = append(onlyA, abridge(l, 600))
		}
	}
	for l := range mb {
		if !ma[l] && len(onlyB) < 10 {
			onlyB = append(onlyB, abridge(l, 600))
		}
	}
	sort.Strings(onlyA)
	sort.Strings(onlyB)
	return onlyA, onlyB
}

// fingerprint is every row of every table of the database, read beside the server.
func (h *hostile) fingerprint() string {
	h.t.Helper()
	ctx := context.Background()
	q := `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY table_name`
	if h.engine == testdb.SQLite {
		q = `SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`
	}
	var tables []string
	rows, err := h.raw.QueryContext(ctx, q)
	if err != nil {
		h.t.Fatalf("fingerprint: %v", err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			h.t.Fatalf("fingerprint: %v", err)
		}
		tables = append(tables, name)
	}
	rows.Close()
	if len(tables) < 2 {
		h.t.Fatalf("fingerprint: tables %v", tables)
	}
	h.prints++
	h.rows = 0
	var b strings.Builder
	for _, table := range tables {
		rows, err := h.raw.QueryContext(ctx, `SELECT * FROM "`+strings.ReplaceAll(table, `"`, `""`)+`"`)
		if err != nil {
			h.t.Fatalf("fingerprint %s: %v", table, err)
		}
		cols, _ := rows.Columns()
		var lines []string
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				h.t.Fatalf("fingerprint %s: %v", table, err)
			}
			cells := make([]string, len(vals))
			for i, v := range vals {
				switch v := v.(type) {
				case nil:
					cells[i] = "NULL"
				case []byte:
					cells[i] = strconv.Quote(string(v))
				case string:
					cells[i] = strconv.Quote(v)
				case time.Time:
					cells[i] = v.UTC().Format(time.RFC3339Nano)
				default:
					cells[i] = fmt.Sprint(v)
				}
			}
			lines = append(lines, table+": "+strings.Join(cells, " | "))
		}
		if err := rows.Err(); err != nil {
			h.t.Fatalf("fingerprint %s: %v", table, err)
		}
		rows.Close()
		sort.Strings(lines)
		h.rows += len(lines)
		fmt.Fprintf(&b, "table %s (%s)\n%s\n", table, strings.Join(cols, ", "), strings.Join(lines, "\n"))
	}
	return b.String()
}

// mustBeRefused decides whether a mutant of a writing operation is hostile: by construction, or
// because apikeys.CheckJSONText or openapi.yaml refuses it.
func (h *hostile) mustBeRefused(r *hreq) bool {
	switch r.verdict {
	case mustRefuse:
		return true
	case mayAccept:
		return false
	}
	if r.body != nil && len(bytes.TrimSpace(r.body)) > 0 && apikeys.CheckJSONText(r.body) != nil {
		return true
	}
	req, err := r.httpRequest("http://127.0.0.1")
	if err != nil {
		return true
	}
	router, err := specRouter()
	if err != nil {
		h.t.Fatal(err)
	}
	route, params, err := router.FindRoute(req)
	if err != nil {
		return true // no such operation
	}
	err = openapi3filter.ValidateRequest(context.Background(), &openapi3filter.RequestValidationInput{
		Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
	})
	return err != nil
}

// A mutation of one member of a body.
type edit struct {
	label string
	kind  int // editSet, editDel, editDup
	v     any
}

const (
	editSet = iota
	editDel
	editDup
)

func apply(root any, ptr []string, ed edit) bool {
	c := containerOf(root, ptr)
	key := ptr[len(ptr)-1]
	v := cloneJSON(ed.v)
	switch c := c.(type) {
	case *jobj:
		switch ed.kind {
		case editSet:
			c.set(key, v)
		case editDel:
			c.del(key)
		case editDup:
			if _, ok := c.get(key); !ok {
				c.add(key, v)
			}
			c.add(key, v)
		}
		return true
	case []any:
		i, err := strconv.Atoi(key)
		if err != nil || i >= len(c) || ed.kind != editSet {
			return false
		}
		c[i] = v
		return true
	}
	return false
}

// hmember is a member of a body schema: a property, present in the generated body or not.
type hmember struct {
	ptr      []string
	s        *openapi3.Schema
	required bool
}

func members(s *openapi3.Schema, v any, ptr []string, out *[]hmember, objects *[][]string) {
	if len(s.Properties) > 0 {
		*objects = append(*objects, ptr)
		o, _ := v.(*jobj)
		for _, name := range slices.Sorted(maps.Keys(s.Properties)) {
			ps := s.Properties[name].Value
			p := append(slices.Clone(ptr), name)
			*out = append(*out, hmember{p, ps, slices.Contains(s.Required, name)})
			if o != nil {
				if cv, ok := o.get(name); ok {
					members(ps, cv, p, out, objects)
				}
			}
		}
	}
	if s.Items != nil {
		if a, ok := v.([]any); ok && len(a) > 0 {
			members(s.Items.Value, a[0], append(slices.Clone(ptr), "0"), out, objects)
		}
	}
}

func deep(open, close string, n int) jraw {
	return jraw(strings.Repeat(open, n) + strings.Repeat(close, n))
}

// hostileStrings are the string values every string member is tried with.
var hostileStrings = []struct {
	label string
	v     any
}{
	{"empty", ""},
	{"blank", "   "},
	{"nul", "a\x00b"},
	{"nul-only", "\x00"},
	{"lone-surrogate", jraw(`"a\ud800b"`)},
	{"lone-low-surrogate", jraw(`"\udc00"`)},
	{"reversed-surrogates", jraw(`"\udd11\ud83d"`)},
	{"surrogate-pair", jraw(`"key \ud83d\udd11"`)},
	{"bidi-override", "a\u202eb"},
	{"bidi-isolate", "a\u2066b\u2069"},
	{"bidi-mark-only", "\u200f"},
	{"line-separator", "a\u2028b"},
	{"c1-control", "a\u0085b"},
	{"del", "a\x7fb"},
	{"escape", "a\x1bb"},
	{"newline", "a\nb"},
	{"tab", "a\tb"},
	{"crlf", "a\r\nb"},
	{"invalid-utf8", jraw("\"a\xffb\"")},
	{"overlong-utf8", jraw("\"\xc0\xaf\"")},
	{"utf8-encoded-surrogate", jraw("\"\xed\xa0\x80\"")},
	{"truncated-utf8", jraw("\"a\xe2\x82\"")},
	{"zero-width-only", "\u200b"},
	{"bom-prefix", "\ufeffa"},
	{"nbsp-only", "\u00a0"},
	{"braille-blank", "\u2800"},
	{"emoji", "🔑"},
	{"combining", "e\u0301"},
	{"noncharacter", "a\uffff"},
	{"rtl", "مفتاح"},
	{"sqli", "' OR '1'='1' --"},
	{"sqli-drop", "x'); DROP TABLE api_keys; --"},
	{"sqli-union", "\" UNION SELECT secret_hash FROM api_keys --"},
	{"traversal", "../../../../etc/passwd"},
	{"traversal-encoded", "..%2f..%2f..%2fetc%2fpasswd"},
	{"html", "<script>alert(1)</script>"},
	{"format-verbs", "%s%n%x%v"},
	{"template", "${jndi:ldap://127.0.0.1/a}{{7*7}}"},
	{"escaped-unicode", jraw(`"\u0041\u00e9\u4e2d"`)},
	{"huge-number", jraw("123456789012345678901234567890")},
	{"overflow-number", jraw("1e309")},
}

// hostileNumbers are the numbers every integer or number member is tried with.
var hostileNumbers = []string{"1e309", "-1e309", "123456789012345678901234567890", "-123456789012345678901234567890",
	"-1", "1.5", "1e3", "1E2", "-0", "0.0", "9007199254740993", "9223372036854775808", "2592001", "1e-400", "0x10", "01", "+1", ".5", "NaN", "Infinity"}

// edits lists the mutations of one member.
func (h *hostile) edits(m hmember) []edit {
	s, name := m.s, m.ptr[len(m.ptr)-1]
	eds := []edit{
		{"null", editSet, nil},
		{"duplicate", editDup, h.g.value(name, s)},
		// Deep, though not as deep as the root's: the validator's error for a nested value costs
		// the server time and memory quadratic in its depth (see hostileNearCap).
		{"deep-array", editSet, deep("[", "]", 1500)},
		{"deep-object", editSet, jraw(strings.Repeat(`{"a":`, 800) + "1" + strings.Repeat("}", 800))},
	}
	if m.required {
		eds = append(eds, edit{"missing", editDel, nil})
	}
	for _, w := range []struct {
		typ string
		v   any
	}{{"integer", 1}, {"number", 1.5}, {"boolean", true}, {"string", "x"}, {"array", []any{}}, {"object", &jobj{}}} {
		if s.Type.Is(w.typ) || (w.typ == "integer" && s.Type.Is("number")) {
			continue
		}
		eds = append(eds, edit{"type-" + w.typ, editSet, w.v})
	}
	switch {
	case s.Type.Is("string"):
		for _, hs := range hostileStrings {
			eds = append(eds, edit{hs.label, editSet, hs.v})
		}
		if s.MaxLength != nil {
			n := int(*s.MaxLength)
			filler := "a"
			if s.Pattern != "" {
				re, _ := h.g.compiled(s.Pattern)
				for _, f := range []string{"a", "A", "0", "é"} {
					if re.MatchString(strings.Repeat(f, n)) {
						filler = f
						break
					}
				}
			}
			eds = append(eds,
				edit{"len-max", editSet, strings.Repeat(filler, n)},
				edit{"len-max+1", editSet, strings.Repeat(filler, n+1)},
				edit{"len-max-multibyte", editSet, strings.Repeat("é", n)},
				edit{"len-max+1-multibyte", editSet, strings.Repeat("é", n+1)},
				edit{"len-max-astral", editSet, strings.Repeat("🔑", n)},
				edit{"len-4max", editSet, strings.Repeat(filler, 4*n)},
			)
		}
		if s.MinLength > 1 {
			eds = append(eds, edit{"len-min-1", editSet, strings.Repeat("a", int(s.MinLength)-1)})
		}
	case s.Type.Is("integer"), s.Type.Is("number"):
		for _, n := range hostileNumbers {
			eds = append(eds, edit{"number-" + n, editSet, jraw(n)})
		}
		if s.Max != nil {
			eds = append(eds, edit{"max", editSet, int(*s.Max)}, edit{"max+1", editSet, int(*s.Max) + 1})
		}
		if s.Min != nil {
			eds = append(eds, edit{"min", editSet, int(*s.Min)}, edit{"min-1", editSet, int(*s.Min) - 1})
		}
	case s.Type.Is("array"):
		item := s.Items.Value
		v := h.g.value(name, item)
		eds = append(eds,
			edit{"items-repeated", editSet, []any{v, v}},
			edit{"items-null", editSet, []any{nil}},
			edit{"items-wrong-type", editSet, []any{1, true}},
			edit{"items-empty", editSet, []any{}},
			edit{"items-nested", editSet, []any{[]any{v}}},
			edit{"items-unknown-value", editSet, []any{"api_keys:admin"}},
		)
		if s.MaxItems != nil {
			var many []any
			for i := 0; i <= int(*s.MaxItems); i++ {
				many = append(many, h.g.value(name, item))
			}
			eds = append(eds, edit{"items-max+1", editSet, many})
		}
	case s.Type.Is("object"):
		many := &jobj{}
		for i := 0; i <= 50; i++ {
			many.set("p"+strconv.Itoa(i), i)
		}
		eds = append(eds,
			edit{"props-51", editSet, many},
			edit{"props-over-4096-bytes", editSet, &jobj{m: []jmem{{"blob", strings.Repeat("x", 4100)}}}},
			edit{"props-repeated", editSet, jraw(`{"a":1,"a":2}`)},
			edit{"props-lone-surrogate-name", editSet, jraw(`{"\ud800":1}`)},
			edit{"props-empty-name", editSet, jraw(`{"":1}`)},
			edit{"props-nested-500", editSet, jraw(strings.Repeat(`{"a":`, 500) + "1" + strings.Repeat("}", 500))},
		)
	}
	return eds
}

// unknownMembers are added to every object of a body that has declared properties.
var unknownMembers = []struct {
	name string
	v    any
}{
	{"colour", "red"},
	{"secretKey", "qs_live_" + strings.Repeat("A", 40)},
	{"__proto__", &jobj{m: []jmem{{"admin", true}}}},
	{"hashAlgo", "md5"},
	{"status", "active"},
	{"revokedAt", "2020-01-01T00:00:00Z"},
	{"", "empty name"},
	{"name\x00", "x"},
	{"NAME", "x"},
}

// hostileCursors are malformed and forged cursors (forged ones may be well-formed: 200).
func (h *hostile) hostileCursors() []string {
	id := h.keys[0].id
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	micros := strconv.FormatInt(h.g.now.UnixMicro(), 10)
	return []string{
		"!!!", "AAAA", strings.Repeat("A", 200), strings.Repeat("A", 201), strings.Repeat("A", 4096), "a", "-", "_",
		b64("junk"), b64("|"), b64(micros), b64(micros + "|"), b64("-1|" + id), b64("253402300800000000|" + id),
		b64("99999999999999999999|" + id), b64(micros + "|apk_nope"), b64(micros + "|' OR 1=1 --"),
		b64(micros + "|" + id + "|x"), b64(micros + "|" + strings.ToUpper(id)), b64(" " + micros + "|" + id),
		b64("0x10|" + id), b64(micros + "|" + id + "\x00"), b64("\xff\xfe|" + id),
		base64.StdEncoding.EncodeToString([]byte(micros + "|" + id)), base64.URLEncoding.EncodeToString([]byte(micros + "|" + id)),
		b64(micros+"|"+id) + "=", b64(strings.Repeat("9", 140)),
		b64("0|" + id), b64("253402300799999999|" + id), // well formed: the first and the last instant
	}
}

// hostileQueryValues are raw (escaped) values every string query parameter is tried with.
var hostileQueryValues = []string{
	"%27%20OR%20%271%27%3D%271", "x%27%3B%20DROP%20TABLE%20api_keys%3B%20--", "1)%20OR%201%3D1%20--", "%22%20OR%20%22%22%3D%22",
	"..%2F..%2F..%2Fetc%2Fpasswd", "../../etc/passwd", "%2e%2e%2f", "%00", "a%00b", "%E2%80%AE", "%ED%A0%80", "%C0%AF", "%FF",
	"%F0%9F%94%91", "%EF%BB%BF", "%E2%80%8B", "%20", "+", "a+b", "*", "%25", "%", "%zz", "a%2", "subject_%C3%A9", "tenant%0Aacme",
	"active%2Crevoked", "ACTIVE", "null", "true", "[]", "%7B%7D", "a;b",
}

var hostileLimits = []string{"abc", "0", "101", "-1", "1.5", "1e2", "0x10", "123456789012345678901234567890",
	"9223372036854775808", "%201", "%2B1", "1%20", "01", "%D9%A1", "100", "1", "null", "%00", "1,2", "Infinity", "NaN"}

// mutants generates the catalogue of mutations of op, each on a fresh valid request.
func (h *hostile) mutants(op *hop) []*hreq {
	var out []*hreq
	emit := func(r *hreq, label string, v hverdict) {
		r.label, r.verdict = label, v
		r.finish()
		out = append(out, r)
	}
	base := func() *hreq { return h.valid(op, true) }

	if op.body != nil {
		// Every member, present or not, mutated every way that fits it.
		var ms []hmember
		var objects [][]string
		members(op.body, base().model, nil, &ms, &objects)
		for _, m := range ms {
			for _, ed := range h.edits(m) {
				r := base()
				if apply(r.model, m.ptr, ed) {
					emit(r, "body/"+strings.Join(m.ptr, "/")+":"+ed.label, byContract)
				}
			}
		}
		for _, obj := range objects {
			for _, u := range unknownMembers {
				r := base()
				if apply(r.model, append(slices.Clone(obj), u.name), edit{kind: editSet, v: u.v}) {
					emit(r, "unknown/"+strings.Join(obj, "/")+":"+strconv.Quote(u.name), byContract)
				}
			}
			r := base()
			if o, ok := containerOf(r.model, append(slices.Clone(obj), "x")).(*jobj); ok {
				for i := range o.m {
					o.m[i].v = nil
				}
				emit(r, "null-all/"+strings.Join(obj, "/"), byContract)
			}
		}
		// The body as text.
		raw := string(base().body)
		limit := hostileMaxBody
		if op.id == "batchCreateApiKeys" {
			limit = hostileMaxBatchBody
		}
		pad := func(n int) []byte { // a body of exactly n bytes
			return []byte(`{"pad":"` + strings.Repeat("x", n-len(`{"pad":""}`)) + `"}`)
		}
		texts := []struct {
			label string
			body  string
			v     hverdict
		}{
			{"array", "[]", byContract}, {"wrapped", "[" + raw + "]", byContract}, {"string", `"x"`, byContract},
			{"number", "1", byContract}, {"true", "true", byContract}, {"null", "null", byContract},
			{"empty", "", byContract}, {"whitespace", " \n\t ", byContract}, {"empty-object", "{}", byContract},
			{"trailing-value", raw + "{}", byContract}, {"trailing-garbage", raw + "x", byContract},
			{"two-values", raw + " " + raw, byContract}, {"trailing-comma", strings.TrimSuffix(raw, "}") + ",}", byContract},
			{"bom", "\ufeff" + raw, byContract}, {"comment", "/*c*/" + raw, byContract},
			{"single-quotes", strings.ReplaceAll(raw, `"`, `'`), byContract}, {"nan", `{"x":NaN}`, byContract},
			{"infinity", `{"x":-Infinity}`, byContract}, {"nul-prefix", "\x00" + raw, byContract}, {"invalid-utf8", "\xff" + raw, byContract},
			{"unquoted-names", `{name:"x"}`, byContract},
			{"deep-array", string(deep("[", "]", 10000)), byContract},
			{"deep-object", strings.Repeat(`{"a":`, 9000) + "1" + strings.Repeat("}", 9000), byContract},
			{"deeper-than-the-limit", string(deep("[", "]", 40000)), byContract},
			{"escapes", `{"name":"` + strings.Repeat(`\u0041`, 10000) + `"}`, byContract},
			{"at-limit", string(pad(limit)), byContract},
			{"over-limit-by-1", string(pad(limit + 1)), mustRefuse},
			{"over-limit-by-4096", string(pad(limit + 4096)), mustRefuse},
		}
		if op.id == "createApiKey" { // once a round: it costs the server about half a second
			texts = append(texts, struct {
				label string
				body  string
				v     hverdict
			}{"deep-array-under-the-value-cap", string(deep("[", "]", hostileNearCap)), byContract})
		}
		if limit > hostileMaxBody {
			texts = append(texts, struct {
				label string
				body  string
				v     hverdict
			}{"over-64KiB", string(pad(hostileMaxBody + 1)), byContract})
		}
		var utf16 []byte
		for _, c := range []byte(raw) {
			utf16 = append(utf16, c, 0)
		}
		texts = append(texts, struct {
			label string
			body  string
			v     hverdict
		}{"utf-16", string(utf16), byContract})
		for i := 0; i < 3 && len(raw) > 2; i++ {
			cut := 1 + h.r.IntN(len(raw)-1)
			texts = append(texts, struct {
				label string
				body  string
				v     hverdict
			}{"truncated-at-" + strconv.Itoa(cut), raw[:cut], byContract})
		}
		for _, tx := range texts {
			r := base()
			r.model, r.body = nil, []byte(tx.body)
			emit(r, "text:"+tx.label, tx.v)
		}
		r := base()
		r.model, r.body, r.chunked = nil, pad(limit+1), true
		emit(r, "text:over-limit-chunked", mustRefuse)

		// Content-Type.
		for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
			"application/xml", "application/jsonp", "application/json-patch+json", "application/merge-patch+json",
			"application/problem+json", "json", "*/*", "application/*", "application/json; charset=latin1",
			"application/json; charset=utf-16", "application/json; charset=utf-8; q=1", "application/json, text/plain",
			"application/json;", "application/json; charset=", "", "APPLICATION/JSON", "application/json; charset=UTF-8",
			"application/json;charset=utf-8", `application/json; charset="utf-8"`, "application/json ; charset=utf-8",
			"application/json; charset=" + strings.Repeat("u", 60<<10)} {
			r := base()
			r.header.Set("Content-Type", ct)
			v := mustRefuse
			if mt, params, err := mime.ParseMediaType(ct); err == nil && mt == "application/json" &&
				(len(params) == 0 || len(params) == 1 && strings.EqualFold(params["charset"], "utf-8")) {
				v = mayAccept
			}
			emit(r, "content-type:"+abridge(ct, 40), v)
		}
		r = base()
		r.header.Del("Content-Type")
		emit(r, "content-type:missing", mustRefuse)
		r = base()
		r.header["Content-Type"] = []string{"text/plain", "application/json"}
		emit(r, "content-type:twice-text-first", mustRefuse)
		r = base()
		r.header["Content-Type"] = []string{"application/json", "text/plain"}
		emit(r, "content-type:twice-json-first", mayAccept)
		r = base()
		r.header.Set("Content-Encoding", "gzip")
		emit(r, "header:content-encoding-gzip", mayAccept)
		r = base()
		r.chunked = true
		emit(r, "header:chunked", mayAccept)
	}

	// Authorization.
	if op.protected {
		forged := keytest.WrongSecret(h.t, h.keys[0].secret)
		for _, a := range []struct {
			label string
			vals  []string
			v     hverdict
		}{
			{"none", nil, mustRefuse},
			{"twice", []string{"Bearer " + adminToken, "Bearer " + adminToken}, mustRefuse},
			{"twice-one-wrong", []string{"Bearer " + adminToken, "Bearer wrong-token-0123456789"}, mustRefuse},
			{"basic", []string{"Basic " + base64.StdEncoding.EncodeToString([]byte("admin:"+adminToken))}, mustRefuse},
			{"scheme-only", []string{"Bearer"}, mustRefuse},
			{"empty", []string{""}, mustRefuse},
			{"three-fields", []string{"Bearer " + adminToken + " extra"}, mustRefuse},
			{"wrong-token", []string{"Bearer wrong-token-0123456789"}, mustRefuse},
			{"admin-truncated", []string{"Bearer " + adminToken[:len(adminToken)-1]}, mustRefuse},
			{"admin-extended", []string{"Bearer " + adminToken + "x"}, mustRefuse},
			{"admin-upper-case", []string{"Bearer " + strings.ToUpper(adminToken)}, mustRefuse},
			{"token-scheme", []string{"Token " + adminToken}, mustRefuse},
			{"forged-key", []string{"Bearer " + forged}, mustRefuse},
			{"revoked-key", []string{"Bearer " + h.revoked}, mustRefuse},
			{"malformed-key", []string{"Bearer qs_live_" + strings.Repeat("A", 40)}, mustRefuse},
			{"huge", []string{"Bearer " + strings.Repeat("a", 60<<10)}, mustRefuse},
			{"sqli", []string{"Bearer '||'1'='1"}, mustRefuse},
			{"latin1", []string{"Bearer \xe9\xe9\xe9\xe9\xe9\xe9\xe9\xe9\xe9\xe9\xe9\xe9\xe9\xe9\xe9\xe9"}, mustRefuse},
			{"read-only-key", []string{"Bearer " + h.readOnly}, mustRefuse},
			{"verify-only-key", []string{"Bearer " + h.verifier}, mustRefuse},
			{"lower-case-scheme", []string{"bearer " + adminToken}, mayAccept},
			{"extra-spaces", []string{"Bearer    " + adminToken}, mayAccept},
			{"tab", []string{"Bearer\t" + adminToken}, mayAccept},
		} {
			r := base()
			if a.vals == nil {
				r.header.Del("Authorization")
			} else {
				r.header["Authorization"] = a.vals
			}
			emit(r, "auth:"+a.label, a.v)
		}
	}

	// Other headers.
	for _, hd := range []struct {
		label string
		set   func(r *hreq)
	}{
		{"huge-value", func(r *hreq) { r.header.Set("X-Padding", strings.Repeat("p", 60<<10)) }},
		{"many", func(r *hreq) {
			for i := 0; i < 300; i++ {
				r.header.Set("X-Header-"+strconv.Itoa(i), strconv.Itoa(i))
			}
		}},
		{"accept-xml", func(r *hreq) { r.header.Set("Accept", "application/xml") }},
		{"forwarded-for", func(r *hreq) { r.header.Set("X-Forwarded-For", "' OR 1=1 --, 10.0.0.1, ::1") }},
		{"real-ip", func(r *hreq) { r.header.Set("X-Real-Ip", "not-an-ip") }},
		{"host", func(r *hreq) { r.host = "evil.example" }},
		{"latin1-value", func(r *hreq) { r.header.Set("X-Name", "\xe9t\xe9") }},
	} {
		r := base()
		hd.set(r)
		emit(r, "header:"+hd.label, mayAccept)
	}
	if op.body == nil {
		r := base()
		r.body = []byte(`{"name":"ignored"}`)
		r.header.Set("Content-Type", "application/json")
		emit(r, "header:body-on-"+op.method, mayAccept)
	}

	// Query strings.
	for _, q := range []struct {
		label string
		raw   string
		v     hverdict
	}{
		{"unknown", "foo=bar", mustRefuse},
		{"unknown-sqli", "%27%20OR%201%3D1--=1", mustRefuse},
		{"semicolon", "a=1;b=2", mustRefuse},
		{"bad-escape", "x=%zz", mustRefuse},
		{"nul-name", "%00=1", mustRefuse},
		{"empty-name", "=1", mustRefuse},
		{"question-mark", "?=1", mustRefuse},
		{"only-ampersands", "&&&", mayAccept},
		{"long", "x=" + strings.Repeat("q", 8000), mustRefuse},
	} {
		r := base()
		r.q = append(r.q, qpair{k: q.raw, raw: true})
		emit(r, "query:"+q.label, q.v)
	}
	for _, p := range op.query {
		s := p.Schema.Value
		set := func(r *hreq, v string, raw bool) {
			r.q = slices.DeleteFunc(r.q, func(q qpair) bool { return q.k == p.Name })
			r.q = append(r.q, qpair{k: p.Name, v: v, raw: raw})
		}
		r := base()
		set(r, "", false)
		emit(r, "query/"+p.Name+":empty", mustRefuse)
		r = base()
		set(r, h.queryValue(p), false)
		r.q = append(r.q, qpair{k: p.Name, v: h.queryValue(p)})
		emit(r, "query/"+p.Name+":twice", mustRefuse)
		r = base()
		r.q = append(r.q, qpair{k: strings.ToUpper(p.Name[:1]) + p.Name[1:], v: h.queryValue(p)})
		emit(r, "query/"+p.Name+":case", mustRefuse)
		values := hostileQueryValues
		switch {
		case s.Type.Is("integer"):
			values = hostileLimits
		case p.Name == "cursor":
			values = nil
			for _, c := range h.hostileCursors() {
				values = append(values, url.QueryEscape(c))
			}
		}
		if s.MaxLength != nil {
			n := int(*s.MaxLength)
			values = append(values, strings.Repeat("a", n), strings.Repeat("a", n+1), strings.Repeat("%C3%A9", n))
		}
		for i, v := range values {
			r := base()
			set(r, v, true)
			emit(r, "query/"+p.Name+":"+strconv.Itoa(i), byContract)
		}
	}

	// Ids in the path.
	if op.hasID {
		id := h.keys[h.r.IntN(len(h.keys))].id
		var ids []string
		if op.id == "getSubject" {
			sub := h.subjects[0]
			ids = []string{"jane", "subject_", "subject_" + strings.Repeat("a", 65), strings.ToUpper(sub), "subject_admin",
				"subject_nobody", sub + "%00", "subject_é", "subject_a.b", id}
		} else {
			ids = []string{"nope", "apk_", strings.ToUpper(id), strings.TrimPrefix(id, "apk_"), "APK_" + id[4:],
				"apk_" + strings.ReplaceAll(id[4:], "-", ""), id + "a", id[:len(id)-1], "apk_{" + id[4:] + "}",
				"apk_0190a1b2-c3d4-4e5f-8a9b-0c1d2e3f4a5b", "apk_0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
				"apk_00000000-0000-0000-0000-000000000000", "apk_ffffffff-ffff-ffff-ffff-ffffffffffff",
				h.keys[0].secret, h.subjects[0], "apk_" + strings.Repeat("a", 4096), "apk_é", "apk_\u202e"}
		}
		ids = append(ids, "' OR '1'='1", id+"' OR '1'='1", "1; DROP TABLE api_keys; --", "../../../../etc/passwd",
			"..", ".", "%2e%2e", id+"\x00", "*", "%", "null", "[]")
		for i, bad := range ids {
			r := base()
			r.target = nil
			r.rawPath = strings.Replace(op.path, "{id}", url.PathEscape(bad), 1)
			emit(r, "path:"+strconv.Itoa(i), mustRefuse)
		}
		for _, raw := range []struct {
			label string
			seg   string
			v     hverdict
		}{
			{"raw-traversal", "../../../../etc/passwd", mustRefuse},
			{"raw-dot-dot", "..", mustRefuse},
			{"encoded-slash", url.PathEscape(id) + "%2F..", mustRefuse},
			{"empty", "", mustRefuse},
			{"encoded-letters", "%61%70%6b%5f" + id[4:], mayAccept},
			{"trailing-slash", url.PathEscape(id) + "/", mayAccept},
		} {
			r := base()
			r.target = nil
			r.rawPath = strings.Replace(op.path, "{id}", raw.seg, 1)
			emit(r, "path:"+raw.label, raw.v)
		}
	}
	return out
}

// methodMutants sends every method a path lacks.
func (h *hostile) methodMutants() []*hreq {
	var out []*hreq
	byPath := map[string][]*hop{}
	for _, op := range h.ops {
		byPath[op.path] = append(byPath[op.path], op)
	}
	for _, path := range slices.Sorted(maps.Keys(byPath)) {
		ops := byPath[path]
		for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "TRACE", "PROPFIND"} {
			if slices.ContainsFunc(ops, func(o *hop) bool { return o.method == m }) {
				continue
			}
			r := h.valid(ops[0], true)
			r.method, r.label, r.verdict = m, "method:"+m, mustRefuse
			r.write = m != "GET" && m != "HEAD"
			if m == "GET" || m == "HEAD" || m == "TRACE" {
				r.body = nil
				r.header.Del("Content-Type")
			}
			out = append(out, r)
		}
	}
	return out
}

// checkLogs holds the server's log to never holding a secret.
func (h *hostile) checkLogs() {
	logs := h.e.logs.String()
	if strings.Count(logs, `"msg":"request"`) < h.total/2 {
		h.fail("log not written", "the server logged %d requests of %d: the check of its log proves nothing", strings.Count(logs, `"msg":"request"`), h.total)
	}
	if strings.Contains(logs, adminToken) {
		h.fail("admin token in the log", "the admin token is in the server's log")
	}
	// Every secret is a well-formed token: find each token-shaped string, then tell a secret
	// the server returned from a token a client sent (forged, revoked).
	for _, m := range regexp.MustCompile(`[a-z][a-z0-9_]{0,22}_[0-9A-Za-z]{40}`).FindAllString(logs, -1) {
		for i := 0; i < len(m); i++ { // any well-formed token inside the match
			if tok, err := keys.Parse(m[i:]); err == nil {
				if h.secrets[tok.Secret()] {
					h.fail("secret in the log", "a secret the server returned (%s) is in its log", tok)
				} else {
					h.fail("token in the log", "a well-formed token a client sent (%s) is in the server's log", tok)
				}
				break
			}
		}
	}
	if len(h.secrets) < 50 {
		h.fail("too few secrets", "the run saw only %d secrets: the valid phases did not work", len(h.secrets))
	}
}

func (h *hostile) report(took time.Duration) {
	line := func(m map[int]int) string {
		var parts []string
		total := 0
		for _, s := range slices.Sorted(maps.Keys(m)) {
			parts = append(parts, fmt.Sprintf("%d: %d", s, m[s]))
			total += m[s]
		}
		return fmt.Sprintf("%d requests (%s)", total, strings.Join(parts, ", "))
	}
	nfail := 0
	for _, n := range h.failures {
		nfail += n
	}
	h.t.Logf("%s: %d requests in %v (seed %#x; slowest %v: %s); %d keys, %d secrets, %d failures",
		h.engine, h.total, took.Round(time.Millisecond), h.seed, h.slow.Round(time.Millisecond), h.slowest, len(h.keys), len(h.secrets), nfail)
	h.t.Logf("  %d hostile requests to writing operations, all to be refused; %d fingerprints of the database (%d rows at the end); %d log bytes checked for secrets",
		h.writes, h.prints, h.rows, len(h.e.logs.String()))
	for _, phase := range slices.Sorted(maps.Keys(h.counts)) {
		h.t.Logf("  %-16s %s", phase, line(h.counts[phase]))
	}
	var fams []string
	for _, f := range slices.Sorted(maps.Keys(h.families)) {
		fams = append(fams, fmt.Sprintf("%s %d", f, h.families[f]))
	}
	h.t.Logf("  mutants by kind (hostile and accepted): %s", strings.Join(fams, ", "))
	if len(h.failures) > 0 {
		var lines []string
		for _, s := range slices.Sorted(maps.Keys(h.failures)) {
			lines = append(lines, fmt.Sprintf("%6d × %s", h.failures[s], s))
		}
		h.t.Errorf("failures by signature (the first of each is shown above, up to %d signatures):\n%s", hostileMaxReported, strings.Join(lines, "\n"))
	}
	floor := hostileMinRequests
	if hostileRace {
		floor = hostileRaceMinRequests
	}
	if n := h.counts["hostile"]; h.total < floor || len(n) == 0 {
		h.t.Errorf("the run sent %d requests; it must send at least %d", h.total, floor)
	}
}
