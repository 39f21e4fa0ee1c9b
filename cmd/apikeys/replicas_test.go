package main

// Replicas: the promise of API.md "Verify", proven with real processes over one PostgreSQL
// database. No replica answers VALID for a key revoked more than one second ago, whatever its
// cache holds, and a replica that cannot hear invalidations does not trust its cache.
//
// Each test builds the service binary (once per test binary), starts two or three server
// processes on 127.0.0.1 over a fresh database, and measures from the outside, as a client
// of the service sees it: every time is a monotonic reading of this process's clock, taken
// when a request is about to be sent or when a response has arrived.

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lib/pq" // PostgreSQL driver "postgres", to find and end listener sessions

	apikeys "github.com/qs/apikeys"
	"github.com/qs/apikeys/internal/testdb"
)

const (
	replicaAdminToken = "replica-admin-token-0123456789"
	// promise is how long after a revocation a replica may still answer VALID.
	promise = time.Second
	// lagBudget is the 99th percentile of that lag the service is held to.
	lagBudget = 100 * time.Millisecond
	codeValid = "VALID"
)

// needPostgres returns a fresh PostgreSQL database, skipping the test when PostgreSQL is
// unavailable (under CI=true, testdb.Engines fails it instead): the change feed between
// processes exists only there.
func needPostgres(t *testing.T) testdb.DB {
	t.Helper()
	// Under CI=true, testdb.Engines fails the test itself when PostgreSQL is missing; the
	// check here makes that explicit rather than relying on it.
	if !slices.Contains(testdb.Engines(t), testdb.Postgres) {
		if os.Getenv("CI") != "" {
			t.Fatal("PostgreSQL is required when CI is set")
		}
		t.Skip("PostgreSQL is not available: replicas share a database only there")
	}
	return testdb.New(t, testdb.Postgres)
}

// The binary, built once per test binary.
var (
	binaryOnce sync.Once
	binaryPath string
	binaryErr  error
	// binaryWatchdog is the write end of the pipe whose end-of-file tells the watchdog that
	// this process is gone and the binary's directory can be removed. It is never closed: the
	// kernel closes it when the test binary exits, however it exits.
	binaryWatchdog *os.File
)

func apikeysBinary(t *testing.T) string {
	t.Helper()
	binaryOnce.Do(func() { binaryPath, binaryErr = buildBinary() })
	if binaryErr != nil {
		t.Fatalf("building the service binary: %v", binaryErr)
	}
	return binaryPath
}

func buildBinary() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("go env GOMOD names no module")
	}
	dir, err := os.MkdirTemp("", "apikeys-replicas-")
	if err != nil {
		return "", err
	}
	if err := removeAtExit(dir); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	bin := filepath.Join(dir, "apikeys")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/apikeys")
	build.Dir = filepath.Dir(gomod)
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
}

// removeAtExit starts a watchdog that removes dir once this process has exited: it waits for
// the end of a pipe only this process holds open. (The package's TestMain is testdb's, so no
// code of ours runs after the last test.)
func removeAtExit(dir string) error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	dog := exec.Command("sh", "-c", `cat >/dev/null; rm -rf -- "$1"`, "apikeys-replicas-watchdog", dir)
	dog.Stdin = r
	dog.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // outlives a Ctrl-C to the test
	if err := dog.Start(); err != nil {
		w.Close()
		return fmt.Errorf("starting the watchdog that removes %s: %w", dir, err)
	}
	go dog.Wait()
	binaryWatchdog = w
	return nil
}

// replica is one server process.
type replica struct {
	name   string
	url    string
	out    *lockedBuffer // stdout and stderr
	exited chan struct{}
	err    error       // cmd.Wait's result, once exited is closed
	proc   *os.Process // the server process, once started
}

// replicaEnv is the environment every replica of a test shares: this process's, without any
// APIKEYS_ setting, plus the database, the admin token and cheap argon2id.
func replicaEnv(databaseURL string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "APIKEYS_") {
			env = append(env, kv)
		}
	}
	return append(env,
		"APIKEYS_DATABASE_URL="+databaseURL,
		"APIKEYS_ADMIN_TOKEN="+replicaAdminToken,
		"APIKEYS_ARGON2_MEMORY_KIB=64",
		"APIKEYS_ARGON2_ITERATIONS=1",
		"APIKEYS_LOG_LEVEL=WARN", // no line per request
	)
}

// startReplicas starts one process per name, all at once, and waits until each answers
// /readyz. t.Cleanup stops them: SIGTERM, then SIGKILL after 5s.
func startReplicas(t *testing.T, env []string, names ...string) []*replica {
	t.Helper()
	rs := make([]*replica, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A free port can be taken between freeAddr and the child's listen: try again.
			for attempt := 0; attempt < 3; attempt++ {
				rs[i], errs[i] = launch(t, name, env)
				if errs[i] == nil || !strings.Contains(rs[i].out.String(), "address already in use") {
					return
				}
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %s: %v\n%s", names[i], err, rs[i].out.String())
		}
	}
	return rs
}

func launch(t *testing.T, name string, env []string) (*replica, error) {
	addr := freeAddr(t)
	r := &replica{name: name, url: "http://" + addr, out: &lockedBuffer{}, exited: make(chan struct{})}
	cmd := exec.Command(apikeysBinary(t), "serve")
	cmd.Env = append(slices.Clone(env), "APIKEYS_ADDR="+addr)
	cmd.Stdout, cmd.Stderr = r.out, r.out
	// Should the test binary die without its cleanups (a timeout's panic), so does the replica.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		close(r.exited)
		return r, err
	}
	r.proc = cmd.Process
	go func() {
		r.err = cmd.Wait()
		close(r.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-r.exited:
		default:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-r.exited:
			case <-time.After(5 * time.Second):
				_ = cmd.Process.Kill()
				<-r.exited
			}
		}
		if t.Failed() {
			t.Logf("replica %s (%s) output:\n%s", r.name, r.url, r.out.String())
		}
	})
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, err := hc.Get(r.url + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return r, nil
			}
		}
		select {
		case <-r.exited:
			return r, fmt.Errorf("exited before it was ready: %v", r.err)
		case <-time.After(25 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return r, fmt.Errorf("/readyz did not answer 200 within 20s: %v", err)
		}
	}
}

// client speaks to one replica over keep-alive connections of its own, as the admin.
type client struct {
	base string
	hc   *http.Client
}

func newClient(t *testing.T, r *replica) *client {
	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &client{base: r.url, hc: &http.Client{Timeout: 10 * time.Second, Transport: tr}}
}

// call sends body as JSON and decodes a response of status want into out.
func (c *client) call(method, path string, body any, want int, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequest(method, c.base+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+replicaAdminToken)
	req.Header.Set("Content-Type", "application/json")
	res, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		return err
	}
	if res.StatusCode != want {
		return fmt.Errorf("%s %s answered %d, want %d: %s", method, path, res.StatusCode, want, data)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// verify answers the code of POST /api-keys/verify for secret.
func (c *client) verify(secret string, requiredScopes []string) (string, error) {
	body := map[string]any{"key": secret}
	if requiredScopes != nil {
		body["requiredScopes"] = requiredScopes
	}
	var v struct {
		Valid bool   `json:"valid"`
		Code  string `json:"code"`
	}
	if err := c.call(http.MethodPost, "/api-keys/verify", body, http.StatusOK, &v); err != nil {
		return "", err
	}
	if v.Valid != (v.Code == codeValid) {
		return "", fmt.Errorf("verify answered valid %v with code %s", v.Valid, v.Code)
	}
	return v.Code, nil
}

// verifyUntilValid verifies until VALID (it may take a moment for a key created on another
// replica), which also puts the row in the replica's cache and the proof in its memo.
func (c *client) verifyUntilValid(secret string, requiredScopes []string) error {
	deadline := time.Now().Add(5 * time.Second)
	var code string
	var err error
	for i := 0; i < 200 && time.Now().Before(deadline); i++ {
		if code, err = c.verify(secret, requiredScopes); err == nil && code == codeValid {
			// Once more: the first answer may have come from a load, this one from the cache.
			code, err = c.verify(secret, requiredScopes)
			if err == nil && code != codeValid {
				err = fmt.Errorf("VALID, then %s", code)
			}
			return err
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("not VALID within 5s: last code %q, error %v", code, err)
}

type createdKey struct {
	ID     string `json:"id"`
	Secret string `json:"secretKey"`
}

// createKeys creates n keys holding scopes in batches of at most 100.
func (c *client) createKeys(n int, name string, scopes []string) ([]createdKey, error) {
	var all []createdKey
	for len(all) < n {
		var batch []map[string]any
		for i := len(all); i < n && len(batch) < 100; i++ {
			k := map[string]any{"name": fmt.Sprintf("%s %d", name, i)}
			if scopes != nil {
				k["scopes"] = scopes
			}
			batch = append(batch, k)
		}
		var got []createdKey
		if err := c.call(http.MethodPost, "/api-keys/batch", map[string]any{"keys": batch}, http.StatusCreated, &got); err != nil {
			return nil, err
		}
		if len(got) != len(batch) {
			return nil, fmt.Errorf("batch of %d created %d keys", len(batch), len(got))
		}
		all = append(all, got...)
	}
	return all, nil
}

func (c *client) revoke(id string) error {
	var k struct {
		Status string `json:"status"`
	}
	if err := c.call(http.MethodPost, "/api-keys/"+id+"/revoke", map[string]any{"reason": "replica test"}, http.StatusOK, &k); err != nil {
		return err
	}
	if k.Status != "revoked" {
		return fmt.Errorf("revoke answered status %q", k.Status)
	}
	return nil
}

// clock reads monotonic time since base; t0 is when the change's response arrived.
type clock struct {
	base time.Time
	t0   atomic.Int64 // nanoseconds since base; 0 until set
}

func newClock() *clock { return &clock{base: time.Now()} }

func (c *clock) now() time.Duration { return time.Since(c.base) }

func (c *clock) mark() time.Duration {
	d := max(c.now(), 1)
	c.t0.Store(int64(d))
	return d
}

func (c *clock) at() (time.Duration, bool) {
	t0 := c.t0.Load()
	return time.Duration(t0), t0 != 0
}

// sample is one verification: when its request was sent, and its code ("" with err set
// when the request failed).
type sample struct {
	sent time.Duration
	code string
	err  error
}

// probeOptions bound a probe: it stops once tail answers in a row that were sent after t0
// are not VALID (tail 0: never early), and at the latest for requests sent runFor after t0.
type probeOptions struct {
	tail   int
	runFor time.Duration
}

// probe verifies secret on c in a tight loop, recording every answer, until opts say it is
// done, stop is set, or bounds of count and time are reached. The first answer is signalled
// on started.
func probe(c *client, secret string, scopes []string, clk *clock, opts probeOptions, started chan<- struct{}, stop *atomic.Bool) []sample {
	const maxRequests = 50_000
	deadline := time.Now().Add(opts.runFor + 10*time.Second)
	var out []sample
	notValid := 0
	for i := 0; i < maxRequests && !stop.Load() && time.Now().Before(deadline); i++ {
		sent := clk.now()
		code, err := c.verify(secret, scopes)
		out = append(out, sample{sent: sent, code: code, err: err})
		if i == 0 {
			close(started)
		}
		if err != nil {
			time.Sleep(time.Millisecond) // a failing replica is not hammered
		}
		if t0, ok := clk.at(); ok && sent > t0 {
			if code == codeValid || err != nil {
				notValid = 0
			} else {
				notValid++
			}
			if (opts.tail > 0 && notValid >= opts.tail) || sent-t0 > opts.runFor {
				break
			}
		}
	}
	if len(out) == 0 {
		close(started)
	}
	return out
}

// outcome sums up one replica's answers about one change.
type outcome struct {
	lag        time.Duration // send time of the last VALID sent after t0, minus t0; 0 if none
	validAfter int           // VALID answers to requests sent after t0
	lateValid  int           // of those, sent more than promise after t0
	sentAfter  int           // requests sent after t0
	firstAfter string        // the code of the first request sent after t0
	final      string        // the last code
	errs       []error
	unexpected []string // codes other than VALID and the expected one
}

func summarize(samples []sample, t0 time.Duration, want string) outcome {
	var o outcome
	for _, s := range samples {
		if s.err != nil {
			o.errs = append(o.errs, s.err)
			continue
		}
		o.final = s.code
		if s.code != codeValid && s.code != want {
			o.unexpected = append(o.unexpected, s.code)
		}
		if s.sent <= t0 {
			continue
		}
		if o.sentAfter == 0 {
			o.firstAfter = s.code
		}
		o.sentAfter++
		if s.code == codeValid {
			o.validAfter++
			o.lag = s.sent - t0
			if s.sent-t0 > promise {
				o.lateValid++
			}
		}
	}
	return o
}

// percentile is the nearest-rank q-quantile of ds.
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// change is one kind of write made on replica A whose effect every other replica must show
// within the promise.
type change struct {
	kind   string
	n      int      // keys to change
	scopes []string // the keys' scopes at creation
	verify []string // requiredScopes of every verification
	want   string   // the code once the change is seen
	// apply makes the change on A and returns the key that replaces k, if any.
	apply func(a *client, k createdKey) (createdKey, error)
}

// lagged is one sample's lag and what happened, for the log.
type lagged struct {
	lag  time.Duration
	desc string
}

// figure is one row of the report.
type figure struct {
	replicas, samples int
	kind              string
	p50, p99, max     time.Duration
}

// TestReplicasHonourRevocationWithinOneSecond starts replicas over one PostgreSQL database
// and makes changes on A (revoke; rotate without grace, which revokes the old key; PATCH
// removing the scope a verification requires) while every other replica verifies the key in
// a tight loop. It holds them to the promise: no VALID from a request sent more than 1s after
// A's response to the change arrived (t0), and the 99th percentile of the lag (send time of
// the last VALID sent after t0, minus t0; 0 when none) at most 100ms, for each kind of change.
// One second later still, every changed key answers as changed on every replica.
func TestReplicasHonourRevocationWithinOneSecond(t *testing.T) {
	var figures []figure
	for _, tc := range []struct {
		replicas, revoke, rotate, patch int
	}{
		{replicas: 3, revoke: 200, rotate: 20, patch: 20},
		{replicas: 2, revoke: 200, rotate: 20, patch: 20},
	} {
		t.Run(fmt.Sprintf("%d_processes", tc.replicas), func(t *testing.T) {
			figures = append(figures, replicasHonourChanges(t, tc.replicas, tc.revoke, tc.rotate, tc.patch)...)
		})
	}
	if path := os.Getenv("APIKEYS_REPLICA_REPORT"); path != "" && len(figures) > 0 {
		if err := appendReport(path, figures); err != nil {
			t.Errorf("APIKEYS_REPLICA_REPORT: %v", err)
		}
	}
}

func appendReport(path string, figures []figure) error {
	var b strings.Builder
	fmt.Fprintf(&b, "\n#### Replica invalidation lag (%s)\n\n", time.Now().UTC().Format(time.RFC3339))
	b.WriteString("Lag: send time of the last VALID from a request sent after the change's response arrived, minus that arrival (0 when none); one sample per key and verifying process. Process A makes the changes; the others verify.\n\n")
	b.WriteString("| processes | change | samples | p50 | p99 | max |\n|---|---|---|---|---|---|\n")
	for _, f := range figures {
		fmt.Fprintf(&b, "| %d | %s | %d | %s | %s | %s |\n", f.replicas, f.kind, f.samples, ms(f.p50), ms(f.p99), ms(f.max))
	}
	return appendFile(path, b.String())
}

func replicasHonourChanges(t *testing.T, processes, nRevoke, nRotate, nPatch int) []figure {
	db := needPostgres(t)
	names := []string{"A", "B", "C"}[:processes]
	start := time.Now()
	rs := startReplicas(t, replicaEnv(db.URL), names...)
	t.Logf("%d processes ready in %v", processes, time.Since(start).Round(time.Millisecond))
	a := newClient(t, rs[0])
	verifiers := rs[1:]
	clients := make([]*client, len(verifiers))
	for i, r := range verifiers {
		clients[i] = newClient(t, r)
	}

	changes := []change{
		{
			kind: "revoke", n: nRevoke, want: "REVOKED",
			apply: func(a *client, k createdKey) (createdKey, error) { return createdKey{}, a.revoke(k.ID) },
		},
		{
			kind: "rotate", n: nRotate, want: "REVOKED",
			apply: func(a *client, k createdKey) (createdKey, error) {
				var next createdKey
				err := a.call(http.MethodPost, "/api-keys/"+k.ID+"/rotate", map[string]any{}, http.StatusCreated, &next)
				return next, err
			},
		},
		{
			kind: "patch-scopes", n: nPatch, want: "INSUFFICIENT_SCOPES",
			scopes: []string{"api_keys:read", "api_keys:verify"},
			verify: []string{"api_keys:read"},
			apply: func(a *client, k createdKey) (createdKey, error) {
				return createdKey{}, a.call(http.MethodPatch, "/api-keys/"+k.ID, map[string]any{"scopes": []string{"api_keys:verify"}}, http.StatusOK, nil)
			},
		},
	}

	var figures []figure
	var everything []time.Duration // every sample of every kind, for the run's p99
	type done struct {
		ch        *change
		key, next createdKey
	}
	var changed []done
	var lastChange time.Time
	for i := range changes {
		ch := &changes[i]
		keys, err := a.createKeys(ch.n, "replica "+ch.kind, ch.scopes)
		if err != nil {
			t.Fatalf("creating %d keys on A: %v", ch.n, err)
		}
		began := time.Now()
		var all []time.Duration
		perReplica := make([][]time.Duration, len(verifiers))
		var failures []string
		var slow []lagged // every sample with a lag, to name the slowest
		stopped := 0      // keys changed before too many failures stopped the run; 0 when it ran to the end
		for ki, k := range keys {
			for j, c := range clients {
				if err := c.verifyUntilValid(k.Secret, ch.verify); err != nil {
					t.Fatalf("%s key %d on %s before the change: %v", ch.kind, ki, verifiers[j].name, err)
				}
			}
			clk := newClock()
			var stop atomic.Bool
			samples := make([][]sample, len(clients))
			var wg sync.WaitGroup
			for j, c := range clients {
				started := make(chan struct{})
				wg.Add(1)
				go func() {
					defer wg.Done()
					samples[j] = probe(c, k.Secret, ch.verify, clk, probeOptions{tail: 5, runFor: promise + 200*time.Millisecond}, started, &stop)
				}()
				<-started
			}
			next, err := ch.apply(a, k)
			t0 := clk.mark()
			lastChange = time.Now()
			if err != nil {
				stop.Store(true)
				wg.Wait()
				t.Fatalf("%s key %d on A: %v", ch.kind, ki, err)
			}
			wg.Wait()
			changed = append(changed, done{ch: ch, key: k, next: next})
			for j, r := range verifiers {
				o := summarize(samples[j], t0, ch.want)
				all = append(all, o.lag)
				perReplica[j] = append(perReplica[j], o.lag)
				where := fmt.Sprintf("%s key %d (%s) on %s", ch.kind, ki, k.ID, r.name)
				switch {
				case len(o.errs) > 0:
					failures = append(failures, fmt.Sprintf("%s: %d failed requests, first: %v", where, len(o.errs), o.errs[0]))
				case len(o.unexpected) > 0:
					failures = append(failures, fmt.Sprintf("%s: unexpected codes %v", where, o.unexpected))
				case o.lateValid > 0:
					failures = append(failures, fmt.Sprintf("%s: BROKEN PROMISE: %d VALID answers to requests sent more than %v after the change (last sent %v after)",
						where, o.lateValid, promise, o.lag))
				case o.sentAfter == 0 || o.final != ch.want:
					failures = append(failures, fmt.Sprintf("%s: probe ended with %q after %d requests sent after the change", where, o.final, o.sentAfter))
				}
				if o.lag > 0 {
					slow = append(slow, lagged{o.lag, fmt.Sprintf("%s: lag %s, %d VALID of %d requests sent after the change, the first of them answered %s",
						where, ms(o.lag), o.validAfter, o.sentAfter, o.firstAfter)})
				}
			}
			if len(failures) >= 6 { // a broken service costs up to 1.2s a key: stop early
				stopped = ki + 1
				break
			}
		}
		for i, f := range failures {
			if i == 10 {
				t.Errorf("... and %d more failures", len(failures)-10)
				break
			}
			t.Error(f)
		}
		f := figure{replicas: processes, kind: ch.kind, samples: len(all),
			p50: percentile(all, 0.5), p99: percentile(all, 0.99), max: percentile(all, 1)}
		figures = append(figures, f)
		t.Logf("%s: %d keys × %d replicas in %v: lag p50 %s, p99 %s, max %s", ch.kind, len(keys), len(verifiers),
			time.Since(began).Round(time.Millisecond), ms(f.p50), ms(f.p99), ms(f.max))
		for j, r := range verifiers {
			t.Logf("  on %s: p50 %s, p99 %s, max %s", r.name, ms(percentile(perReplica[j], 0.5)),
				ms(percentile(perReplica[j], 0.99)), ms(percentile(perReplica[j], 1)))
		}
		slices.SortFunc(slow, func(x, y lagged) int { return int(y.lag - x.lag) })
		over := 0
		for i, s := range slow {
			if s.lag > lagBudget {
				over++
			}
			if i < 3 || s.lag > lagBudget && i < 20 {
				t.Logf("  slowest: %s", s.desc)
			}
		}
		t.Logf("  %d of %d samples had a lag (a VALID sent after the change), %d over %s", len(slow), len(all), over, ms(lagBudget))
		// Below 100 samples a 99th percentile is the maximum, which one scheduler stall on
		// a loaded machine decides: such a kind counts towards the run's p99 below, and
		// every one of its samples is still held to the promise above.
		everything = append(everything, all...)
		if len(all) >= 100 && f.p99 > lagBudget {
			t.Errorf("%s: p99 lag %s exceeds %s (%d of %d samples over it)", ch.kind, ms(f.p99), ms(lagBudget), over, len(all))
		}
		if stopped > 0 {
			t.Fatalf("%s: stopped after %d failures, at key %d of %d", ch.kind, len(failures), stopped, len(keys))
		}
	}

	if p99 := percentile(everything, 0.99); p99 > lagBudget {
		t.Errorf("all changes: p99 lag %s exceeds %s over %d samples", ms(p99), ms(lagBudget), len(everything))
	}

	// A while later, every replica answers every change as made, and the keys that rotation
	// issued are valid everywhere.
	time.Sleep(promise - time.Since(lastChange)) // at once when that is negative
	bad := 0
	for _, d := range changed {
		for j, c := range clients {
			if code, err := c.verify(d.key.Secret, d.ch.verify); err != nil || code != d.ch.want {
				bad++
				if bad <= 10 {
					t.Errorf("%s key %s on %s afterwards: %s, %v (want %s)", d.ch.kind, d.key.ID, verifiers[j].name, code, err, d.ch.want)
				}
			}
			if d.next.Secret != "" {
				if code, err := c.verify(d.next.Secret, nil); err != nil || code != codeValid {
					bad++
					if bad <= 10 {
						t.Errorf("the key %s that replaced %s on %s: %s, %v (want VALID)", d.next.ID, d.key.ID, verifiers[j].name, code, err)
					}
				}
			}
		}
	}
	return figures
}

// listenerPIDs returns the backends of the change feed's LISTEN sessions on the database.
func listenerPIDs(pg *sql.DB) ([]int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rows, err := pg.QueryContext(ctx, `SELECT pid FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = 'apikeys-listener' ORDER BY pid`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var pids []int
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			return nil, err
		}
		pids = append(pids, pid)
	}
	return pids, rows.Err()
}

// waitListeners polls the listener sessions until ok holds of them, for at most 10s.
func waitListeners(t *testing.T, pg *sql.DB, what string, ok func([]int) bool) []int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids, err := listenerPIDs(pg)
		if err != nil {
			t.Fatalf("pg_stat_activity: %v", err)
		}
		if ok(pids) {
			return pids
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting 10s for %s: listener sessions are %v", what, pids)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// session is a listener session: its backend, and when it began.
type session struct {
	pid   int
	began time.Time
}

// deafen ends every listener session on the database but keep's, and says which it ended.
func deafen(pg *sql.DB, keep int) ([]session, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// The sessions are chosen in a materialized CTE and ended in the select list, so that
	// pg_terminate_backend is called for them and nothing else (a condition beside it in one
	// WHERE may be evaluated after it, ending every session on the server).
	rows, err := pg.QueryContext(ctx, `WITH l AS MATERIALIZED (
			SELECT pid, backend_start FROM pg_stat_activity
			WHERE datname = current_database() AND application_name = 'apikeys-listener' AND pid <> $1)
		SELECT pid, backend_start, pg_terminate_backend(pid) FROM l`, keep)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ended []session
	for rows.Next() {
		var s session
		var ok bool
		if err := rows.Scan(&s.pid, &s.began, &ok); err != nil {
			return nil, err
		}
		if ok {
			ended = append(ended, s)
		}
	}
	return ended, rows.Err()
}

// waitGone waits, for at most 2s, until the backends pids have exited: pg_terminate_backend
// only signals them, and a session ends (its client hears FATAL and end of file) when its
// backend exits.
func waitGone(pg *sql.DB, pids []int) error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		var n int
		if err := pg.QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)`, pq.Array(pids)).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("backends %v still there 2s after pg_terminate_backend", pids)
		}
		time.Sleep(time.Millisecond)
	}
}

// noticeTime is how long B is given to notice that its session has ended, between the exit
// of its backend and A's revocation. B dials a new session only 100ms after noticing
// (store.minReconnect), so the revocation still lands while B cannot hear it, which the test
// checks; without this pause the assertion would time B's goroutines against the test's
// round trip to A: on this 2-core machine under load, B was once seen to answer VALID up to
// 9ms after A's revoke response because it had not yet read its session's end.
const noticeTime = 20 * time.Millisecond

// TestReplicaDistrustsCacheWhileDeaf starts B, then A, warms keys in B's cache, and ends B's
// LISTEN session with pg_terminate_backend so that B cannot hear A's revocations. Each time,
// once the backend has exited and B has had noticeTime to notice, A revokes a cached key,
// and the test checks from pg_stat_activity that B had no session when A's revoke response
// arrived (B's next one began later):
//
//   - revoked_in_the_gap: the session is ended once; B dials a new one about 100ms later.
//     B never answers VALID to a request sent after A's revoke response arrived (probed for
//     2s).
//   - revoked_while_deaf: every session B opens is ended too, for 1.5s. B never answers VALID
//     for the revoked key to a request sent after the revoke response arrived (probed for
//     2s), while a key nobody revoked stays VALID on B throughout: B answers from the
//     database instead of its cache.
//   - recovers: once B has a session again, a fresh key verifies VALID twice on B, and when A
//     revokes it, B answers REVOKED within 1s.
func TestReplicaDistrustsCacheWhileDeaf(t *testing.T) {
	db := needPostgres(t)
	pg, err := sql.Open("postgres", db.URL)
	if err != nil {
		t.Fatal(err)
	}
	pg.SetMaxOpenConns(4)
	t.Cleanup(func() { pg.Close() })

	env := replicaEnv(db.URL)
	b := startReplicas(t, env, "B")[0]
	bFirst := waitListeners(t, pg, "B's listener", func(p []int) bool { return len(p) == 1 })[0]
	a := startReplicas(t, env, "A")[0]
	var aPID int
	for _, pid := range waitListeners(t, pg, "A's listener beside B's", func(p []int) bool { return len(p) == 2 && slices.Contains(p, bFirst) }) {
		if pid != bFirst {
			aPID = pid
		}
	}
	ac, bc := newClient(t, a), newClient(t, b)

	// heard waits until B has a listener session again, and a few heartbeats more, so that
	// the feed vouches for B's cache and what B verifies next is cached.
	heard := func(t *testing.T) {
		t.Helper()
		waitListeners(t, pg, "B's listener to come back", func(p []int) bool { return len(p) == 2 && slices.Contains(p, aPID) })
		time.Sleep(2 * apikeys.HeartbeatInterval)
	}
	// silence ends B's session and waits until B must have noticed.
	silence := func(t *testing.T) {
		t.Helper()
		ended, err := deafen(pg, aPID)
		if err == nil && len(ended) != 1 {
			err = fmt.Errorf("ended sessions %v, want B's one", ended)
		}
		if err == nil {
			err = waitGone(pg, []int{ended[0].pid})
		}
		if err != nil {
			t.Fatalf("ending B's listener session: %v", err)
		}
		time.Sleep(noticeTime)
	}
	// wasDeaf reports whether B had no session at instant at: its newest began later.
	wasDeaf := func(t *testing.T, at time.Time) (bool, string) {
		t.Helper()
		var began time.Time
		err := pg.QueryRow(`SELECT backend_start FROM pg_stat_activity WHERE datname = current_database()
			AND application_name = 'apikeys-listener' AND pid <> $1 ORDER BY backend_start DESC LIMIT 1`, aPID).Scan(&began)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return true, "B has no listener session yet"
		case err != nil:
			t.Fatalf("pg_stat_activity: %v", err)
		case began.After(at):
			return true, fmt.Sprintf("B's next listener session began %s after the revoke response arrived", ms(began.Sub(at)))
		}
		return false, fmt.Sprintf("B's listener session began %s before the revoke response arrived: B may have heard the revocation", ms(at.Sub(began)))
	}
	// probeB verifies secret on B in a loop until opts say it is done.
	probeB := func(secret string, clk *clock, opts probeOptions, stop *atomic.Bool, wg *sync.WaitGroup) *[]sample {
		var samples []sample
		started := make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			samples = probe(bc, secret, nil, clk, opts, started, stop)
		}()
		<-started
		return &samples
	}
	neverValidAfter := func(t *testing.T, samples []sample, t0 time.Duration) outcome {
		t.Helper()
		o := summarize(samples, t0, "REVOKED")
		if o.validAfter > 0 {
			t.Errorf("B answered VALID %d times to requests sent after the revoke response arrived (the last sent %s after it; %d of them more than %v after); first answer after it: %s",
				o.validAfter, ms(o.lag), o.lateValid, promise, o.firstAfter)
		}
		if len(o.errs) > 0 {
			t.Errorf("%d verifications on B failed; first: %v", len(o.errs), o.errs[0])
		}
		if len(o.unexpected) > 0 {
			t.Errorf("B answered %v besides VALID and REVOKED", o.unexpected)
		}
		if o.final != "REVOKED" || o.sentAfter == 0 {
			t.Errorf("B's last answer was %q, want REVOKED (%d requests sent after the revoke)", o.final, o.sentAfter)
		}
		return o
	}

	keys, err := ac.createKeys(7, "deaf", nil) // 3 tries in the gap, 3 while deaf, 1 never revoked
	if err != nil {
		t.Fatal(err)
	}

	// deafRevocation keeps B deaf for 1.5s while A revokes k, and checks B's answers about k
	// and about control, which nobody revokes. It reports whether B was deaf throughout.
	deafRevocation := func(t *testing.T, try int, k, control createdKey) bool {
		t.Helper()
		heard(t)
		for _, s := range []string{k.Secret, control.Secret} {
			if err := bc.verifyUntilValid(s, nil); err != nil {
				t.Fatal(err)
			}
		}
		clk := newClock()
		var stop atomic.Bool
		var wg sync.WaitGroup
		defer func() { stop.Store(true); wg.Wait() }() // should the test stop early
		samples := probeB(k.Secret, clk, probeOptions{runFor: 2 * time.Second}, &stop, &wg)
		controls := probeB(control.Secret, clk, probeOptions{runFor: 2 * time.Second}, &stop, &wg)

		silence(t)
		// Keep B deaf for 1.5s: end every session it opens, as soon as it shows.
		var ended []session         // B's later sessions
		var endedAt []time.Duration // when each was last signalled to end
		var rounds int
		var killErr error
		killed := make(chan struct{})
		go func() {
			defer close(killed)
			until := time.Now().Add(1500 * time.Millisecond)
			for rounds = 0; rounds < 3000 && time.Now().Before(until); rounds++ {
				s, err := deafen(pg, aPID)
				if err != nil {
					killErr = err
					return
				}
				for _, x := range s {
					// A backend lingers until it exits, and is signalled again meanwhile.
					if i := slices.IndexFunc(ended, func(e session) bool { return e.pid == x.pid }); i >= 0 {
						endedAt[i] = clk.now()
						continue
					}
					ended = append(ended, x)
					endedAt = append(endedAt, clk.now())
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
		err := ac.revoke(k.ID)
		t0, t0Wall := clk.mark(), time.Now()
		if err != nil {
			stop.Store(true)
		}
		deaf, how := wasDeaf(t, t0Wall)
		<-killed
		wg.Wait()
		if err != nil || killErr != nil {
			t.Fatalf("revoke: %v; ending B's sessions: %v", err, killErr)
		}
		o := neverValidAfter(t, *samples, t0)
		c := summarize(*controls, t0, codeValid)
		if len(c.errs) > 0 || len(c.unexpected) > 0 {
			t.Errorf("a key nobody revoked, on deaf B: %d failed requests (%v), answers other than VALID: %v", len(c.errs), c.errs, c.unexpected)
		}
		var after []string
		for i, s := range ended {
			after = append(after, fmt.Sprintf("%s-%s", ms(s.began.Sub(t0Wall)), ms(endedAt[i]-t0)))
			if !s.began.After(t0Wall) {
				deaf = false // B had a session between the first end and the revocation
			}
		}
		t.Logf("try %d: %s; B's later sessions began and were last signalled to end at %v after the revoke response (%d rounds); %d verifications of the revoked key on B (%d sent after the revoke, first answer %s), %d of the control key",
			try+1, how, after, rounds, len(*samples), o.sentAfter, o.firstAfter, len(*controls))
		return deaf
	}

	t.Run("revoked_in_the_gap", func(t *testing.T) {
		// The revocation must land before B's next session begins; should B be quick to
		// come back, try again with another key.
		for try, k := range keys[:3] {
			heard(t)
			if err := bc.verifyUntilValid(k.Secret, nil); err != nil {
				t.Fatal(err)
			}
			clk := newClock()
			var stop atomic.Bool
			var wg sync.WaitGroup
			defer func() { stop.Store(true); wg.Wait() }() // should the test stop early
			samples := probeB(k.Secret, clk, probeOptions{runFor: 2 * time.Second}, &stop, &wg)
			silence(t)
			err := ac.revoke(k.ID)
			t0, t0Wall := clk.mark(), time.Now()
			if err != nil {
				stop.Store(true)
				wg.Wait()
				t.Fatalf("revoke: %v", err)
			}
			deaf, how := wasDeaf(t, t0Wall)
			wg.Wait()
			o := neverValidAfter(t, *samples, t0)
			t.Logf("try %d: %d verifications on B, %d sent after the revoke (first answer %s); %s", try+1, len(*samples), o.sentAfter, o.firstAfter, how)
			if deaf || t.Failed() {
				return
			}
		}
		t.Errorf("in 3 tries, B always had a new listener session before A's revocation: the gap was never tested")
	})

	t.Run("revoked_while_deaf", func(t *testing.T) {
		control := keys[6]
		for try, k := range keys[3:6] {
			if deafRevocation(t, try, k, control) || t.Failed() {
				return
			}
		}
		t.Errorf("in 3 tries, B always had a listener session near A's revocation: deafness was never tested")
	})

	t.Run("recovers", func(t *testing.T) {
		heard(t)
		fresh, err := ac.createKeys(1, "after deafness", nil)
		if err != nil {
			t.Fatal(err)
		}
		k := fresh[0]
		if err := bc.verifyUntilValid(k.Secret, nil); err != nil {
			t.Fatalf("a fresh key on B after it can hear again: %v", err)
		}
		clk := newClock()
		var stop atomic.Bool
		var wg sync.WaitGroup
		defer func() { stop.Store(true); wg.Wait() }() // should the test stop early
		samples := probeB(k.Secret, clk, probeOptions{tail: 5, runFor: promise + 200*time.Millisecond}, &stop, &wg)
		err = ac.revoke(k.ID)
		t0 := clk.mark()
		if err != nil {
			stop.Store(true)
			wg.Wait()
			t.Fatal(err)
		}
		wg.Wait()
		o := summarize(*samples, t0, "REVOKED")
		if o.lateValid > 0 || o.final != "REVOKED" || len(o.errs) > 0 || len(o.unexpected) > 0 {
			t.Errorf("after recovery B answered VALID %d times more than %v after the revoke, last %q; failures %v, other codes %v",
				o.lateValid, promise, o.final, o.errs, o.unexpected)
		}
		t.Logf("after recovery: lag %s (%d VALID of %d requests sent after the revoke)", ms(o.lag), o.validAfter, o.sentAfter)
	})
}
