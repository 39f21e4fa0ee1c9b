package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"
)

// seed is one documentation page of ../shared/seeds: a curl request and its response.
type seed struct {
	method, path string
	request      map[string]any // nil for a GET
	response     json.RawMessage
}

// seedDir holds copies of the seed pages, so the suite runs in a clone anywhere;
// TestSeedCopiesMatchShared keeps them equal to ../shared/seeds.
var seedDir = filepath.Join("testdata", "seeds")

// loadSeed parses the first example of a seed page. The pages are the product's
// documentation; a missing page fails the test rather than skipping it.
func loadSeed(t *testing.T, prefix string) seed {
	t.Helper()
	matches, _ := filepath.Glob(filepath.Join(seedDir, prefix+"_*.txt"))
	if len(matches) != 1 {
		t.Fatalf("seed %s_*.txt not found in %s", prefix, seedDir)
	}
	raw, err := os.ReadFile(matches[0])
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	m := regexp.MustCompile(`curl -X (\w+) '[a-z]+://[^/]+([^']*)'`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("%s: no curl line", matches[0])
	}
	s := seed{method: m[1], path: m[2]}
	rest := text[strings.Index(text, m[0])+len(m[0]):]
	if i := strings.Index(rest, "-d '"); i >= 0 && s.method != "GET" {
		dec := json.NewDecoder(strings.NewReader(rest[i+len("-d '"):]))
		if err := dec.Decode(&s.request); err != nil {
			t.Fatalf("%s: request body: %v", matches[0], err)
		}
		rest = rest[i+len("-d '")+int(dec.InputOffset()):]
	}
	start := strings.IndexAny(rest, "{[")
	dec := json.NewDecoder(strings.NewReader(rest[start:]))
	if err := dec.Decode(&s.response); err != nil {
		t.Fatalf("%s: response body: %v", matches[0], err)
	}
	return s
}

// TestSeedCopiesMatchShared compares the copies with the pages in ../shared/seeds, the
// product's source of truth. CI always has ../shared beside the repository; elsewhere a
// clone may not, and then the copies stand alone.
func TestSeedCopiesMatchShared(t *testing.T) {
	shared := filepath.Join("..", "..", "shared", "seeds")
	originals, _ := filepath.Glob(filepath.Join(shared, "*.txt"))
	if len(originals) == 0 {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI runs with ../shared beside the repository, but %s has no seed pages", shared)
		}
		t.Logf("no %s beside this clone: using the copies in %s as they are", shared, seedDir)
		return
	}
	copies, _ := filepath.Glob(filepath.Join(seedDir, "*.txt"))
	if len(copies) != len(originals) {
		t.Errorf("%d copies in %s, %d pages in %s: copy them again", len(copies), seedDir, len(originals), shared)
	}
	for _, o := range originals {
		want, _ := os.ReadFile(o)
		got, err := os.ReadFile(filepath.Join(seedDir, filepath.Base(o)))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s differs from %s: cp %s %s/", filepath.Join(seedDir, filepath.Base(o)), o, o, seedDir)
		}
	}
}

// TestSeedBodiesMatchTheSpec validates the documentation pages' own bodies against
// openapi.yaml, field for field.
func TestSeedBodiesMatchTheSpec(t *testing.T) {
	router, err := specRouter()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		prefix string
		status int
	}{{"000", 201}, {"001", 200}} {
		s := loadSeed(t, tt.prefix)
		var body io.Reader
		var reqBody []byte
		if s.request != nil {
			reqBody, _ = json.Marshal(s.request)
			body = bytes.NewReader(reqBody)
		}
		req, _ := http.NewRequest(s.method, "http://api.example.com"+s.path, body)
		req.Header.Set("Authorization", "Bearer x")
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		route, params, err := router.FindRoute(req)
		if err != nil {
			t.Fatalf("seed %s: %s %s matches no operation: %v", tt.prefix, s.method, s.path, err)
		}
		in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true}}
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			t.Errorf("seed %s request does not match openapi.yaml: %v", tt.prefix, err)
		}
		rin := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: tt.status,
			Header: http.Header{"Content-Type": {"application/json"}}, Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}}
		rin.SetBodyBytes(s.response)
		if err := openapi3filter.ValidateResponse(context.Background(), rin); err != nil {
			t.Errorf("seed %s response does not match openapi.yaml: %v", tt.prefix, err)
		}
	}
}

// TestSeedRequestsGiveSeedResponses replays the seed pages against the server, at the
// instant the pages were written, and compares the answers field for field: values the
// server cannot reproduce (ids, secrets, the creator) must have the seed's shape.
// controlField lists the usage controls a created key always answers with (their defaults
// when not asked for), which the seed pages predate.
var controlField = map[string]bool{"enabled": true, "permissions": true, "ipAllowlist": true}

func TestSeedRequestsGiveSeedResponses(t *testing.T) {
	create, list := loadSeed(t, "000"), loadSeed(t, "001")
	eachEngine(t, func(t *testing.T, e *env) {
		var want map[string]any
		if err := json.Unmarshal(create.response, &want); err != nil {
			t.Fatal(err)
		}
		createdAt, _ := time.Parse(time.RFC3339, want["createdAt"].(string))
		e.clock.Set(createdAt)

		r := e.do(create.method, create.path, adminToken, create.request)
		if r.Status != http.StatusCreated {
			t.Fatalf("seed create: %d %s", r.Status, r.Body)
		}
		got := r.obj(t)
		secret, _ := got["secretKey"].(string)
		shapes := map[string]*regexp.Regexp{
			"id":                 regexp.MustCompile(`^apk_[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`),
			"subjectId":          regexp.MustCompile(`^subject_[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`),
			"secretKey":          regexp.MustCompile(`^qs_live_[0-9A-Za-z]{40}$`),
			"prefix":             regexp.MustCompile(`^qs_live_[0-9A-Za-z]{4}$`),
			"lastFour":           regexp.MustCompile(`^[0-9A-Za-z]{4}$`),
			"createdBySubjectId": regexp.MustCompile(`^subject_admin$`),
		}
		for field, wantValue := range want {
			if re, ok := shapes[field]; ok {
				if s, _ := got[field].(string); !re.MatchString(s) {
					t.Errorf("%s = %v, want the shape of %v (%s)", field, got[field], wantValue, re)
				}
				continue
			}
			if g, w := jsonOf(got[field]), jsonOf(wantValue); g != w {
				t.Errorf("%s = %s, want %s", field, g, w)
			}
		}
		if len(secret) != len(want["secretKey"].(string)) {
			t.Errorf("secret is %d characters, the seed's %d", len(secret), len(want["secretKey"].(string)))
		}
		if got["prefix"] != secret[:12] || got["lastFour"] != secret[len(secret)-4:] {
			t.Errorf("prefix %v / lastFour %v do not match the secret", got["prefix"], got["lastFour"])
		}
		for field := range got {
			if _, ok := want[field]; !ok && field != "scopes" && field != "updatedAt" && !controlField[field] {
				t.Errorf("create answered field %q, which the seed does not show", field)
			}
		}

		// The list page shows the same key once it has been used.
		e.clock.Set(createdAt.Add(5 * 24 * time.Hour))
		v := e.verify(map[string]any{"key": secret, "clientIp": "192.168.1.1"})
		if v["valid"] != true {
			t.Fatalf("verify: %v", v)
		}
		if err := e.svc.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		r = e.do(list.method, list.path, adminToken, nil)
		if r.Status != http.StatusOK {
			t.Fatalf("seed list: %d %s", r.Status, r.Body)
		}
		var gotList, wantList []map[string]any
		r.JSON(t, &gotList)
		if err := json.Unmarshal(list.response, &wantList); err != nil {
			t.Fatal(err)
		}
		if len(gotList) != 1 {
			t.Fatalf("list = %d keys, want 1", len(gotList))
		}
		for field, wantValue := range wantList[0] {
			switch field {
			case "id", "subjectId", "prefix", "lastFour", "createdBySubjectId":
				if jsonOf(gotList[0][field]) != jsonOf(got[field]) {
					t.Errorf("list %s = %v, create said %v", field, gotList[0][field], got[field])
				}
			case "lastUsedAt":
				if gotList[0][field] != "2024-01-20T10:30:00Z" {
					t.Errorf("lastUsedAt = %v", gotList[0][field])
				}
			default:
				if g, w := jsonOf(gotList[0][field]), jsonOf(wantValue); g != w {
					t.Errorf("list %s = %s, want %s", field, g, w)
				}
			}
		}
	})
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestSecretIsShownOnlyOnCreation follows a key through every endpoint and looks for its
// secret in every response body, header and log line.
func TestSecretIsShownOnlyOnCreation(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		k := e.create(map[string]any{"name": "ci", "scopes": []string{"api_keys:read", "api_keys:write", "api_keys:verify"}})
		secret := k["secretKey"].(string)
		id := k["id"].(string)
		batch := e.do("POST", "/api-keys/batch", adminToken, map[string]any{"keys": []any{map[string]any{"name": "b1"}, map[string]any{"name": "b2"}}})
		var created []map[string]any
		batch.JSON(t, &created)
		if batch.Status != 201 || len(created) != 2 || created[0]["secretKey"] == nil || created[0]["secretKey"] == created[1]["secretKey"] {
			t.Fatalf("batch: %d %s", batch.Status, batch.Body)
		}
		var seen []*resp
		seen = append(seen,
			e.do("GET", "/api-keys/"+id, secret, nil),
			e.do("GET", "/api-keys", secret, nil),
			e.do("PATCH", "/api-keys/"+id, secret, map[string]any{"name": "renamed"}),
			e.do("POST", "/api-keys/verify", secret, map[string]any{"key": secret}),
			e.do("GET", "/subjects/"+k["subjectId"].(string), secret, nil),
		)
		rot := e.do("POST", "/api-keys/"+id+"/rotate", adminToken, map[string]any{"gracePeriodSeconds": 60})
		if rot.Status != 201 {
			t.Fatalf("rotate: %d %s", rot.Status, rot.Body)
		}
		newSecret := rot.obj(t)["secretKey"].(string)
		if newSecret == "" || newSecret == secret {
			t.Fatalf("rotate gave secret %q", newSecret)
		}
		seen = append(seen,
			e.do("POST", "/api-keys/"+id+"/revoke", adminToken, map[string]any{"reason": "done"}),
			e.do("GET", "/api-keys/"+id, adminToken, nil),
			e.do("GET", "/api-keys?limit=100", adminToken, nil),
		)
		for i, r := range seen {
			if r.Status >= 300 {
				t.Errorf("response %d: status %d %s", i, r.Status, r.Body)
			}
			for _, s := range []string{secret, newSecret, created[0]["secretKey"].(string)} {
				if bytes.Contains(r.Body, []byte(s)) || strings.Contains(jsonOf(r.Header), s) {
					t.Errorf("response %d reveals a secret: %s", i, r.Body)
				}
			}
			if bytes.Contains(r.Body, []byte("secretKey")) || bytes.Contains(r.Body, []byte("argon2id$")) {
				t.Errorf("response %d carries secret material: %s", i, r.Body)
			}
		}
		logs := e.logs.String()
		if logs == "" {
			t.Fatal("no request was logged")
		}
		for _, s := range []string{secret, newSecret, adminToken, secret[12:30]} {
			if strings.Contains(logs, s) {
				t.Errorf("the log contains a secret:\n%s", logs)
			}
		}
	})
}
