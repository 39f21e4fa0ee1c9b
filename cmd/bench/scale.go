package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jmoiron/sqlx"
)

// The rows of verification at scale: every path off the cache, and a restart under load.

// shot is one request of the Go load generator: when it was sent, how long it took, and its
// status (0: no answer, e.g. connection refused while the server is down).
type shot struct {
	at     time.Time
	took   time.Duration
	status int
	code   string
}

// goLoad sends one verify per token of next (until next returns ""), from workers goroutines
// over keep-alive connections, and returns every shot. wrk cannot send each token exactly
// once, which the first-verification row needs; the restart row needs to see each answer.
func (h *harness) goLoad(ctx context.Context, base, bearer string, workers int, next func() string) []shot {
	tr := &http.Transport{MaxIdleConnsPerHost: workers, MaxConnsPerHost: workers,
		DialContext: (&net.Dialer{Timeout: time.Second}).DialContext}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	var (
		mu  sync.Mutex
		all []shot
		wg  sync.WaitGroup
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []shot
			for ctx.Err() == nil {
				tok := next()
				if tok == "" {
					break
				}
				s := shot{at: time.Now()}
				req, _ := http.NewRequestWithContext(ctx, "POST", base+"/api-keys/verify", strings.NewReader(verifyBody(tok)))
				req.Header.Set("Authorization", "Bearer "+bearer)
				req.Header.Set("Content-Type", "application/json")
				res, err := client.Do(req)
				if err == nil {
					s.status = res.StatusCode
					var v struct {
						Code string `json:"code"`
					}
					if res.StatusCode == http.StatusOK {
						jsonDecode(res.Body, &v)
					}
					io.Copy(io.Discard, res.Body)
					res.Body.Close()
					s.code = v.Code
				} else if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) {
					time.Sleep(5 * time.Millisecond) // the server is down: do not spin
				}
				s.took = time.Since(s.at)
				mine = append(mine, s)
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return all
}

// onceEach returns a next func that hands out each token once.
func onceEach(tokens []string) func() string {
	var i atomic.Int64
	return func() string {
		n := int(i.Add(1)) - 1
		if n >= len(tokens) {
			return ""
		}
		return tokens[n]
	}
}

// firstVerifyRow: the first verification on this replica of n keys never verified here: a
// row read and argon2id with the default parameters for each. A fresh server process on the
// same database (its cache and proof memo empty) is sent each key once, by the Go load
// generator at the harness's connections; the baseline is the same generator against the
// HTTP ceiling server with the same number of requests.
func (h *harness) firstVerifyRow(bin, dbURL string, srv *server, n int, kind string) error {
	tokens, err := srv.batchCreate(h.ctx, n)
	if err != nil {
		return fmt.Errorf("first-verification row: create %d keys: %w", n, err)
	}
	fresh, err := h.startServer(bin, "apikeys-fresh", kind, dbURL)
	if err != nil {
		return err
	}
	defer fresh.stop()
	base, ceil, err := h.startCeiling()
	if err != nil {
		return err
	}
	defer ceil.stop()
	h.waitQuiet("the first-verification row")
	// Baseline: the same generator, the same count, against the bare Echo ceiling.
	before := snapCPU([]int{ceil.pid()})
	start := time.Now()
	cs := h.goLoad(h.ctx, base, adminToken, *flagConns, onceEach(tokens))
	ceilTook := time.Since(start)
	ceilCPU := cpuBetween(before, snapCPU([]int{ceil.pid()}), nil)
	h.waitQuiet("the first-verification row")
	before = snapCPU([]int{fresh.pid()})
	start = time.Now()
	shots := h.goLoad(h.ctx, fresh.base, fresh.admin, *flagConns, onceEach(tokens))
	took := time.Since(start)
	cpu := cpuBetween(before, snapCPU([]int{fresh.pid()}), nil)
	if err := h.ctx.Err(); err != nil {
		return err
	}
	bad := 0
	var lats, clats []time.Duration
	for _, s := range shots {
		if s.status != http.StatusOK || s.code != "VALID" {
			bad++
		}
		lats = append(lats, s.took)
	}
	for _, s := range cs {
		clats = append(clats, s.took)
	}
	if bad > 0 {
		return fmt.Errorf("first-verification row: %d of %d answers were not 200 VALID", bad, len(shots))
	}
	rate, ceilRate := float64(len(shots))/took.Seconds(), float64(len(cs))/ceilTook.Seconds()
	p99, cp99 := percentile(lats, 0.99), percentile(clats, 0.99)
	h.logf("%-58s %.0f req/s, p99 %s (%s); ceiling %.0f req/s", "verify, first verification ["+kind+"]", rate, ms(p99), cpu, ceilRate)
	h.add(&row{db: kind, name: fmt.Sprintf("verify, a key's first verification on a replica (%d keys, row read + argon2id)", n),
		value: rate, unit: "req/s", p99: p99, base: fmt.Sprintf("HTTP ceiling, same client %.0f req/s", ceilRate), baseVal: ceilRate,
		target: "≥ 25 % of the HTTP ceiling", ok: atLeast(0.25, 0), disturbd: cpu.disturbed(),
		detail: fmt.Sprintf("%d keys created through the API, then a second server process on the same database (nothing cached, no proof remembered) sent each once by a Go client on %d connections, every answer 200 VALID: %d in %.2f s, p50 %s, p99 %s, max %s (%s). Baseline: the same client sending %d verify bodies to the bare Echo server: %.2f s, p99 %s (%s).",
			n, *flagConns, len(shots), took.Seconds(), ms(percentile(lats, 0.5)), ms(p99), ms(percentile(lats, 1)), cpu, len(cs), ceilTook.Seconds(), ms(cp99), ceilCPU)})
	return nil
}

// pointReadCeiling is the store's GetKeyByHandle statement through lib/pq (binary
// parameters, as the store sends them) from the harness's connections on a pool of as many,
// cycling through handles.
func (h *harness) pointReadCeiling(db *sqlx.DB, handles []string, d time.Duration) (sqlResult, error) {
	var i atomic.Int64
	args := func() []any { return []any{handles[int(i.Add(1))%len(handles)]} }
	return h.sqlCeilingWith(db, pointReadSQL, args, d)
}

const pointReadSQL = "SELECT " + keyColumns + " FROM api_keys WHERE lookup_handle = $1"

// restartRow: a replica killed (SIGKILL) and started again while a Go load generator
// verifies n keys in random order against it. Answers while it is down are connection
// errors; none may be a 5xx, and from 10 s after it answers /readyz again the p99 must be
// at most 50 ms.
func (h *harness) restartRow(bin, dbURL string, srv *server, n int) error {
	tokens, err := srv.batchCreate(h.ctx, n)
	if err != nil {
		return fmt.Errorf("restart row: create %d keys: %w", n, err)
	}
	rep, err := h.startServer(bin, "apikeys-restart", "PostgreSQL", dbURL)
	if err != nil {
		return err
	}
	// Every key verified once: the replica is warm, as one in production is.
	h.goLoad(h.ctx, rep.base, rep.admin, 8, onceEach(tokens))
	ctx, cancel := context.WithCancel(h.ctx)
	defer cancel()
	var (
		shots []shot
		done  = make(chan struct{})
	)
	rnd := func() string { return tokens[rand.IntN(len(tokens))] }
	go func() {
		defer close(done)
		shots = h.goLoad(ctx, rep.base, rep.admin, 16, rnd)
	}()
	time.Sleep(5 * time.Second)
	killed := time.Now()
	if err := rep.kill(); err != nil {
		return err
	}
	rep2, err := h.restartServer(bin, "apikeys-restart-2", rep, dbURL)
	if err != nil {
		return err
	}
	defer rep2.stop()
	ready := time.Now()
	h.logf("restart row: killed, ready again after %.2f s", ready.Sub(killed).Seconds())
	time.Sleep(10*time.Second + *flagDur)
	cancel()
	<-done
	var after []time.Duration
	var fivexx, down, notValid int
	for _, s := range shots {
		switch {
		case s.status >= 500:
			fivexx++
		case s.status == 0:
			down++ // while it was down, or cut off by the kill or by the end of the run
		case s.code != "VALID":
			notValid++
		}
		if s.at.After(ready.Add(10*time.Second)) && s.status != 0 {
			after = append(after, s.took)
		}
	}
	p99 := percentile(after, 0.99)
	h.add(&row{db: "PostgreSQL", name: fmt.Sprintf("restart under load (%d keys in use): p99 from 10 s after /readyz", n),
		value: float64(p99) / 1e6, unit: "ms", p99: p99, target: "no 5xx, p99 ≤ 50 ms",
		ok: func(r *row) (bool, string) {
			var why []string
			if fivexx > 0 {
				why = append(why, fmt.Sprintf("%d × 5xx", fivexx))
			}
			if r.p99 > 50*time.Millisecond {
				why = append(why, "p99")
			}
			if notValid > 0 {
				why = append(why, fmt.Sprintf("%d answers not VALID", notValid))
			}
			return len(why) == 0, strings.Join(why, ", ")
		},
		detail: fmt.Sprintf("%d keys created and verified once through a replica; a Go client on 16 connections verified them in random order for 5 s, the replica was killed (SIGKILL) and started again (ready after %.2f s), and the client went on for 10 s + %s: %d answers in all, %d × 5xx, %d not VALID, %d connection errors while it was down; from 10 s after /readyz: %d answers, p50 %s, p99 %s, max %s.",
			n, ready.Sub(killed).Seconds(), *flagDur, len(shots), fivexx, notValid, down, len(after), ms(percentile(after, 0.5)), ms(p99), ms(percentile(after, 1)))})
	return nil
}

// kill ends the process at once (SIGKILL to its group), as a crashed replica ends.
func (p *proc) kill() error {
	if p.exited() {
		return fmt.Errorf("%s had already exited", p.name)
	}
	syscall.Kill(-p.pid(), syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s did not end after SIGKILL", p.name)
	}
}

// ceilingOf returns the HTTP ceiling row of kind measured last.
func (h *harness) ceilingOf(kind string) *row {
	for i := len(h.rows) - 1; i >= 0; i-- {
		if r := h.rows[i]; r.db == kind && strings.HasPrefix(r.name, "HTTP ceiling") {
			return r
		}
	}
	return &row{}
}

// relTarget is "≥ ratio of base, p99 ≤ times × base's p99" as a target and its check.
func relTarget(ratio, times float64, base *row, what string) (string, func(*row) (bool, string)) {
	bound := time.Duration(times * float64(base.p99))
	return fmt.Sprintf("≥ %.0f %% of the %s, p99 ≤ %.0f× its (%s)", ratio*100, what, times, ms(bound)), atLeast(ratio, bound)
}

// defaultsHitRow: a hit on a server run with the defaults a user runs (INFO request log,
// written to a file, metrics and request ids on).
func (h *harness) defaultsHitRow(bin, dbURL, kind string) error {
	srv, err := h.startServer(bin, "apikeys-defaults", kind, dbURL, "APIKEYS_LOG_LEVEL=INFO")
	if err != nil {
		return err
	}
	defer srv.stop()
	target, err := srv.createKey(h.ctx, map[string]any{"name": "bench defaults target"})
	if err != nil {
		return err
	}
	if code, err := srv.verifyCode(h.ctx, srv.admin, target.SecretKey); err != nil || code != "VALID" {
		return fmt.Errorf("defaults row: %s %v", code, err)
	}
	l := verifyLoad(srv.admin, target.SecretKey)
	if _, err := h.wrk(srv.base, l, 2*time.Second, *flagConns, srv.pid()); err != nil {
		return err
	}
	measure := func() (wrkResult, error) { return h.wrk(srv.base, l, *flagDur, *flagConns, srv.pid()) }
	r, err := h.stable("verify, hit, defaults (INFO log to a file) ["+kind+"]", measure)
	if err != nil {
		return err
	}
	ceil := h.ceilingOf(kind)
	tgt, ok := relTarget(0.60, 2, ceil, "HTTP ceiling")
	h.addNow(&row{db: kind, name: "verify, hit, with the defaults (INFO request log to a file)", value: r.RPS, unit: "req/s", p99: r.P99,
		base: fmt.Sprintf("HTTP ceiling %.0f req/s", ceil.value), baseVal: ceil.value, target: tgt, ok: ok,
		disturbd: r.cpu.disturbed(), pid: srv.pid(), rerun: measure,
		detail: fmt.Sprintf("a server process with APIKEYS_LOG_LEVEL=INFO, its standard error (a JSON line per request) to a file; wrk POST /api-keys/verify, every answer 200 VALID: %s.", r)})
	return nil
}

// floodRow: hits on a real key while a flood of new unknown handles runs at the same time,
// each on half the connections, against hits alone on as many.
func (h *harness) floodRow(srv *server, unknownFile, hitKey string) error {
	half := max(*flagConns/2, 1)
	hits := verifyLoad(srv.admin, hitKey)
	alone, err := h.stable("verify, hit alone, half the connections ["+srv.kind+"]", func() (wrkResult, error) {
		return h.wrk(srv.base, hits, *flagDur, half, srv.pid())
	})
	if err != nil {
		return err
	}
	flood := load{method: "POST", path: "/api-keys/verify", bearer: srv.admin, keysFile: unknownFile}
	var (
		fr   wrkResult
		ferr error
		wg   sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		fr, ferr = h.wrk(srv.base, flood, *flagDur, half, srv.pid())
	}()
	with, err := h.wrk(srv.base, hits, *flagDur, half, srv.pid())
	wg.Wait()
	if err != nil {
		return err
	}
	if ferr != nil {
		return ferr
	}
	bound := 2 * alone.P99
	h.add(&row{db: srv.kind, name: "verify, hit during a flood of new unknown handles", value: with.RPS, unit: "req/s", p99: with.P99,
		base: fmt.Sprintf("hits alone on %d connections: %.0f req/s, p99 %s", half, alone.RPS, ms(alone.P99)), baseVal: alone.RPS,
		target: fmt.Sprintf("p99 ≤ 2× the p99 of hits alone (%s)", ms(bound)), ok: atLeast(0, bound), disturbd: with.cpu.disturbed(),
		detail: fmt.Sprintf("wrk hits on %d connections (%s) while another wrk sent new unknown handles on %d (%s); alone, the same hits: %s.", half, with, half, fr, alone)})
	return nil
}

// addNow adds r and, when it missed its target, profiles it at once: its server is stopped
// when the row's function returns, before profileMissed runs.
func (h *harness) addNow(r *row) {
	h.add(r)
	if r.ok == nil || r.met || r.rerun == nil {
		return
	}
	rerun := r.rerun
	h.profileRow(fmt.Sprintf("%s (%s)", r.name, r.db), r.pid, func() (string, error) {
		w, err := rerun()
		return w.String(), err
	})
	r.rerun = nil // profiled
}
