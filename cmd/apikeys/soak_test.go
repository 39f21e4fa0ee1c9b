//go:build soak

// Built only with -tags soak (make test-long), so that `make test` neither runs nor skips it.

package main

// The soak: the service as `make run` starts it, under steady mixed load for APIKEYS_SOAK.

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/qs/apikeys/internal/keytest"
	"github.com/qs/apikeys/keys"
)

const (
	soakAdminToken = "soak-admin-token-0123456789"
	soakWorkers    = 8
	soakSampleGap  = 10 * time.Second
	// soakLiveKeys bounds each worker's live keys: past it, the oldest is revoked, so the
	// working set (and with it the verifier's cache) stays the same size all along.
	soakLiveKeys = 40
	// soakGrowth is how much the server's RSS, and the floor of its live heap, may grow from the
	// end of the warm-up to the end of the run: a bounded working set levels off, a leak grows
	// without end.
	soakGrowth = 1.5
	// soakHeapSlack is added to the live-heap allowance: the runtime reports it in whole MB, and
	// a heap of 20 MB moves by a few MB as caches fill.
	soakHeapSlack = 8
)

// TestSoak starts the service binary as `make run` does (`apikeys serve`, the default SQLite
// database under ./data in a directory of its own, default argon2id parameters and log
// level; only the address and the admin token are set) and drives steady mixed load for the
// duration in APIKEYS_SOAK (make test-long: 5m) with soakWorkers clients: creates, batches,
// lists with filters and pages, gets, patches, verifications (hits, misses, wrong secrets,
// revoked and malformed keys), rotations, revocations and subject reads, each worker on keys
// of its own so that every answer is known in advance. Every soakSampleGap it samples the
// server's RSS (VmRSS of /proc/<pid>/status). The service has no metrics endpoint, so its
// goroutines are not counted: RSS is the only figure (the count of threads is not the count
// of goroutines).
//
// RSS alone says little here: the server runs GOGC=400 under a 192 MiB soft memory limit (its
// defaults), so within seconds its heap, and RSS, sit near the limit whatever the live data,
// and only a leak of some 100 MiB would show. So the server also runs with GODEBUG=gctrace=1,
// which adds to its standard error, after every collection, the heap the collection found
// live; the floor of that (the least over a window, which leaves out argon2id's 19 MiB
// buffers in flight) is what a leak raises.
//
// It requires: every answer the expected status (and verdict, for verifications), with no
// transport error; RSS at the end at most soakGrowth times RSS at the end of the warm-up (the
// first minute, or a third of a shorter run); the live-heap floor of the run's last window at
// most soakGrowth times that of the window after the warm-up, plus soakHeapSlack MB; a
// graceful exit on SIGTERM; and no secret, nor the admin token, in the server's log. It logs
// and, when APIKEYS_RELIABILITY_REPORT names a file, appends the start, warm-up, end and peak
// RSS, the live-heap floors and the request counts.
//
// It is built only with -tags soak; APIKEYS_SOAK sets its length (5m when unset). Nothing makes it skip.
func TestSoak(t *testing.T) {
	v := cmp.Or(os.Getenv("APIKEYS_SOAK"), "5m")
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("APIKEYS_SOAK=%q: want a positive duration such as 5m", v)
	}
	warmup := min(time.Minute, d/3).Round(time.Second)

	srv := startSoakServer(t)
	startRSS := srv.rss(t)
	loadAt := time.Since(srv.started) // on the clock of the server's gctrace
	t.Logf("server pid %d ready on %s; RSS %s; soak for %v with %d workers, warm-up %v", srv.pid, srv.url, soakMiB(startRSS), d, soakWorkers, warmup)

	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	workers := make([]*soakWorker, soakWorkers)
	var wg sync.WaitGroup
	began := time.Now()
	for i := range workers {
		workers[i] = newSoakWorker(t, srv.url, i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			workers[i].run(ctx)
		}()
	}

	type sample struct {
		at       time.Duration
		rss      int // KiB
		requests int
	}
	requests := func() int {
		n := 0
		for _, w := range workers {
			n += w.requests()
		}
		return n
	}
	var samples []sample
	warmRSS := -1
	tick := time.NewTicker(soakSampleGap)
	for done := false; !done; {
		select {
		case <-tick.C:
		case <-ctx.Done():
			done = true
			if len(samples) > 0 && time.Since(began)-samples[len(samples)-1].at < time.Second {
				continue // the tick just took it
			}
		case <-srv.exited:
			t.Fatalf("the server exited during the soak: %v\n%s", srv.err, srv.tail())
		}
		s := sample{at: time.Since(began), rss: srv.rss(t), requests: requests()}
		samples = append(samples, s)
		if warmRSS < 0 && s.at >= warmup {
			warmRSS = s.rss
		}
		t.Logf("t+%v: RSS %s, %d requests", s.at.Round(time.Second), soakMiB(s.rss), s.requests)
	}
	tick.Stop()
	wg.Wait()
	took := time.Since(began)
	endRSS := samples[len(samples)-1].rss
	peakRSS := 0
	for _, s := range samples {
		peakRSS = max(peakRSS, s.rss)
	}
	if warmRSS < 0 {
		warmRSS = samples[0].rss
	}

	// The tally.
	counts := map[string]int{}
	var errs []string
	nerr, total := 0, 0
	secrets := map[string]bool{}
	for _, w := range workers {
		for k, n := range w.counts {
			counts[k] += n
			total += n
		}
		nerr += w.nerr
		errs = append(errs, w.errs...)
		for s := range w.secrets {
			secrets[s] = true
		}
	}
	var tally []string
	for _, k := range slices.Sorted(maps.Keys(counts)) {
		tally = append(tally, fmt.Sprintf("%s %d", k, counts[k]))
	}
	rate := float64(total) / took.Seconds()
	t.Logf("%d requests in %v (%.0f/s), %d errors: %s", total, took.Round(time.Second), rate, nerr, strings.Join(tally, ", "))
	t.Logf("RSS: start %s, after the warm-up (%v) %s, end %s, peak %s (limit at the end: %.1f × %s); goroutines: not measured, the service has no metrics endpoint",
		soakMiB(startRSS), warmup, soakMiB(warmRSS), soakMiB(endRSS), soakMiB(peakRSS), soakGrowth, soakMiB(warmRSS))

	if nerr > 0 {
		t.Errorf("%d requests did not get the expected answer; the first ones:\n%s", nerr, strings.Join(errs, "\n"))
	}
	for _, action := range []string{"create 201", "batch 201", "list 200", "get 200", "patch 200", "verify-hit 200", "verify-miss 200",
		"verify-wrong-secret 200", "verify-revoked 200", "verify-malformed 200", "rotate 201", "revoke 200", "subject 200"} {
		if counts[action] == 0 {
			t.Errorf("no %q in %v: the mix did not run", action, took)
		}
	}
	if float64(endRSS) > soakGrowth*float64(warmRSS) {
		t.Errorf("RSS grew from %s after the warm-up to %s at the end, over %.1f×: a leak?", soakMiB(warmRSS), soakMiB(endRSS), soakGrowth)
	}
	stopErr := srv.stop()
	if stopErr != nil {
		t.Errorf("graceful shutdown: %v\n%s", stopErr, srv.tail())
	}
	window := min(30*time.Second, d/6).Round(time.Second)
	gcs := srv.collections(t)
	warmHeap, nWarm := heapFloor(gcs, loadAt+warmup, loadAt+warmup+window)
	endHeap, nEnd := heapFloor(gcs, loadAt+took-window, loadAt+took)
	heapLimit := soakGrowth*float64(warmHeap) + soakHeapSlack
	t.Logf("live heap after collections (gctrace, %d collections): floor %d MB in the %v after the warm-up (%d collections), %d MB in the last %v (%d collections); limit %.0f MB",
		len(gcs), warmHeap, window, nWarm, endHeap, window, nEnd, heapLimit)
	switch {
	case nWarm == 0 || nEnd == 0:
		t.Errorf("the server's log holds no collection in a window (%d after the warm-up, %d at the end; %d in all): GODEBUG=gctrace=1 did not work", nWarm, nEnd, len(gcs))
	case float64(endHeap) > heapLimit:
		t.Errorf("the floor of the live heap grew from %d MB after the warm-up to %d MB at the end, over %.1f× + %d MB: a leak?", warmHeap, endHeap, soakGrowth, soakHeapSlack)
	}
	leaks := srv.secretsInLog(t, secrets)
	if leaks != "" {
		t.Error(leaks)
	}

	status := "pass"
	if t.Failed() {
		status = "FAIL"
	}
	reliabilityReport(t, fmt.Sprintf("| soak %v, %d workers, SQLite, default argon2id (%s) | %d requests (%.0f/s), %d unexpected answers: %s | every answer as expected |",
		d, soakWorkers, time.Now().UTC().Format(time.RFC3339), total, rate, nerr, strings.Join(tally, ", ")))
	reliabilityReport(t, fmt.Sprintf("| soak %v: server RSS (%s) | start %s, after the %v warm-up %s, end %s, peak %s; goroutines not measured (no metrics endpoint) | end ≤ %.1f × after warm-up = %s |",
		d, status, soakMiB(startRSS), warmup, soakMiB(warmRSS), soakMiB(endRSS), soakMiB(peakRSS), soakGrowth, soakMiB(int(soakGrowth*float64(warmRSS)))))
	reliabilityReport(t, fmt.Sprintf("| soak %v: live heap after collections (%s) | floor %d MB in the %v after the warm-up, %d MB in the last %v (%d collections) | end ≤ %.1f × after warm-up + %d MB = %.0f MB |",
		d, status, warmHeap, window, endHeap, window, len(gcs), soakGrowth, soakHeapSlack, heapLimit))
}

func soakMiB(kib int) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }

// soakServer is the service process.
type soakServer struct {
	started time.Time // just before the process started: the origin of its gctrace clock
	url     string
	pid     int
	proc    *os.Process
	logPath string
	exited  chan struct{}
	err     error // the process's exit, once exited is closed
}

// startSoakServer starts `apikeys serve` in a directory of its own, its output in a file
// there, and waits for /readyz.
func startSoakServer(t *testing.T) *soakServer {
	t.Helper()
	bin := apikeysBinary(t)
	dir := t.TempDir()
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "APIKEYS_") {
			env = append(env, kv)
		}
	}
	for attempt := 0; ; attempt++ {
		addr := freeAddr(t)
		s := &soakServer{url: "http://" + addr, logPath: filepath.Join(dir, fmt.Sprintf("server-%d.log", attempt)), exited: make(chan struct{})}
		logf, err := os.Create(s.logPath)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "serve")
		cmd.Dir = dir
		cmd.Env = append(slices.Clone(env), "APIKEYS_ADDR="+addr, "APIKEYS_ADMIN_TOKEN="+soakAdminToken, "GODEBUG=gctrace=1")
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // dies with the test binary
		s.started = time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		logf.Close()
		s.proc, s.pid = cmd.Process, cmd.Process.Pid
		go func() {
			s.err = cmd.Wait()
			close(s.exited)
		}()
		t.Cleanup(func() {
			select {
			case <-s.exited:
			default:
				_ = s.proc.Kill()
				<-s.exited
			}
			if t.Failed() {
				t.Logf("server log (tail):\n%s", s.tail())
			}
		})
		err = s.awaitReady()
		if err == nil {
			return s
		}
		if attempt < 2 && strings.Contains(s.tail(), "address already in use") {
			continue
		}
		t.Fatalf("the server did not become ready: %v\n%s", err, s.tail())
	}
}

func (s *soakServer) awaitReady() error {
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := hc.Get(s.url + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.exited:
			return fmt.Errorf("exited: %v", s.err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("/readyz did not answer 200 within 30s: %v", err)
		}
	}
}

func (s *soakServer) rss(t *testing.T) int {
	t.Helper()
	kib, err := procStatus(s.pid, "VmRSS")
	if err != nil {
		t.Fatalf("RSS of the server: %v", err)
	}
	return kib
}

// stop sends SIGTERM and waits for a clean exit.
func (s *soakServer) stop() error {
	if err := s.proc.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-s.exited:
		return s.err
	case <-time.After(20 * time.Second):
		return fmt.Errorf("still running 20s after SIGTERM")
	}
}

func (s *soakServer) tail() string {
	b, _ := os.ReadFile(s.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// gcLine is a line of GODEBUG=gctrace=1: "gc 7 @12.345s 1%: …, 115->117->21 MB, …"; the
// last of the three sizes is the heap found live.
var gcLine = regexp.MustCompile(`(?m)^gc \d+ @([0-9.]+)s [^\n]*?, (\d+)->(\d+)->(\d+) MB`)

// soakGC is one collection: when, on the server's clock, and the heap it found live (MB).
type soakGC struct {
	at   time.Duration
	live int
}

func (s *soakServer) collections(t *testing.T) []soakGC {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	var out []soakGC
	for _, m := range gcLine.FindAllSubmatch(b, -1) {
		at, err1 := strconv.ParseFloat(string(m[1]), 64)
		live, err2 := strconv.Atoi(string(m[4]))
		if err1 == nil && err2 == nil {
			out = append(out, soakGC{at: time.Duration(at * float64(time.Second)), live: live})
		}
	}
	return out
}

// heapFloor is the least live heap of the collections in [from, to], and how many there were.
func heapFloor(gcs []soakGC, from, to time.Duration) (floor, n int) {
	for _, g := range gcs {
		if g.at >= from && g.at <= to {
			if n == 0 || g.live < floor {
				floor = g.live
			}
			n++
		}
	}
	return floor, n
}

var soakTokenShape = regexp.MustCompile(`[a-z][a-z0-9_]{0,22}_[0-9A-Za-z]{40}`)

// secretsInLog describes any secret of the run, or the admin token, found in the server's log.
func (s *soakServer) secretsInLog(t *testing.T, secrets map[string]bool) string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	if bytes.Contains(b, []byte(soakAdminToken)) {
		found = append(found, "the admin token")
	}
	for _, m := range soakTokenShape.FindAll(b, -1) {
		for i := 0; i < len(m); i++ {
			if tok, err := keys.Parse(string(m[i:])); err == nil {
				if secrets[tok.Secret()] {
					found = append(found, "the secret of "+tok.String())
				} else {
					found = append(found, "a well-formed token "+tok.String())
				}
				break
			}
		}
	}
	if len(found) == 0 {
		return ""
	}
	return fmt.Sprintf("the server's log (%d bytes) holds %d secrets: %s", len(b), len(found), strings.Join(found[:min(len(found), 10)], ", "))
}

// soakWorker is one client: it owns the keys it creates, so it knows every answer in advance.
type soakWorker struct {
	t      *testing.T
	base   string
	hc     *http.Client
	r      *rand.Rand
	tenant string

	live    []soakKey
	revoked []soakKey // the most recent
	cursor  string    // of the next page of the last list

	mu      sync.Mutex
	counts  map[string]int // by action and status
	nerr    int
	errs    []string
	secrets map[string]bool
}

type soakKey struct{ id, subject, secret string }

func newSoakWorker(t *testing.T, base string, i int) *soakWorker {
	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 2, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &soakWorker{
		t: t, base: base, hc: &http.Client{Timeout: 30 * time.Second, Transport: tr},
		r:      rand.New(rand.NewPCG(uint64(i), 0x50a6)),
		tenant: "tenant_soak_" + strconv.Itoa(i),
		counts: map[string]int{}, secrets: map[string]bool{},
	}
}

func (w *soakWorker) requests() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, c := range w.counts {
		n += c
	}
	return n
}

func (w *soakWorker) fail(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.nerr++
	if len(w.errs) < 5 {
		w.errs = append(w.errs, fmt.Sprintf(format, args...))
	}
}

// call sends a request as the admin and decodes an answer of status want into out; any other
// answer is an error of the run.
func (w *soakWorker) call(action, method, path string, body any, want int, out any) bool {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, w.base+path, rd)
	if err != nil {
		w.fail("%s: %v", action, err)
		return false
	}
	req.Header.Set("Authorization", "Bearer "+soakAdminToken)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := w.hc.Do(req)
	if err != nil {
		w.mu.Lock()
		w.counts[action+" (no answer)"]++
		w.mu.Unlock()
		w.fail("%s %s %s: %v", action, method, path, err)
		return false
	}
	data, err := io.ReadAll(res.Body)
	res.Body.Close()
	w.mu.Lock()
	w.counts[action+" "+strconv.Itoa(res.StatusCode)]++
	w.mu.Unlock()
	if err != nil || res.StatusCode != want {
		w.fail("%s %s %s: %d (want %d) %v %.300s", action, method, path, res.StatusCode, want, err, data)
		return false
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			w.fail("%s: decoding %.200s: %v", action, data, err)
			return false
		}
	}
	return true
}

type soakCreated struct {
	ID        string `json:"id"`
	SubjectID string `json:"subjectId"`
	Secret    string `json:"secretKey"`
	TenantID  string `json:"tenantId"`
	Status    string `json:"status"`
}

func (w *soakWorker) newKeyBody() map[string]any {
	b := map[string]any{
		"name": fmt.Sprintf("soak %d", w.r.IntN(1e6)), "tenantId": w.tenant, "environmentId": "environment_soak",
		"intendedUse": []string{"ci-cd", "backup", "partner"}[w.r.IntN(3)],
		"scopes":      []string{"api_keys:read", "api_keys:verify"},
		"metadata":    map[string]any{"run": "soak", "n": w.r.IntN(1000), "tags": []string{"a", "b"}},
	}
	if w.r.IntN(3) == 0 {
		b["expiresAt"] = time.Now().Add(30 * 24 * time.Hour).UTC().Format(time.RFC3339)
	}
	return b
}

func (w *soakWorker) adopt(c soakCreated) {
	w.mu.Lock()
	w.secrets[c.Secret] = true
	w.mu.Unlock()
	w.live = append(w.live, soakKey{id: c.ID, subject: c.SubjectID, secret: c.Secret})
	for len(w.live) > soakLiveKeys {
		w.revoke(0)
	}
}

func (w *soakWorker) retire(i int) {
	k := w.live[i]
	w.live = slices.Delete(w.live, i, i+1)
	w.revoked = append(w.revoked, k)
	if len(w.revoked) > 20 {
		w.revoked = w.revoked[1:]
	}
}

func (w *soakWorker) revoke(i int) {
	var k soakCreated
	if w.call("revoke", "POST", "/api-keys/"+w.live[i].id+"/revoke", map[string]any{"reason": "soak"}, http.StatusOK, &k) && k.Status != "revoked" {
		w.fail("revoke answered status %q", k.Status)
	}
	w.retire(i)
}

func (w *soakWorker) verify(action, key, want string) {
	var v struct {
		Valid bool   `json:"valid"`
		Code  string `json:"code"`
	}
	if w.call(action, "POST", "/api-keys/verify", map[string]any{"key": key, "tenantId": w.tenant}, http.StatusOK, &v) &&
		(v.Code != want || v.Valid != (want == "VALID")) {
		w.fail("%s: verdict %s (valid %v), want %s", action, v.Code, v.Valid, want)
	}
}

// run sends requests until ctx ends, in a fixed mix.
func (w *soakWorker) run(ctx context.Context) {
	for ctx.Err() == nil {
		if len(w.live) < 3 {
			w.create()
			continue
		}
		i := w.r.IntN(len(w.live))
		k := w.live[i]
		switch n := w.r.IntN(100); {
		case n < 8:
			w.create()
		case n < 10:
			var got []soakCreated
			ks := []map[string]any{w.newKeyBody(), w.newKeyBody(), w.newKeyBody()}
			if w.call("batch", "POST", "/api-keys/batch", map[string]any{"keys": ks}, http.StatusCreated, &got) {
				for _, c := range got {
					w.adopt(c)
				}
			}
		case n < 22:
			w.list()
		case n < 32:
			var got soakCreated
			if w.call("get", "GET", "/api-keys/"+k.id, nil, http.StatusOK, &got) && (got.ID != k.id || got.Status != "active") {
				w.fail("get %s: %+v", k.id, got)
			}
		case n < 40:
			w.call("patch", "PATCH", "/api-keys/"+k.id, map[string]any{
				"name": fmt.Sprintf("soak patched %d", w.r.IntN(1e6)), "description": "patched by the soak",
				"metadata": map[string]any{"patched": w.r.IntN(100)},
			}, http.StatusOK, nil)
		case n < 68:
			w.verify("verify-hit", k.secret, "VALID")
		case n < 74:
			tok, err := keys.Generate(keys.DefaultPrefix)
			if err != nil {
				w.fail("generate: %v", err)
				continue
			}
			w.verify("verify-miss", tok.Secret(), "NOT_FOUND")
		case n < 79:
			forged, err := keytest.Forge(k.secret)
			if err != nil {
				w.fail("forge: %v", err)
				continue
			}
			w.verify("verify-wrong-secret", forged, "NOT_FOUND")
		case n < 82:
			if len(w.revoked) > 0 {
				w.verify("verify-revoked", w.revoked[w.r.IntN(len(w.revoked))].secret, "REVOKED")
			}
		case n < 84:
			w.verify("verify-malformed", "qs_live_not-a-key", "MALFORMED")
		case n < 90:
			var next soakCreated
			if w.call("rotate", "POST", "/api-keys/"+k.id+"/rotate", map[string]any{}, http.StatusCreated, &next) {
				if next.SubjectID != k.subject {
					w.fail("rotate kept subject %s, want %s", next.SubjectID, k.subject)
				}
				w.retire(i) // revoked at once: no grace period
				w.adopt(next)
			}
		case n < 95:
			w.revoke(i)
		default:
			w.call("subject", "GET", "/subjects/"+k.subject, nil, http.StatusOK, nil)
		}
	}
}

func (w *soakWorker) create() {
	var c soakCreated
	if w.call("create", "POST", "/api-keys", w.newKeyBody(), http.StatusCreated, &c) {
		w.adopt(c)
	}
}

// list reads a page of the worker's tenant, filtered, or the next page of the last list.
func (w *soakWorker) list() {
	q := url.Values{"tenantId": {w.tenant}, "limit": {strconv.Itoa(1 + w.r.IntN(30))}}
	switch w.r.IntN(4) {
	case 0:
		q.Set("status", "active")
	case 1:
		q.Set("intendedUse", "ci-cd")
	case 2:
		q.Set("subjectId", w.live[w.r.IntN(len(w.live))].subject)
	}
	if w.cursor != "" && w.r.IntN(2) == 0 {
		q.Set("cursor", w.cursor)
	}
	req, _ := http.NewRequest("GET", w.base+"/api-keys?"+q.Encode(), nil)
	req.Header.Set("Authorization", "Bearer "+soakAdminToken)
	res, err := w.hc.Do(req)
	if err != nil {
		w.fail("list: %v", err)
		return
	}
	data, _ := io.ReadAll(res.Body)
	res.Body.Close()
	w.mu.Lock()
	w.counts["list "+strconv.Itoa(res.StatusCode)]++
	w.mu.Unlock()
	if res.StatusCode != http.StatusOK {
		w.fail("list ?%s: %d %.300s", q.Encode(), res.StatusCode, data)
		return
	}
	var page []soakCreated
	if err := json.Unmarshal(data, &page); err != nil {
		w.fail("list: %v", err)
		return
	}
	for _, k := range page {
		if k.TenantID != w.tenant || (q.Get("status") == "active" && k.Status != "active") {
			w.fail("list ?%s returned %+v", q.Encode(), k)
		}
	}
	w.cursor = ""
	if m := regexp.MustCompile(`[?&]cursor=([A-Za-z0-9_-]+)`).FindStringSubmatch(res.Header.Get("Link")); m != nil {
		w.cursor = m[1]
	}
}
