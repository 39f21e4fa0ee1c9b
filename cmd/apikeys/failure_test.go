package main

// Failure: the service as its own process while its database hangs (every PostgreSQL process
// stopped with SIGSTOP) or restarts under load, and a server killed with SIGKILL in the
// middle of batch creations.
//
// The database tests run on a throwaway cluster the test owns (testdb.NewCluster), never on
// the machine's server. They hold the service to what a client may rely on when the database
// fails: every answer is a success, a client error, or 503 with Retry-After and a problem
// body; no request waits much longer than the database timeout; readiness says 503 while
// the database hangs; the service answers again within seconds of the database; and no key
// whose creation was acknowledged (201) is lost.

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/qs/apikeys/internal/testdb"
)

const (
	// failDBTimeout and failRequestTimeout are the server's APIKEYS_DB_TIMEOUT and
	// APIKEYS_REQUEST_TIMEOUT in these tests.
	failDBTimeout      = 2 * time.Second
	failRequestTimeout = 6 * time.Second
	// latencyBound is the longest any request may take while the database fails.
	latencyBound = failDBTimeout + 2*time.Second
	// readyzBound is how soon /readyz must answer 503 while the database hangs.
	readyzBound = 2500 * time.Millisecond
	// recoveryBound is how soon after the database is back the service must answer again.
	recoveryBound = 5 * time.Second
	// observeTimeout is the client's timeout: far above the bounds, so that a hang is
	// measured (and fails the bound) rather than cut short.
	observeTimeout = 15 * time.Second
)

// failureEnv is replicaEnv with the server's database and request timeouts.
func failureEnv(databaseURL string) []string {
	return append(replicaEnv(databaseURL),
		"APIKEYS_DB_TIMEOUT="+failDBTimeout.String(),
		"APIKEYS_REQUEST_TIMEOUT="+failRequestTimeout.String())
}

// answer is one request of a failure test, as the client saw it.
type answer struct {
	op         string        // create, verify, readyz-frozen, recover-readyz, recover-create
	sent       time.Duration // since the run's start
	took       time.Duration
	status     int // 0 when no response arrived
	err        error
	retryAfter string
	problem    error  // for a 503: what is wrong with its body, nil when it is a problem
	id         string // a 201 create's key id
	code       string // a 200 verify's code
}

// loadRun sends requests to one server and records every answer.
type loadRun struct {
	base    string
	hc      *http.Client
	start   time.Time
	secrets []string // valid keys for verifications

	mu      sync.Mutex
	answers []answer
	stop    atomic.Bool
	wg      sync.WaitGroup
}

func newLoadRun(t *testing.T, r *replica, secrets []string) *loadRun {
	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &loadRun{base: r.url, hc: &http.Client{Timeout: observeTimeout, Transport: tr}, start: time.Now(), secrets: secrets}
}

func (l *loadRun) now() time.Duration { return time.Since(l.start) }

// do sends one request as the admin and records its answer.
func (l *loadRun) do(op, method, path string, body any) answer {
	a := answer{op: op, sent: l.now()}
	a.status, a.err = l.send(&a, method, path, body)
	a.took = l.now() - a.sent
	l.mu.Lock()
	l.answers = append(l.answers, a)
	l.mu.Unlock()
	return a
}

func (l *loadRun) send(a *answer, method, path string, body any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, l.base+path, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+replicaAdminToken)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := l.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		return 0, fmt.Errorf("reading the %d response: %w", res.StatusCode, err)
	}
	a.retryAfter = res.Header.Get("Retry-After")
	switch {
	case res.StatusCode == http.StatusServiceUnavailable:
		a.problem = checkProblem(res.Header.Get("Content-Type"), data)
	case res.StatusCode == http.StatusCreated:
		var k createdKey
		if err := json.Unmarshal(data, &k); err != nil || k.ID == "" {
			return res.StatusCode, fmt.Errorf("201 without a key id: %v: %.200s", err, data)
		}
		a.id = k.ID
	case res.StatusCode == http.StatusOK && a.op == "verify":
		var v struct{ Code string }
		if err := json.Unmarshal(data, &v); err != nil {
			return res.StatusCode, fmt.Errorf("verify 200 with a body that is not JSON: %v", err)
		}
		a.code = v.Code
	}
	return res.StatusCode, nil
}

// checkProblem says what is wrong with a 503's body, or nil when it is a problem+json of
// status 503.
func checkProblem(contentType string, body []byte) error {
	if !strings.HasPrefix(contentType, "application/problem+json") {
		return fmt.Errorf("Content-Type %q, want application/problem+json (body %.200q)", contentType, body)
	}
	var p struct {
		Title  string `json:"title"`
		Status int    `json:"status"`
	}
	if err := json.Unmarshal(body, &p); err != nil || p.Status != http.StatusServiceUnavailable || p.Title == "" {
		return fmt.Errorf("problem body %.200q (%v), want a title and status 503", body, err)
	}
	return nil
}

// run starts the load: creators create keys, verifiers verify the valid secrets, each at its
// own pace, until halt.
func (l *loadRun) run(creators, verifiers int) {
	for w := range creators {
		l.loop(30*time.Millisecond, func(i int) {
			l.do("create", http.MethodPost, "/api-keys", map[string]any{"name": fmt.Sprintf("load %d-%d", w, i)})
		})
	}
	for range verifiers {
		l.loop(10*time.Millisecond, func(int) {
			l.do("verify", http.MethodPost, "/api-keys/verify", map[string]any{"key": l.secrets[rand.IntN(len(l.secrets))]})
		})
	}
}

func (l *loadRun) loop(pace time.Duration, f func(i int)) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for i := 0; !l.stop.Load(); i++ {
			f(i)
			time.Sleep(pace)
		}
	}()
}

// halt stops the load and waits for the requests in flight.
func (l *loadRun) halt() {
	l.stop.Store(true)
	l.wg.Wait()
}

// awaitRecovery asks /readyz and then creates a key, until both succeed, from the moment at
// (since the run's start) on; it returns how long after at both had succeeded, or -1 if they
// did not within 15s.
func (l *loadRun) awaitRecovery(at time.Duration) time.Duration {
	for i := 0; l.now()-at < observeTimeout; i++ {
		ready := l.do("recover-readyz", http.MethodGet, "/readyz", nil)
		if ready.status == http.StatusOK {
			created := l.do("recover-create", http.MethodPost, "/api-keys", map[string]any{"name": fmt.Sprintf("recovery %d", i)})
			if created.status == http.StatusCreated {
				return l.now() - at
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return -1
}

// probeReadyDuring sends GET /readyz at each offset after at, each on its own, in the
// background; halt waits for their answers.
func (l *loadRun) probeReadyDuring(at time.Duration, offsets []time.Duration) {
	for _, off := range offsets {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			time.Sleep(at + off - l.now())
			l.do("readyz-frozen", http.MethodGet, "/readyz", nil)
		}()
	}
}

// failureFigures sum up one run for the log and the report.
type failureFigures struct {
	scenario   string
	requests   int
	byStatus   map[int]int // 0: no response
	byOp       map[string]int
	maxLatency time.Duration
	maxWhat    string
	p99        time.Duration
	disruption time.Duration // how long the freeze or the restart lasted
	during     map[int]int   // statuses of the requests sent while it lasted
	recovery   time.Duration // -1 when the service did not recover
	created    int           // 201 creates
	missing    int           // of those, not found afterwards
}

func (f *failureFigures) statuses() string {
	codes := make([]int, 0, len(f.byStatus))
	for c := range f.byStatus {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	var parts []string
	for _, c := range codes {
		name := strconv.Itoa(c)
		if c == 0 {
			name = "no response"
		}
		parts = append(parts, fmt.Sprintf("%s: %d", name, f.byStatus[c]))
	}
	return strings.Join(parts, ", ")
}

func (f *failureFigures) recoveryText() string {
	if f.recovery < 0 {
		return "none within 15 s"
	}
	return ms(f.recovery)
}

// summarizeAnswers computes the figures of a run and reports every answer that breaks a rule.
func summarizeAnswers(t *testing.T, scenario string, answers []answer) *failureFigures {
	t.Helper()
	f := &failureFigures{scenario: scenario, requests: len(answers), byStatus: map[int]int{}, byOp: map[string]int{}}
	var lat []time.Duration
	var bad []string
	for _, a := range answers {
		f.byStatus[a.status]++
		f.byOp[a.op]++
		lat = append(lat, a.took)
		if a.took > f.maxLatency {
			f.maxLatency = a.took
			f.maxWhat = fmt.Sprintf("%s sent at %s answered %d after %s", a.op, ms(a.sent), a.status, ms(a.took))
		}
		if a.status == http.StatusCreated && a.id != "" {
			f.created++
		}
		for _, p := range answerProblems(a) {
			bad = append(bad, fmt.Sprintf("%s sent at %s, answered after %s: %s", a.op, ms(a.sent), ms(a.took), p))
		}
	}
	f.p99 = percentile(lat, 0.99)
	for i, b := range bad {
		if i == 15 {
			t.Errorf("... and %d more broken answers", len(bad)-15)
			break
		}
		t.Error(b)
	}
	return f
}

// answerProblems lists the rules one answer breaks.
func answerProblems(a answer) []string {
	var out []string
	switch s := a.status; {
	case a.err != nil:
		out = append(out, fmt.Sprintf("no usable response: %v", a.err))
	case s >= 500 && s != http.StatusServiceUnavailable, s < 200, s >= 300 && s < 400:
		out = append(out, fmt.Sprintf("got %d, want 2xx, 4xx or 503", s))
	case s == http.StatusServiceUnavailable:
		if n, err := strconv.Atoi(a.retryAfter); err != nil || n < 0 {
			if _, derr := http.ParseTime(a.retryAfter); derr != nil {
				out = append(out, fmt.Sprintf("503 with Retry-After %q, want delay-seconds or an HTTP date", a.retryAfter))
			}
		}
		if a.problem != nil {
			out = append(out, "503 body: "+a.problem.Error())
		}
	case s == http.StatusOK && a.op == "verify" && a.code != codeValid:
		out = append(out, fmt.Sprintf("verification of a valid key answered 200 with code %q, want VALID (or 503)", a.code))
	}
	if a.took > latencyBound {
		out = append(out, fmt.Sprintf("took %s, over the bound of %s (APIKEYS_DB_TIMEOUT %s + 2 s)", ms(a.took), ms(latencyBound), failDBTimeout))
	}
	if a.op == "readyz-frozen" && (a.status != http.StatusServiceUnavailable || a.took > readyzBound) {
		out = append(out, fmt.Sprintf("/readyz while the database hangs answered %d after %s, want 503 within %s", a.status, ms(a.took), ms(readyzBound)))
	}
	return out
}

// checkCreatedExist asks GET /api-keys/{id} for every key whose creation answered 201, and
// returns how many are missing.
func checkCreatedExist(t *testing.T, l *loadRun, answers []answer) int {
	t.Helper()
	ids := make(chan string)
	var missing atomic.Int64
	var mu sync.Mutex
	var reports []string
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range ids {
				var a answer
				status, err := l.send(&a, http.MethodGet, "/api-keys/"+id, nil)
				if status != http.StatusOK || err != nil {
					missing.Add(1)
					mu.Lock()
					reports = append(reports, fmt.Sprintf("key %s, created with 201, is now %d (%v)", id, status, err))
					mu.Unlock()
				}
			}
		}()
	}
	for _, a := range answers {
		if a.status == http.StatusCreated && a.id != "" {
			ids <- a.id
		}
	}
	close(ids)
	wg.Wait()
	sort.Strings(reports)
	for i, r := range reports {
		if i == 10 {
			t.Errorf("... and %d more keys acknowledged with 201 are not there", len(reports)-10)
			break
		}
		t.Error(r)
	}
	return int(missing.Load())
}

// logFigures logs the figures and appends them to APIKEYS_RELIABILITY_REPORT, if set.
func logFigures(t *testing.T, f *failureFigures) {
	t.Helper()
	t.Logf("%s: %d requests (%v); statuses %s (of requests sent during the disruption: %v); max latency %s (%s), p99 %s; disruption %s; recovery %s; %d keys created with 201, %d missing afterwards",
		f.scenario, f.requests, f.byOp, f.statuses(), f.during, ms(f.maxLatency), f.maxWhat, ms(f.p99), ms(f.disruption), f.recoveryText(), f.created, f.missing)
	path := os.Getenv("APIKEYS_RELIABILITY_REPORT")
	if path == "" {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n#### %s (%s)\n\n", f.scenario, time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "One server process, APIKEYS_DB_TIMEOUT=%s, APIKEYS_REQUEST_TIMEOUT=%s; 4 creating and 4 verifying clients. Bounds: every request within %s, recovery (/readyz 200 and a create 201) within %s of the database's return.\n\n",
		failDBTimeout, failRequestTimeout, ms(latencyBound), ms(recoveryBound))
	b.WriteString("| requests | statuses | statuses of requests sent during the disruption | max latency | p99 latency | disruption | recovery | 201 creates | missing afterwards |\n|---|---|---|---|---|---|---|---|---|\n")
	during := &failureFigures{byStatus: f.during}
	fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s | %s | %d | %d |\n",
		f.requests, f.statuses(), during.statuses(), ms(f.maxLatency), ms(f.p99), ms(f.disruption), f.recoveryText(), f.created, f.missing)
	if err := appendFile(path, b.String()); err != nil {
		t.Errorf("APIKEYS_RELIABILITY_REPORT: %v", err)
	}
}

func appendFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteString(s)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// serverOnCluster starts a throwaway cluster, one server on a database of it, and a load run
// with 20 valid keys to verify.
func serverOnCluster(t *testing.T) (*testdb.Cluster, *loadRun) {
	t.Helper()
	cl := testdb.NewCluster(t)
	url, err := cl.CreateDB("apikeys_failure")
	if err != nil {
		t.Fatal(err)
	}
	r := startReplicas(t, failureEnv(url), "S")[0]
	keys, err := newClient(t, r).createKeys(20, "verified under load", nil)
	if err != nil {
		t.Fatalf("creating the keys to verify: %v", err)
	}
	secrets := make([]string, len(keys))
	for i, k := range keys {
		secrets[i] = k.Secret
	}
	return cl, newLoadRun(t, r, secrets)
}

// finish stops the load, checks every answer and every acknowledged key, and reports. The
// disruption lasted from began to ended (since the run's start).
func finish(t *testing.T, l *loadRun, scenario string, began, ended, recovery time.Duration) []answer {
	t.Helper()
	l.halt()
	l.mu.Lock()
	answers := slices.Clone(l.answers)
	l.mu.Unlock()
	f := summarizeAnswers(t, scenario, answers)
	f.disruption, f.recovery, f.during = ended-began, recovery, map[int]int{}
	for _, a := range answers {
		if a.sent >= began && a.sent < ended {
			f.during[a.status]++
		}
	}
	f.missing = checkCreatedExist(t, l, answers)
	if recovery < 0 || recovery > recoveryBound {
		t.Errorf("the service answered /readyz 200 and a create 201 again %s after the database was back, want within %s", f.recoveryText(), ms(recoveryBound))
	}
	if f.byOp["create"] < 20 || f.byOp["verify"] < 20 || len(f.during) == 0 {
		t.Errorf("the load was too thin to prove anything: %v, of which sent during the disruption: %v", f.byOp, f.during)
	}
	logFigures(t, f)
	return answers
}

// TestDatabaseFreezeUnderLoad runs creates and verifications against one server for 4 s,
// freezes its PostgreSQL (SIGSTOP to every process) for 8 s, thaws it and keeps the load
// 6 s more. Every answer must be 2xx, 4xx, or 503 with Retry-After and a problem body, within
// 4 s (APIKEYS_DB_TIMEOUT + 2 s); /readyz during the freeze answers 503 within 2.5 s; within
// 5 s of the thaw /readyz answers 200 and a create 201; every key created with 201 exists.
func TestDatabaseFreezeUnderLoad(t *testing.T) {
	cl, l := serverOnCluster(t)
	l.run(4, 4)
	time.Sleep(4 * time.Second)

	frozenAt := l.now()
	if err := cl.Freeze(); err != nil {
		l.halt()
		t.Fatalf("Freeze: %v", err)
	}
	frozenDone := l.now() // every process of the cluster is stopped
	defer cl.Thaw()       // should the test stop early
	const freezeFor = 8 * time.Second
	// Each probe's bound ends before the thaw, so a 200 cannot be the thaw's.
	l.probeReadyDuring(frozenAt, []time.Duration{500 * time.Millisecond, 2 * time.Second, 3500 * time.Millisecond, 5 * time.Second})
	time.Sleep(frozenAt + freezeFor - l.now())
	if err := cl.Thaw(); err != nil {
		l.halt()
		t.Fatalf("Thaw: %v", err)
	}
	thawedAt := l.now()
	recovery := l.awaitRecovery(thawedAt)
	time.Sleep(thawedAt + 6*time.Second - l.now())
	answers := finish(t, l, "Database frozen 8 s under load", frozenAt, thawedAt, recovery)
	// The freeze held: no create was both sent and answered 201 while the database was frozen.
	for _, a := range answers {
		if a.op == "create" && a.status == http.StatusCreated && a.sent > frozenDone && a.sent+a.took < thawedAt {
			t.Errorf("a create sent %s into the freeze answered 201 before the thaw: the database was not frozen", ms(a.sent-frozenAt))
			break
		}
	}
}

// TestDatabaseRestartUnderLoad runs the same load, restarts PostgreSQL (pg_ctl restart -m
// fast, which ends every session) after 4 s and keeps the load 6 s after the restart has
// returned. Every answer must be 2xx, 4xx, or 503 with Retry-After and a problem body, within
// 4 s; within 5 s of the restart /readyz answers 200 and a create 201; every key created with
// 201 exists.
func TestDatabaseRestartUnderLoad(t *testing.T) {
	cl, l := serverOnCluster(t)
	l.run(4, 4)
	time.Sleep(4 * time.Second)

	began := l.now()
	if err := cl.Restart(); err != nil {
		l.halt()
		t.Fatalf("Restart: %v", err)
	}
	restartedAt := l.now()
	recovery := l.awaitRecovery(restartedAt)
	time.Sleep(restartedAt + 6*time.Second - l.now())
	finish(t, l, "Database restarted (pg_ctl restart -m fast) under load", began, restartedAt, recovery)
}

// batchOutcome is what the client saw of one batch creation cut by a SIGKILL.
type batchOutcome struct {
	name   string // the prefix of its keys' names: r<round>-b<batch>
	status int    // 0: no response
	err    error
}

// listNames lists every key with the admin token, page by page along the Link header, and
// returns their names.
func listNames(c *client) ([]string, error) {
	next := regexp.MustCompile(`<([^>]+)>;\s*rel="next"`)
	var names []string
	path := "/api-keys?limit=100"
	for pages := 0; path != ""; pages++ {
		if pages == 1000 {
			return nil, errors.New("more than 1000 pages")
		}
		req, err := http.NewRequest(http.MethodGet, c.base+path, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+replicaAdminToken)
		res, err := c.hc.Do(req)
		if err != nil {
			return nil, err
		}
		var page []struct {
			Name string `json:"name"`
		}
		err = json.NewDecoder(res.Body).Decode(&page)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || err != nil {
			return nil, fmt.Errorf("GET %s: %d, %v", path, res.StatusCode, err)
		}
		for _, k := range page {
			names = append(names, k.Name)
		}
		path = ""
		if m := next.FindStringSubmatch(res.Header.Get("Link")); m != nil {
			path = m[1]
		}
	}
	return names, nil
}

// openWrites counts the sessions on the database that hold a transaction which has written
// (has a transaction id).
func openWrites(ctx context.Context, pg *sql.DB) (int, error) {
	var n int
	err := pg.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()`).Scan(&n)
	return n, err
}

// killMidBatch starts a server, sends batches concurrently, and SIGKILLs the server as soon
// as `writers` sessions hold an open write transaction, or the first response arrives. It
// returns what each batch's client saw, and what triggered the kill.
func killMidBatch(t *testing.T, env []string, pg *sql.DB, round, batches, size, writers int) ([]batchOutcome, string) {
	t.Helper()
	r := startReplicas(t, env, fmt.Sprintf("K%d", round))[0]
	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: batches}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Timeout: observeTimeout, Transport: tr}
	out := make([]batchOutcome, batches)
	bodies := make([][]byte, batches)
	for b := range batches {
		out[b].name = fmt.Sprintf("r%d-b%d", round, b)
		keys := make([]map[string]any, size)
		for k := range keys {
			keys[k] = map[string]any{"name": fmt.Sprintf("%s-k%d", out[b].name, k)}
		}
		bodies[b], _ = json.Marshal(map[string]any{"keys": keys})
	}
	start := make(chan struct{})
	answered := make(chan struct{}, batches)
	var wg sync.WaitGroup
	for b := range batches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			req, _ := http.NewRequest(http.MethodPost, r.url+"/api-keys/batch", bytes.NewReader(bodies[b]))
			req.Header.Set("Authorization", "Bearer "+replicaAdminToken)
			req.Header.Set("Content-Type", "application/json")
			res, err := hc.Do(req)
			if err == nil {
				_, err = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				out[b].status = res.StatusCode
			}
			out[b].err = err
			answered <- struct{}{}
		}()
	}
	close(start)
	trigger := waitForWrites(pg, writers, answered)
	if err := r.proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL: %v", err)
	}
	<-r.exited
	wg.Wait()
	return out, trigger
}

// waitForWrites returns as soon as `writers` sessions hold an open write transaction, a batch
// has been answered, or 10 s have passed, and says which.
func waitForWrites(pg *sql.DB, writers int, answered <-chan struct{}) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		select {
		case <-answered:
			return "first response"
		case <-ctx.Done():
			return "10 s passed"
		default:
		}
		if n, err := openWrites(ctx, pg); err == nil && n >= writers {
			return fmt.Sprintf("%d open write transactions", n)
		}
	}
}

// TestKillDashNineMidBatch sends 10 concurrent batch creations of 50 keys each (names
// r<round>-b<batch>-k<key>) to a server and SIGKILLs it while they are in flight: in four
// rounds, each on a new server over the same database, the moment 1, 3 or 6 sessions on the
// database hold an open write transaction, or the first response arrives. Then a new server
// lists every key: each batch's keys are all there or none, all there for a batch that
// answered 201, and none for a batch that answered an error status. At least one kill must
// have cut a batch in flight while a write transaction was open, or nothing was tested.
func TestKillDashNineMidBatch(t *testing.T) {
	db := needPostgres(t)
	pg, err := sql.Open("postgres", db.URL)
	if err != nil {
		t.Fatal(err)
	}
	pg.SetMaxOpenConns(2)
	t.Cleanup(func() { pg.Close() })
	env := replicaEnv(db.URL)
	const batches, size = 10, 50

	var all []batchOutcome
	cut, midWrite := 0, 0
	for round, writers := range []int{1, 3, 6, batches + 1} { // the last waits for a response
		out, trigger := killMidBatch(t, env, pg, round, batches, size, writers)
		n := 0
		for _, o := range out {
			if o.status == 0 {
				n++
			}
		}
		cut += n
		if strings.HasSuffix(trigger, "open write transactions") && n > 0 {
			midWrite++
		}
		t.Logf("round %d: killed on %s; %d of %d batches had no response", round, trigger, n, batches)
		all = append(all, out...)
	}

	r := startReplicas(t, env, "after")[0]
	names, err := listNames(newClient(t, r))
	if err != nil {
		t.Fatalf("listing the keys after the kills: %v", err)
	}
	present := map[string]int{} // batch -> keys of it listed
	seen := map[string]bool{}
	keyName := regexp.MustCompile(`^(r\d+-b\d+)-k(\d+)$`)
	for _, n := range names {
		m := keyName.FindStringSubmatch(n)
		if m == nil || seen[n] {
			t.Errorf("listed a key named %q: not one of the batches' keys, or listed twice", n)
			continue
		}
		seen[n] = true
		present[m[1]]++
	}
	whole, none := 0, 0
	for _, o := range all {
		got := present[o.name]
		switch {
		case got != 0 && got != size:
			t.Errorf("batch %s (status %d, %v): %d of its %d keys exist, want all or none", o.name, o.status, o.err, got, size)
		case o.status == http.StatusCreated && got != size:
			t.Errorf("batch %s answered 201 but %d of its %d keys exist", o.name, got, size)
		case o.status != 0 && o.status != http.StatusCreated && got != 0:
			t.Errorf("batch %s answered %d but its %d keys exist", o.name, o.status, got)
		case o.status == 0 && got == size:
			whole++
		case o.status == 0:
			none++
		}
	}
	for b := range present {
		if !slices.ContainsFunc(all, func(o batchOutcome) bool { return o.name == b }) {
			t.Errorf("listed %d keys of batch %s, which was never sent", present[b], b)
		}
	}
	if cut == 0 {
		t.Errorf("in %d rounds the kill never cut a batch in flight: nothing was tested", len(all)/batches)
	}
	if midWrite == 0 {
		t.Errorf("no kill landed while a batch's write transaction was open: atomicity was not tested")
	}
	t.Logf("%d batches sent in %d rounds, %d killed with a write transaction open; of the %d cut, %d are whole and %d absent; %d keys listed",
		len(all), len(all)/batches, midWrite, cut, whole, none, len(names))
}
