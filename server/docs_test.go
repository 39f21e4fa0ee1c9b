package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/getkin/kin-openapi/openapi3"

	apikeys "github.com/qs/apikeys"
	"github.com/qs/apikeys/internal/testdb"
)

// assetURL finds the page's references to its assets.
var assetURL = regexp.MustCompile(`(?:src|href)="([^"]+)"`)

// fetch sends a GET with the headers given (name, value, ...) and reads the answer. The
// assets are fetched with it, not with env.do: they are no operation of openapi.yaml, which
// env.do holds every other route to (problem+json).
func fetch(t *testing.T, url string, header ...string) *resp {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return &resp{Status: res.StatusCode, Header: res.Header, Body: body}
}

// TestDocsHTTP holds the page and its assets to what a browser needs from them: the page is
// HTML under a Content-Security-Policy of its own origin, every asset it names is served
// (cacheable for a long time under its versioned URL), and what is not an asset is a 404
// in problem+json. A query string changes nothing: the page is a public operation.
func TestDocsHTTP(t *testing.T) {
	e := newEnv(t, testdb.SQLite, fastHash)

	for _, path := range []string{"/docs", "/docs?utm_source=readme"} {
		r := e.do("GET", path, "", nil)
		if r.Status != http.StatusOK || !strings.Contains(string(r.Body), `<div id="swagger-ui">`) {
			t.Fatalf("GET %s: %d %s", path, r.Status, r.Body)
		}
		if got, want := r.Header.Get("Content-Type"), "text/html; charset=utf-8"; got != want {
			t.Errorf("GET %s: Content-Type %q, want %q", path, got, want)
		}
		csp := r.Header.Get("Content-Security-Policy")
		for _, directive := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'"} {
			if !strings.Contains(csp, directive) {
				t.Errorf("GET %s: Content-Security-Policy %q lacks %q", path, csp, directive)
			}
		}
		if strings.Contains(csp, "unsafe-") {
			t.Errorf("GET %s: Content-Security-Policy %q allows something unsafe", path, csp)
		}
		if got := r.Header.Get("Cache-Control"); got != "no-cache" {
			t.Errorf("GET %s: Cache-Control %q, want no-cache", path, got)
		}
	}

	page := e.do("GET", "/docs", "", nil)

	// /docs/ and HEAD answer as GET /docs does (HEAD without the body). They are no
	// operation of the spec, so they are read without the spec's check.
	for _, tt := range []struct{ method, path string }{{"GET", "/docs/"}, {"HEAD", "/docs"}, {"HEAD", "/docs/"}} {
		res, err := e.http.Client().Do(mustRequest(t, tt.method, e.http.URL+tt.path))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		want := string(page.Body)
		if tt.method == "HEAD" {
			want = ""
		}
		if res.StatusCode != 200 || string(body) != want {
			t.Errorf("%s %s: %d with %d bytes, want 200 with %d", tt.method, tt.path, res.StatusCode, len(body), len(want))
		}
		for _, h := range []string{"Content-Type", "Content-Security-Policy", "Cache-Control", "X-Content-Type-Options"} {
			if got := res.Header.Get(h); got != page.Header.Get(h) {
				t.Errorf("%s %s: %s %q, want %q as GET /docs", tt.method, tt.path, h, got, page.Header.Get(h))
			}
		}
	}

	assets := assetURL.FindAllStringSubmatch(string(page.Body), -1)
	if len(assets) < 4 { // a stylesheet, icons, Swagger UI and the script that starts it
		t.Fatalf("the page names %d assets: %s", len(assets), page.Body)
	}
	var version string
	for _, m := range assets {
		u := m[1]
		if !strings.HasPrefix(u, "/docs/") {
			t.Errorf("the page names %q, not an asset of its own", u)
			continue
		}
		version = strings.Split(u, "/")[2]
		// Set, Accept-Encoding makes Go's transport leave the body as it comes.
		for _, enc := range []string{"identity", "gzip"} {
			r := fetch(t, e.http.URL+u, "Accept-Encoding", enc)
			if r.Status != http.StatusOK || len(r.Body) == 0 {
				t.Errorf("GET %s (Accept-Encoding %s): %d, %d bytes", u, enc, r.Status, len(r.Body))
			}
			compressible := !strings.HasSuffix(u, ".png") && !strings.HasSuffix(u, "/docs.js")
			if got := r.Header.Get("Content-Encoding"); compressible && enc == "gzip" && got != "gzip" || enc == "identity" && got != "" {
				t.Errorf("GET %s (Accept-Encoding %s): Content-Encoding %q", u, enc, got)
			}
			if got, want := r.Header.Get("Cache-Control"), "public, max-age=31536000, immutable"; got != want {
				t.Errorf("GET %s: Cache-Control %q, want %q", u, got, want)
			}
			ct := r.Header.Get("Content-Type")
			if want := map[string]string{".js": "javascript", ".css": "text/css", ".png": "image/png"}[filepath.Ext(u)]; !strings.Contains(ct, want) {
				t.Errorf("GET %s: Content-Type %q, want %s", u, ct, want)
			}
		}
	}

	// Another version's asset (a page of another build, mid-deploy) is served, not to be cached.
	other := fetch(t, e.http.URL+"/docs/0123456789ab/swagger-ui.css")
	if other.Status != http.StatusOK || other.Header.Get("Cache-Control") != "no-cache" {
		t.Errorf("an asset under another version: %d, Cache-Control %q", other.Status, other.Header.Get("Cache-Control"))
	}
	// Revalidation of the bundle by its ETag.
	bundle := e.http.URL + "/docs/" + version + "/swagger-ui-bundle.js"
	etag := fetch(t, bundle).Header.Get("Etag")
	if again := fetch(t, bundle, "If-None-Match", etag); etag == "" || again.Status != http.StatusNotModified {
		t.Errorf("revalidation by ETag %q: %d, want 304", etag, again.Status)
	}
	for _, path := range []string{"/docs/" + version, "/docs/" + version + "/", "/docs/" + version + "/nope.js",
		"/docs/" + version + "/a/swagger-ui.css", "/docs/" + version + "/%2e%2e/openapi.yaml", "/docs/" + version + "/oauth2-redirect.html"} {
		if r := e.do("GET", path, "", nil); r.Status != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, r.Status)
		}
	}
}

// findChromium returns the path of Debian's chromium. Without it the test fails under
// CI=true and is skipped elsewhere (never under CI=true).
func findChromium(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err == nil {
		return path
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("chromium is not installed (%v); CI must install Debian's chromium (apt-get install -y chromium) to test the reference page", err)
	}
	t.Skipf("chromium is not installed (%v): the reference page is not tested in a browser; install Debian's chromium (apt-get install -y chromium) to run this test (never skipped under CI=true)", err)
	return ""
}

// browserLog gathers what went wrong in the page: failed or refused requests, requests to
// anywhere but the server, error statuses, exceptions and console errors.
type browserLog struct {
	origin string
	mu     sync.Mutex
	urls   map[network.RequestID]string
	faults []string
}

func (b *browserLog) listen(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch ev := ev.(type) {
	case *network.EventRequestWillBeSent:
		u := ev.Request.URL
		b.urls[ev.RequestID] = u
		if !strings.HasPrefix(u, b.origin+"/") && !strings.HasPrefix(u, "data:") {
			b.faults = append(b.faults, fmt.Sprintf("request to another origin: %s %s", ev.Request.Method, u))
		}
	case *network.EventResponseReceived:
		if ev.Response.Status >= 400 {
			b.faults = append(b.faults, fmt.Sprintf("%s answered %d", ev.Response.URL, ev.Response.Status))
		}
	case *network.EventLoadingFailed:
		b.faults = append(b.faults, fmt.Sprintf("%s failed: %s %s", b.urls[ev.RequestID], ev.ErrorText, ev.BlockedReason))
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		text := d.Text
		if d.Exception != nil {
			text += " " + d.Exception.Description
		}
		b.faults = append(b.faults, fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber+1, text))
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
			var args []string
			for _, a := range ev.Args {
				args = append(args, string(a.Value)+a.Description)
			}
			b.faults = append(b.faults, fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " ")))
		}
	case *log.EventEntryAdded:
		if ev.Entry.Level == log.EntryLevelError {
			b.faults = append(b.faults, fmt.Sprintf("%s error: %s (%s)", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL))
		}
	}
}

func (b *browserLog) check(t *testing.T, when string) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, f := range b.faults {
		t.Errorf("%s: %s", when, f)
	}
	b.faults = nil
}

// specOperation is an operation of openapi.yaml as the page should show it.
type specOperation struct{ id, method, path string }

// pageOperation is an operation block of the page.
type pageOperation struct {
	ID     string `json:"id"`
	Method string `json:"method"`
	Path   string `json:"path"`
}

// TestDocsInBrowser opens the reference page in headless Chromium against a real server:
// every operation of openapi.yaml is on it, nothing fails to load and nothing is fetched
// from elsewhere; with the admin token typed into its Authorize dialog, "try it out" on
// "Create a new API key" with the spec's example body creates a key the API then lists.
// It saves a screenshot among the test's artifacts (go test -artifacts), and into
// docs/api-reference.png when APIKEYS_UPDATE_SCREENSHOT=1.
func TestDocsInBrowser(t *testing.T) {
	chromium := findChromium(t)
	doc, err := openapi3.NewLoader().LoadFromData(apikeys.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	var want []specOperation
	var create *openapi3.Operation
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			want = append(want, specOperation{op.OperationID, method, path})
			if method == http.MethodPost && path == "/api-keys" {
				create = op
			}
		}
	}
	if len(want) == 0 || create == nil {
		t.Fatalf("openapi.yaml has %d operations and no POST /api-keys", len(want))
	}
	example := create.RequestBody.Value.Content.Get("application/json").Example
	if example == nil {
		t.Fatal("openapi.yaml gives no example body for POST /api-keys")
	}

	e := newEnv(t, testdb.SQLite, fastHash)
	e.clock.Set(time.Now()) // the spec's example expiry is meant to be in the future of now

	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1280, 900),
	)
	allocCtx, allocCancel := chromedp.NewExecAllocator(ctx, opts...)
	defer allocCancel()
	bctx, bcancel := chromedp.NewContext(allocCtx)
	defer bcancel()

	blog := &browserLog{origin: e.http.URL, urls: map[network.RequestID]string{}}
	if err := chromedp.Listen(bctx, blog.listen); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	if _, err := chromedp.Call(bctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(bctx, log.Enable, cdp.Empty{}); err != nil {
		t.Fatal(err)
	}

	// Every operation of the spec is on the page, under its operationId.
	err = chromedp.Do(bctx,
		chromedp.Navigate(e.http.URL+"/docs"),
		chromedp.WaitVisible(chromedp.CSS(`.opblock`)),
	)
	if err != nil {
		t.Fatalf("open /docs: %v", err)
	}
	got, err := chromedp.Run(bctx, chromedp.Evaluate[[]pageOperation](`Array.from(document.querySelectorAll('.opblock')).map(b => ({
		id: b.id,
		method: b.querySelector('.opblock-summary-method').textContent,
		path: b.querySelector('.opblock-summary-path').dataset.path}))`))
	if err != nil {
		t.Fatalf("read the operations of /docs: %v", err)
	}
	createBlock := ""
	for _, op := range want {
		i := slices.IndexFunc(got, func(p pageOperation) bool {
			return strings.EqualFold(p.Method, op.method) && p.Path == op.path && strings.HasSuffix(p.ID, "-"+op.id)
		})
		if i < 0 {
			t.Errorf("%s %s (%s) is not on the page", op.method, op.path, op.id)
			continue
		}
		if op.method == http.MethodPost && op.path == "/api-keys" {
			createBlock = `[id="` + got[i].ID + `"]`
		}
	}
	if len(got) != len(want) {
		t.Errorf("the page shows %d operations, openapi.yaml has %d", len(got), len(want))
	}
	blog.check(t, "loading /docs")
	if t.Failed() {
		t.FailNow()
	}

	// Try-it-out goes to the server that served the page.
	servers, err := chromedp.Run(bctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('.servers select option')).map(o => o.value)`))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(servers, []string{e.http.URL}) {
		t.Errorf("the page offers servers %q, want only %q", servers, e.http.URL)
	}

	// Authorize with the admin token, then create a key with the example body.
	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }
	err = chromedp.Do(bctx,
		chromedp.Click(css(`.auth-wrapper .authorize`)),
		chromedp.WaitVisible(css(`.modal-ux input`)),
		chromedp.SendKeys(css(`.modal-ux input`), adminToken),
		chromedp.Click(css(`.modal-ux .auth-btn-wrapper .authorize`)),
		chromedp.Click(css(`.modal-ux .btn-done`)),
		chromedp.WaitNotPresent(css(`.modal-ux`)),
	)
	if err != nil {
		t.Fatalf("authorize: %v", err)
	}
	locked, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`document.querySelector('.auth-wrapper .authorize.locked') !== null`))
	if err != nil || !locked {
		t.Errorf("the Authorize button does not show the page as authorized (%v)", err)
	}
	err = chromedp.Do(bctx,
		chromedp.Click(css(createBlock+` .opblock-summary-control`)),
		chromedp.Click(css(createBlock+` .try-out__btn`)),
		chromedp.WaitVisible(css(createBlock+` .body-param__text`)),
	)
	if err != nil {
		t.Fatalf("open POST /api-keys: %v", err)
	}
	bodyText, err := chromedp.Run(bctx, chromedp.Value(css(createBlock+` .body-param__text`)))
	if err != nil {
		t.Fatal(err)
	}
	var body any
	if err := json.Unmarshal([]byte(bodyText), &body); err != nil {
		t.Fatalf("the request body the page proposes is not JSON: %v\n%s", err, bodyText)
	}
	if !reflect.DeepEqual(body, example) {
		t.Fatalf("the page proposes %v, the spec's example is %v", body, example)
	}
	status := createBlock + ` .live-responses-table tbody .response-col_status`
	if err := chromedp.Do(bctx, chromedp.Click(css(createBlock+` .execute`)), chromedp.WaitVisible(css(status))); err != nil {
		t.Fatalf("execute POST /api-keys: %v", err)
	}
	shown, err := chromedp.Run(bctx, chromedp.Text(css(status)))
	if err != nil {
		t.Fatal(err)
	}
	responseText, err := chromedp.Run(bctx, chromedp.TextContent(css(createBlock+` .live-responses-table tbody .response-col_description .highlight-code pre`)))
	if err != nil {
		t.Fatal(err)
	}
	var created struct {
		ID        string `json:"id"`
		Name      string `json:"name"`
		SecretKey string `json:"secretKey"`
	}
	if shown = strings.TrimSpace(shown); shown != "201" {
		t.Fatalf("the page shows status %q, want 201", shown) // the body is not printed: it may hold a secret
	}
	if err := json.Unmarshal([]byte(responseText), &created); err != nil || created.ID == "" || created.SecretKey == "" {
		t.Fatalf("the page shows no id and secretKey in the response body (%v)", err)
	}

	// The key exists: the API lists it.
	var list []struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	e.do("GET", "/api-keys?limit=100", adminToken, nil).JSON(t, &list)
	if i := slices.IndexFunc(list, func(k struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}) bool {
		return k.ID == created.ID
	}); i < 0 || list[i].Name != created.Name || created.Name != example.(map[string]any)["name"] {
		t.Errorf("GET /api-keys does not list the key %s named %q the page created", created.ID, created.Name)
	}

	// The screenshot: the whole page, with the operations and the 201.
	shot, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	blog.check(t, "trying POST /api-keys")
	out := filepath.Join(t.ArtifactDir(), "api-reference.png")
	if err := os.WriteFile(out, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d KB; kept with go test -artifacts)", out, len(shot)>>10)
	if os.Getenv("APIKEYS_UPDATE_SCREENSHOT") == "1" {
		small, err := compactPNG(shot)
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join("..", "docs")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "api-reference.png"), small, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote docs/api-reference.png (%d KB)", len(small)>>10)
	}
}

// compactPNG re-encodes a screenshot with a palette of its 256 most frequent colours, each
// pixel taking the nearest: the page is flat colours and anti-aliased text, which stays
// legible at about a third of the size.
func compactPNG(b []byte) ([]byte, error) {
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	bounds := img.Bounds()
	rgba := image.NewRGBA(bounds)
	draw.Draw(rgba, bounds, img, bounds.Min, draw.Src)
	counts := map[color.RGBA]int{}
	for i := 0; i < len(rgba.Pix); i += 4 {
		counts[color.RGBA{rgba.Pix[i], rgba.Pix[i+1], rgba.Pix[i+2], rgba.Pix[i+3]}]++
	}
	colors := slices.Collect(maps.Keys(counts))
	slices.SortFunc(colors, func(a, b color.RGBA) int { return counts[b] - counts[a] })
	palette := make(color.Palette, 0, 256)
	for _, c := range colors[:min(len(colors), 256)] {
		palette = append(palette, c)
	}
	paletted := image.NewPaletted(bounds, palette)
	index := map[color.RGBA]uint8{}
	for i, j := 0, 0; i < len(rgba.Pix); i, j = i+4, j+1 {
		c := color.RGBA{rgba.Pix[i], rgba.Pix[i+1], rgba.Pix[i+2], rgba.Pix[i+3]}
		k, ok := index[c]
		if !ok {
			k = uint8(palette.Index(c))
			index[c] = k
		}
		// Pix of a Paletted image and of an RGBA one walk the same rectangle row by row.
		paletted.Pix[j] = k
	}
	var out bytes.Buffer
	err = (&png.Encoder{CompressionLevel: png.BestCompression}).Encode(&out, paletted)
	return out.Bytes(), err
}

func mustRequest(t *testing.T, method, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}
