package server_test

// The text rules are stated twice: as code (apikeys.ParseName, ParseDescription, ParseReason)
// and as patterns in openapi.yaml, which a spec-driven validator (Prism, Ajv: ECMA-262,
// new RegExp(p, "u")) and the server's own request validator (kin-openapi: Go's regexp)
// evaluate. A request one of them accepts the others must accept, so these tests hold the
// three to each other code point by code point: every BMP code point but the surrogates,
// and a few astral ones.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	apikeys "github.com/qs/apikeys"
)

// textRule is one text rule: its parse function and its schema in openapi.yaml.
type textRule struct {
	name     string // for messages
	parse    func(string) (string, error)
	schema   *openapi3.Schema
	pattern  string
	re       *regexp.Regexp
	min, max int // in code points
	// probes builds the strings that test code point c under this rule.
	probes func(c string) []string
}

// accepts is the verdict of the code.
func (r *textRule) accepts(s string) bool { _, err := r.parse(s); return err == nil }

// goAccepts is the verdict of the pattern and length bounds in Go's regexp.
func (r *textRule) goAccepts(s string) bool {
	n := utf8.RuneCountInString(s)
	return n >= r.min && n <= r.max && r.re.MatchString(s)
}

// lengthProbes are strings at and around the length bounds: ASCII, and an astral character,
// which is one code point but two UTF-16 code units.
func (r *textRule) lengthProbes() []string {
	out := []string{""}
	for _, unit := range []string{"a", "\U0001F600"} {
		for _, n := range []int{r.min, r.min + 1, r.max - 1, r.max, r.max + 1} {
			if n >= 1 {
				out = append(out, strings.Repeat(unit, n))
			}
		}
	}
	return out
}

// textSpec is openapi.yaml loaded and validated by kin-openapi.
type textSpec struct {
	doc   *openapi3.T
	rules []*textRule // Name, Description, Reason, UpdateApiKeyRequest.description
}

func loadTextSpec(t *testing.T) *textSpec {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(apikeys.OpenAPI)
	if err != nil {
		t.Fatalf("load openapi.yaml: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("validate openapi.yaml: %v", err)
	}
	component := func(name string) *openapi3.Schema {
		ref := doc.Components.Schemas[name]
		if ref == nil || ref.Value == nil {
			t.Fatalf("openapi.yaml has no schema %s", name)
		}
		return ref.Value
	}
	update := component("UpdateApiKeyRequest").Properties["description"]
	if update == nil || update.Value == nil {
		t.Fatal("UpdateApiKeyRequest has no property description")
	}
	oneLine := func(c string) []string { return []string{"a" + c + "b", c, c + c, " " + c} }
	multiLine := func(c string) []string { return []string{"a" + c + "b", c, c + c, "\n" + c} }
	free := func(c string) []string { return []string{c, "x" + c} }
	rules := []*textRule{
		{name: "Name", parse: apikeys.ParseName, schema: component("Name"), probes: oneLine},
		{name: "Description", parse: apikeys.ParseDescription, schema: component("Description"), probes: free},
		{name: "Reason", parse: apikeys.ParseReason, schema: component("Reason"), probes: multiLine},
		{name: "UpdateApiKeyRequest.description", parse: apikeys.ParseDescription, schema: update.Value, probes: free},
	}
	wantMax := map[string]int{
		"Name": apikeys.MaxNameLen, "Description": apikeys.MaxDescriptionLen, "Reason": apikeys.MaxReasonLen,
		"UpdateApiKeyRequest.description": apikeys.MaxDescriptionLen,
	}
	for _, r := range rules {
		s := r.schema
		if !s.Type.Is(openapi3.TypeString) || s.Pattern == "" || s.MaxLength == nil {
			t.Fatalf("%s: want a string schema with a pattern and a maxLength", r.name)
		}
		r.pattern, r.min, r.max = s.Pattern, int(s.MinLength), int(*s.MaxLength)
		if r.re, err = regexp.Compile(r.pattern); err != nil {
			t.Fatalf("%s: Go's regexp refuses the pattern: %v", r.name, err)
		}
		if r.max != wantMax[r.name] {
			t.Errorf("%s: maxLength is %d, the code's limit %d", r.name, r.max, wantMax[r.name])
		}
	}
	desc, upd := rules[1], rules[3]
	if upd.pattern != desc.pattern || upd.min != desc.min || upd.max != desc.max {
		t.Errorf("UpdateApiKeyRequest.description (pattern %q, length %d..%d) differs from Description (pattern %q, length %d..%d)",
			upd.pattern, upd.min, upd.max, desc.pattern, desc.min, desc.max)
	}
	if !update.Value.Nullable {
		t.Error("UpdateApiKeyRequest.description is not nullable")
	}
	return &textSpec{doc: doc, rules: rules}
}

// textCodePoints is every BMP code point but the surrogates, and a few astral ones.
func textCodePoints() []rune {
	cps := make([]rune, 0, 0x10000-0x800+3)
	for c := rune(0); c <= 0xFFFF; c++ {
		if c < 0xD800 || c > 0xDFFF {
			cps = append(cps, c)
		}
	}
	return append(cps, 0x1F600, 0x10FFFF, 0xE0001)
}

// textProbe is one string to judge under one rule.
type textProbe struct {
	rule int  // index in textSpec.rules
	cp   rune // the code point it tests; -1 for a length probe
	s    string
}

func (p textProbe) describe(rules []*textRule) string {
	what := "length probe"
	if p.cp >= 0 {
		what = fmt.Sprintf("U+%04X", p.cp)
	}
	s := p.s
	if len(s) > 40 {
		s = fmt.Sprintf("%s… (%d code points)", strconv.QuoteToASCII(string([]rune(s)[:4])), utf8.RuneCountInString(s))
	} else {
		s = strconv.QuoteToASCII(s)
	}
	return fmt.Sprintf("%s %s in %s", rules[p.rule].name, what, s)
}

// textProbes builds the probes of every rule (skipping rule skip, -1 for none) for cps.
func textProbes(rules []*textRule, cps []rune, skip int) []textProbe {
	var out []textProbe
	for i, r := range rules {
		if i == skip {
			continue
		}
		for _, s := range r.lengthProbes() {
			out = append(out, textProbe{i, -1, s})
		}
		for _, c := range cps {
			for _, s := range r.probes(string(c)) {
				out = append(out, textProbe{i, c, s})
			}
		}
	}
	return out
}

// maxTextErrors caps the disagreements reported.
const maxTextErrors = 20

// textReporter reports the first disagreements and counts the rest.
type textReporter struct {
	t     *testing.T
	n     int
	cps   map[rune]bool
	first []string
}

func (r *textReporter) add(cp rune, msg string) {
	r.n++
	if cp >= 0 {
		if r.cps == nil {
			r.cps = map[rune]bool{}
		}
		r.cps[cp] = true
	}
	if len(r.first) < maxTextErrors {
		r.first = append(r.first, msg)
	}
}

func (r *textReporter) done() {
	r.t.Helper()
	if r.n == 0 {
		return
	}
	for _, m := range r.first {
		r.t.Error(m)
	}
	r.t.Errorf("%d disagreements in all (first %d above), over %d distinct code points", r.n, len(r.first), len(r.cps))
}

// TestTextRulesPatternSpelling checks that each pattern keeps to the constructs that mean the
// same in ECMA-262 (with and without the u flag) and Go's regexp: \xHH escapes for U+0000 to
// U+00FF other than printable ASCII, literal characters above, no other escape.
func TestTextRulesPatternSpelling(t *testing.T) {
	t.Parallel()
	spec := loadTextSpec(t)
	escape := regexp.MustCompile(`\\x[0-9A-Fa-f]{2}`)
	for _, r := range spec.rules {
		rest := escape.ReplaceAllString(r.pattern, "")
		if strings.ContainsRune(rest, '\\') {
			t.Errorf("%s: pattern has an escape other than \\xHH: %q", r.name, r.pattern)
		}
		for _, c := range rest {
			if (c < 0x20 || c > 0x7E) && c <= 0xFF {
				t.Errorf("%s: pattern has U+%04X as a literal character, want \\x%02X", r.name, c, c)
			}
			if c > 0xFFFF {
				t.Errorf("%s: pattern has the astral character U+%04X, which ECMA-262 without the u flag splits in two", r.name, c)
			}
		}
	}
}

// TestTextRulesGoRegexp holds the code to the patterns and length bounds as Go's regexp reads
// them, for every code point.
func TestTextRulesGoRegexp(t *testing.T) {
	t.Parallel()
	spec := loadTextSpec(t)
	rep := &textReporter{t: t}
	// The update's description has the pattern and bounds of Description (loadTextSpec checks).
	probes := textProbes(spec.rules, textCodePoints(), 3)
	for _, p := range probes {
		r := spec.rules[p.rule]
		if code, re := r.accepts(p.s), r.goAccepts(p.s); code != re {
			rep.add(p.cp, fmt.Sprintf("%s: code %s, Go regexp %s", p.describe(spec.rules), verdict(code), verdict(re)))
		}
	}
	rep.done()
	t.Logf("%d probes", len(probes))
}

// textNodeScript judges the probes in ECMA-262: the pattern with and without the u flag, and
// the length bounds in code points, as JSON Schema counts them (Ajv's ucs2length).
const textNodeScript = `"use strict";
const fs = require("fs");
const input = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const rules = input.rules.map((r) => ({
  u: new RegExp(r.pattern, "u"),
  plain: new RegExp(r.pattern),
  min: r.min,
  max: r.max,
}));
const u = [], plain = [];
for (const [i, s] of input.probes) {
  const r = rules[i];
  const n = [...s].length;
  const inBounds = n >= r.min && n <= r.max;
  u.push(inBounds && r.u.test(s));
  plain.push(inBounds && r.plain.test(s));
}
process.stdout.write(JSON.stringify({ u, plain }));
`

// TestTextRulesECMAScript holds the code to the patterns as ECMA-262 reads them (node, with
// and without the u flag), for every code point; with TestTextRulesGoRegexp, all four
// verdicts (code, Go, ECMA-262 with and without u) agree.
func TestTextRulesECMAScript(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("node is not installed (%v); CI must install it to check openapi.yaml's patterns in ECMA-262", err)
		}
		t.Skipf("node is not installed (%v): the patterns of openapi.yaml are not checked in ECMA-262; install Node.js to run this test", err)
	}
	spec := loadTextSpec(t)
	// The update's description has the very pattern and bounds of Description (loadTextSpec
	// checks), so probing it again in node would only double the work.
	probes := textProbes(spec.rules, textCodePoints(), 3)

	input := struct {
		Rules  []map[string]any `json:"rules"`
		Probes [][2]any         `json:"probes"`
	}{Probes: make([][2]any, len(probes))}
	for _, r := range spec.rules {
		input.Rules = append(input.Rules, map[string]any{"pattern": r.pattern, "min": r.min, "max": r.max})
	}
	for i, p := range probes {
		input.Probes[i] = [2]any{p.rule, p.s}
	}
	dir := t.TempDir()
	inPath, jsPath := filepath.Join(dir, "probes.json"), filepath.Join(dir, "judge.js")
	raw, err := json.Marshal(input)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(inPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(jsPath, []byte(textNodeScript), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, node, jsPath, inPath)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node: %v\n%s", err, stderr.Bytes())
	}
	var out struct{ U, Plain []bool }
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("node's answer: %v", err)
	}
	if len(out.U) != len(probes) || len(out.Plain) != len(probes) {
		t.Fatalf("node judged %d and %d probes, want %d", len(out.U), len(out.Plain), len(probes))
	}
	rep := &textReporter{t: t}
	for i, p := range probes {
		r := spec.rules[p.rule]
		// Code against Go's regexp is TestTextRulesGoRegexp's; it is shown here when ECMA-262
		// disagrees, so that the message has all four verdicts.
		if code := r.accepts(p.s); code != out.U[i] || code != out.Plain[i] {
			rep.add(p.cp, fmt.Sprintf("%s: code %s, Go regexp %s, ECMA-262 with u %s, without u %s",
				p.describe(spec.rules), verdict(code), verdict(r.goAccepts(p.s)), verdict(out.U[i]), verdict(out.Plain[i])))
		}
	}
	rep.done()
	t.Logf("%d probes judged by %s", len(probes), node)
}

// textSampleCodePoints is every 7th code point and the ranges where the rules turn.
func textSampleCodePoints() []rune {
	seen := map[rune]bool{}
	var cps []rune
	add := func(c rune) {
		if !seen[c] {
			seen[c] = true
			cps = append(cps, c)
		}
	}
	for i, c := range textCodePoints() {
		if i%7 == 0 || c <= 0xFF || (c >= 0x2000 && c <= 0x206F) || c > 0xFFFF {
			add(c)
		}
	}
	for _, c := range []rune{0x1680, 0x180E, 0x3000, 0xFEFF, 0xFFFD, 0xFFFE, 0xFFFF} {
		add(c)
	}
	return cps
}

// TestTextRulesKinOpenAPI holds the code to kin-openapi's own validation of the schemas (its
// pattern compilation, its length count), which is what the server's request validator runs.
func TestTextRulesKinOpenAPI(t *testing.T) {
	t.Parallel()
	spec := loadTextSpec(t)
	rep := &textReporter{t: t}
	probes := textProbes(spec.rules, textSampleCodePoints(), -1)
	for _, p := range probes {
		r := spec.rules[p.rule]
		if code, kin := r.accepts(p.s), r.schema.VisitJSON(p.s) == nil; code != kin {
			rep.add(p.cp, fmt.Sprintf("%s: code %s, kin-openapi %s", p.describe(spec.rules), verdict(code), verdict(kin)))
		}
	}
	rep.done()
	if err := spec.rules[3].schema.VisitJSON(nil); err != nil {
		t.Errorf("UpdateApiKeyRequest.description refuses null: %v", err)
	}
	if spec.rules[0].schema.VisitJSON(nil) == nil {
		t.Error("Name accepts null")
	}
	t.Logf("%d probes", len(probes))
}

// TestTextRulesKnownCases checks cases worth naming against the code, and whole requests
// carrying them against kin-openapi's request validation, as the server runs it.
func TestTextRulesKnownCases(t *testing.T) {
	t.Parallel()
	spec := loadTextSpec(t)
	spec.doc.Servers = nil
	router, err := gorillamux.NewRouter(spec.doc)
	if err != nil {
		t.Fatal(err)
	}
	const id = "apk_0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
	type request struct {
		method, path string
		body         func(s string) map[string]any
	}
	create := request{http.MethodPost, "/api-keys", func(s string) map[string]any { return map[string]any{"name": s} }}
	createDesc := request{http.MethodPost, "/api-keys", func(s string) map[string]any { return map[string]any{"name": "n", "description": s} }}
	updateDesc := request{http.MethodPatch, "/api-keys/" + id, func(s string) map[string]any { return map[string]any{"description": s} }}
	revoke := request{http.MethodPost, "/api-keys/" + id + "/revoke", func(s string) map[string]any { return map[string]any{"reason": s} }}
	rules := map[string]struct {
		parse func(string) (string, error)
		in    []request
	}{
		"name":        {apikeys.ParseName, []request{create}},
		"description": {apikeys.ParseDescription, []request{createDesc, updateDesc}},
		"reason":      {apikeys.ParseReason, []request{revoke}},
	}
	for _, tt := range []struct {
		rule string
		s    string
		ok   bool
	}{
		{"name", "CI Pipeline", true},
		{"name", "", false},
		{"name", "   ", false},
		{"name", "\u00a0", false},
		{"name", "\u3000", false},
		{"name", "\ufeff", false},
		{"name", "\u200b", false},
		{"name", "\u180e", false},
		{"name", "\u2060", false},
		{"name", " \u1680\u2000\u200d\u202f\u205f ", false},
		{"name", "a\u00a0b", true},
		{"name", "a\u202eb", false},
		{"name", "a\u2066b", false},
		{"name", "a\u0085b", false},
		{"name", "a\u2028b", false},
		{"name", "a\tb", false},
		{"name", "a\nb", false},
		{"name", "a\u007fb", false},
		{"name", "\U0001F600", true},
		{"name", "\ufffd", true},
		{"name", strings.Repeat("a", apikeys.MaxNameLen), true},
		{"name", strings.Repeat("a", apikeys.MaxNameLen+1), false},
		{"name", strings.Repeat("\U0001F600", apikeys.MaxNameLen), true},
		{"name", strings.Repeat("\U0001F600", apikeys.MaxNameLen+1), false},
		{"description", "", true},
		{"description", "   ", true},
		{"description", "line1\nline2\tx", true},
		{"description", "crlf\r\n", true},
		{"description", "x\u2029", false},
		{"description", "x\u000b", false},
		{"description", "x\u009f", false},
		{"description", strings.Repeat("\U0001F600", apikeys.MaxDescriptionLen), true},
		{"description", strings.Repeat("a", apikeys.MaxDescriptionLen+1), false},
		{"reason", "\n", false},
		{"reason", "\t \r\n", false},
		{"reason", "ok\nmore", true},
		{"reason", "ok\u2028more", false},
		{"reason", strings.Repeat("a", apikeys.MaxReasonLen), true},
		{"reason", strings.Repeat("a", apikeys.MaxReasonLen+1), false},
	} {
		name := tt.rule + " " + strconv.QuoteToASCII(tt.s)
		if len(tt.s) > 24 {
			name = fmt.Sprintf("%s %s×%d", tt.rule, strconv.QuoteToASCII(string([]rune(tt.s)[:1])), utf8.RuneCountInString(tt.s))
		}
		rule := rules[tt.rule]
		if _, err := rule.parse(tt.s); (err == nil) != tt.ok {
			t.Errorf("%s: code says %s (%v), want %s", name, verdict(err == nil), err, verdict(tt.ok))
		}
		for _, rq := range rule.in {
			body, err := json.Marshal(rq.body(tt.s))
			if err != nil {
				t.Fatal(err)
			}
			req, err := http.NewRequest(rq.method, "http://api.example.com"+rq.path, bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			route, params, err := router.FindRoute(req)
			if err != nil {
				t.Fatalf("%s %s: no operation: %v", rq.method, rq.path, err)
			}
			err = openapi3filter.ValidateRequest(context.Background(), &openapi3filter.RequestValidationInput{
				Request: req, PathParams: params, Route: route,
				Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true},
			})
			if (err == nil) != tt.ok {
				t.Errorf("%s: kin-openapi's request validation of %s %s says %s (%v), want %s",
					name, rq.method, rq.path, verdict(err == nil), err, verdict(tt.ok))
			}
		}
	}
}

func verdict(ok bool) string {
	if ok {
		return "accepts"
	}
	return "refuses"
}
