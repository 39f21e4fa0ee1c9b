package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"go.yaml.in/yaml/v3"

	apikeys "github.com/qs/apikeys"
)

// TestSpecExamplesReplay replays openapi.yaml the way a tool that reads only the document
// would (Dredd, Schemathesis's examples phase, a Postman import): every operation in the
// document's order, on a fresh server, with the admin token, its path parameters taken from
// a link of an earlier response that leads to it or else from their examples, and its
// request body from its example. Every operation must answer a documented 2xx, valid
// against the document. A create example dated in the past, or rotate after revoke, fails.
func TestSpecExamplesReplay(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(apikeys.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	order := documentOrder(t)
	eachEngine(t, func(t *testing.T, e *env) {
		linked := map[string]map[string]string{} // operationId → parameter → value, from links
		for _, po := range order {
			item := doc.Paths.Value(po[0])
			op := item.GetOperation(strings.ToUpper(po[1]))
			path := po[0]
			for _, p := range append(item.Parameters, op.Parameters...) {
				if p.Value.In != "path" {
					continue
				}
				v, ok := linked[op.OperationID][p.Value.Name]
				if !ok {
					v, _ = p.Value.Schema.Value.Example.(string)
				}
				if v == "" {
					t.Fatalf("%s %s: path parameter %s has neither a link nor an example", po[1], po[0], p.Value.Name)
				}
				path = strings.ReplaceAll(path, "{"+p.Value.Name+"}", v)
			}
			var body any
			if rb := op.RequestBody; rb != nil {
				mt := rb.Value.Content.Get("application/json")
				switch {
				case mt.Example != nil:
					body = mt.Example
				case rb.Value.Required:
					t.Fatalf("%s %s requires a body but has no example", po[1], po[0])
				}
			}
			token := adminToken
			if op.Security != nil && len(*op.Security) == 0 {
				token = ""
			}
			r := e.do(strings.ToUpper(po[1]), path, token, body) // validates against the document
			if r.Status < 200 || r.Status > 299 {
				t.Errorf("%s %s (%s) replayed from its examples: %d %s", po[1], path, op.OperationID, r.Status, r.Body)
				continue
			}
			res := op.Responses.Status(r.Status)
			if res == nil || res.Value == nil {
				continue
			}
			var got any
			if json.Unmarshal(r.Body, &got) != nil {
				continue
			}
			for _, l := range res.Value.Links {
				for name, expr := range l.Value.Parameters {
					ptr, ok := strings.CutPrefix(expr.(string), "$response.body#")
					if !ok {
						t.Fatalf("%s: link %s: only $response.body# expressions are replayed, got %v", op.OperationID, l.Value.OperationID, expr)
					}
					v, ok := pointer(got, ptr).(string)
					if !ok {
						t.Fatalf("%s: link to %s: %s is not in the response %s", op.OperationID, l.Value.OperationID, ptr, r.Body)
					}
					if linked[l.Value.OperationID] == nil {
						linked[l.Value.OperationID] = map[string]string{}
					}
					linked[l.Value.OperationID][name] = v
				}
			}
		}
		if len(linked["getSubject"]) == 0 {
			t.Error("no link led to getSubject: its example id names no subject on a fresh server")
		}
	})
}

// documentOrder lists (path, method) in the order openapi.yaml writes them, which a map of
// paths forgets.
func documentOrder(t *testing.T) [][2]string {
	var root yaml.Node
	if err := yaml.Unmarshal(apikeys.OpenAPI, &root); err != nil {
		t.Fatal(err)
	}
	find := func(n *yaml.Node, key string) *yaml.Node {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				return n.Content[i+1]
			}
		}
		return nil
	}
	paths := find(root.Content[0], "paths")
	var out [][2]string
	for i := 0; i+1 < len(paths.Content); i += 2 {
		item := paths.Content[i+1]
		for j := 0; j+1 < len(item.Content); j += 2 {
			switch m := item.Content[j].Value; m {
			case "get", "post", "put", "patch", "delete":
				out = append(out, [2]string{paths.Content[i].Value, m})
			}
		}
	}
	if len(out) < 12 {
		t.Fatalf("found %d operations in openapi.yaml", len(out))
	}
	return out
}

// pointer resolves a JSON pointer of plain member names.
func pointer(v any, ptr string) any {
	for _, name := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[name]
	}
	return v
}

// TestHeadersTooLargeIsAsDocumented: every operation declares 431, the HTTP server's own
// plain-text answer to headers over its limit (64 KiB in cmd/apikeys; the test server keeps
// net/http's default, 1 MiB).
func TestHeadersTooLargeIsAsDocumented(t *testing.T) {
	e := newEnv(t, "sqlite", fastHash)
	for _, path := range []string{"/healthz", "/api-keys"} {
		req, _ := http.NewRequest("GET", e.http.URL+path, nil)
		req.Header.Set("X-Padding", strings.Repeat("a", 1100<<10))
		r := e.send(req) // validates against the document
		if r.Status != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("GET %s with 1.1 MiB of headers: %d, want 431", path, r.Status)
		}
	}
}
