package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"

	"github.com/qs/apikeys/internal/testdb"
)

// TestVerifyDecoderAgreesWithTheSpec holds the verify route's own decoder (it skips the
// generic validator for speed) to openapi.yaml: for every body of a generated corpus, the
// server answers 400 exactly when kin-openapi rejects the body against VerifyApiKeyRequest,
// naming the same top-level members. The only 400s kin-openapi does not give are the
// domain's rules the schema cannot state (clientIp must be an address).
func TestVerifyDecoderAgreesWithTheSpec(t *testing.T) {
	e := newEnv(t, testdb.SQLite, fastHash)
	k := e.create(map[string]any{"name": "decoder", "tenantId": "t1", "scopes": []string{"api_keys:read"}})
	secret := k["secretKey"].(string)

	long := func(r string, n int) string { return strings.Repeat(r, n) }
	values := []any{
		nil, true, false, 0, 1.5, -1, "", "a", "t1", " t1", "t/1", "é", "::1", "1.2.3.4", "fe80::1%eth0", "not an ip",
		long("a", 45), long("a", 46), long("é", 45), long("é", 46), long("a", 128), long("a", 129), long("é", 128),
		long("a", 256), long("a", 257), long("é", 256), long("é", 257), secret,
		[]any{}, []any{"api_keys:read"}, []any{"api_keys:read", "api_keys:verify"}, []any{"x"}, []any{1}, []any{nil},
		[]any{"api_keys:read", "api_keys:read"}, []any{"api_keys:read", "api_keys:write", "api_keys:verify", "api_keys:read"},
		[]any{[]any{}}, map[string]any{}, map[string]any{"key": secret},
		"0000:0000:0000:0000:0000:ffff:192.168.100.200",
	}
	names := []string{"key", "clientIp", "tenantId", "environmentId", "requiredScopes"}
	strangers := []string{"KEY", "Key", "extra", "a/b", "~x", "", "key "}

	var bodies [][]byte
	add := func(v any) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, b)
	}
	for _, top := range []string{``, ` `, `null`, `[]`, `"x"`, `1`, `{}`, `[{"key":"x"}]`, `true`} {
		bodies = append(bodies, []byte(top))
	}
	base := func() map[string]any { return map[string]any{"key": secret} }
	for _, name := range names {
		m := base()
		delete(m, name)
		add(m)
		for _, v := range values {
			m := base()
			m[name] = v
			add(m)
		}
	}
	for _, name := range strangers {
		m := base()
		m[name] = "x"
		add(m)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 400 {
		m := map[string]any{}
		for _, name := range names {
			if rng.IntN(3) > 0 {
				m[name] = values[rng.IntN(len(values))]
			}
		}
		if rng.IntN(8) == 0 {
			m[strangers[rng.IntN(len(strangers))]] = values[rng.IntN(len(values))]
		}
		add(m)
	}

	router, err := specRouter()
	if err != nil {
		t.Fatal(err)
	}
	var agreed, rejected int
	for _, body := range bodies {
		req, _ := http.NewRequest("POST", e.http.URL+"/api-keys/verify", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+adminToken)
		res := e.send(req)

		check, _ := http.NewRequest("POST", "http://localhost/api-keys/verify", bytes.NewReader(body))
		check.Header.Set("Content-Type", "application/json")
		route, params, err := router.FindRoute(check)
		if err != nil {
			t.Fatal(err)
		}
		verr := openapi3filter.ValidateRequest(context.Background(), &openapi3filter.RequestValidationInput{
			Request: check, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true},
		})
		want := specMembers(verr)
		got := problemMembers(t, res)
		if notAnAddress(body) && !slices.Contains(want, "clientIp") {
			want = append(want, "clientIp") // the domain's rule, beyond the schema
			sort.Strings(want)
		}
		switch {
		case verr != nil && res.Status != http.StatusBadRequest:
			t.Errorf("%s: the spec refuses it (%v) but the server answered %d %s", body, firstErr(verr), res.Status, res.Body)
		case verr != nil && !slices.Equal(got, want):
			t.Errorf("%s: the server names members %q, the spec %q (%v)\n%s", body, got, want, firstErr(verr), res.Body)
		case verr == nil && res.Status == http.StatusBadRequest && !slices.Equal(got, want):
			t.Errorf("%s: the spec accepts it but the server answered %s", body, res.Body)
		case verr == nil && res.Status != http.StatusOK && res.Status != http.StatusBadRequest:
			t.Errorf("%s: answered %d %s", body, res.Status, res.Body)
		default:
			agreed++
			if res.Status == http.StatusBadRequest {
				rejected++
			}
		}
	}
	t.Logf("%d bodies, %d refused, all agreeing with openapi.yaml", agreed, rejected)
	if rejected < len(bodies)/4 || rejected == len(bodies) {
		t.Fatalf("the corpus is lopsided: %d of %d refused", rejected, len(bodies))
	}
}

// notAnAddress says whether body holds a clientIp that the schema allows but that is not an
// IP address.
func notAnAddress(body []byte) bool {
	var m map[string]any
	if json.Unmarshal(body, &m) != nil {
		return false
	}
	ip, ok := m["clientIp"].(string)
	if !ok || utf8.RuneCountInString(ip) > 45 {
		return false
	}
	addr, err := netip.ParseAddr(ip)
	return err != nil || addr.Zone() != ""
}

// specMembers lists the top-level members kin-openapi's errors name ("" for the body itself).
func specMembers(err error) []string {
	if err == nil {
		return nil
	}
	set := map[string]bool{}
	var walk func(error)
	walk = func(err error) {
		var me openapi3.MultiError
		if errors.As(err, &me) {
			for _, e := range me {
				walk(e)
			}
			return
		}
		var se *openapi3.SchemaError
		if errors.As(err, &se) {
			ptr := se.JSONPointer()
			// kin-openapi names the object for a missing or an unknown member, and the member
			// in its reason.
			member, unknown := strings.CutSuffix(se.Reason, `" is unsupported`)
			if !unknown {
				member, unknown = strings.CutSuffix(se.Reason, `" is missing`)
			}
			switch {
			case unknown && len(ptr) == 0:
				set[strings.TrimPrefix(member, `property "`)] = true
			case len(ptr) > 0:
				set[ptr[0]] = true
			default:
				set[""] = true
			}
			return
		}
		set[""] = true // no schema error: the body is missing or not JSON
	}
	walk(err)
	return sortedKeys(set)
}

// problemMembers lists the top-level members a 400 names ("" for the body itself).
func problemMembers(t *testing.T, r *resp) []string {
	if r.Status != http.StatusBadRequest {
		return nil
	}
	var p struct {
		Errors []struct{ Field string } `json:"errors"`
	}
	r.JSON(t, &p)
	set := map[string]bool{}
	for _, f := range p.Errors {
		tok, _, _ := strings.Cut(strings.TrimPrefix(f.Field, "/"), "/")
		set[strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)] = true
	}
	return sortedKeys(set)
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func firstErr(err error) string { return firstLineOf(err.Error()) }

func firstLineOf(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
