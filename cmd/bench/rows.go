package main

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/qs/apikeys/internal/keytest"
	"github.com/qs/apikeys/keys"
)

const (
	hitTarget = "≥ 60 % of the HTTP ceiling, p99 ≤ 5 ms"
	badTarget = "≥ 50 % of the HTTP ceiling"
)

// postgresRows: the service on a fresh PostgreSQL database with a million keys.
func (h *harness) postgresRows(bin string) error {
	adminURL, err := h.pickPG()
	if err != nil {
		return err
	}
	dbURL, err := h.createDatabase(adminURL)
	if err != nil {
		return err
	}
	srv, err := h.startServer(bin, "apikeys", "PostgreSQL", dbURL)
	if err != nil {
		return err
	}
	h.logf("service on PostgreSQL at %s (pid %d)", srv.base, srv.pid())
	db, err := openSQL(dbURL)
	if err != nil {
		return err
	}
	h.onCleanup(func() { db.Close() })
	tenantEvery := max(*flagRows/max(*flagTenant, 1), 1)
	if err := h.loadKeys(db, *flagRows, tenantEvery); err != nil {
		return err
	}
	first := len(h.rows)
	ceiling, body, err := h.verifyRows(srv)
	if err != nil {
		return err
	}
	if err := h.unknownMissRow(srv, ceiling); err != nil {
		return err
	}
	if err := h.defaultsHitRow(bin, dbURL, "PostgreSQL"); err != nil {
		return err
	}
	if err := h.listRows(srv, db); err != nil {
		return err
	}
	// The argon2id ceiling just before create and again after the first verifications: the
	// mean is the baseline of both rows.
	argonA, err := h.argonCeiling(5 * time.Second)
	if err != nil {
		return err
	}
	create, err := h.createRow(srv)
	if err != nil {
		return err
	}
	argonB, err := h.argonCeiling(5 * time.Second)
	if err != nil {
		return err
	}
	rss, pool, err := h.rssRow(srv)
	if err != nil {
		return err
	}
	argon := (argonA + argonB) / 2
	create.baseVal = argon
	create.base = fmt.Sprintf("argon2id ceiling %.1f hashes/s", argon)
	create.detail += fmt.Sprintf(" The argon2id ceiling is `argon2.IDKey` with the default parameters (%s, 32 bytes) on GOMAXPROCS goroutines for 5 s, the mean of a run just before the create row (%.1f hashes/s) and one after this row (%.1f).", argonParams(), argonA, argonB)
	h.add(create)
	h.add(rss)
	if err := h.firstVerifyRow(bin, dbURL, srv, firstVerifyKeys, "PostgreSQL"); err != nil {
		return err
	}
	if len(pool) < knownMissKeys {
		more, err := srv.batchCreate(h.ctx, knownMissKeys-len(pool))
		if err != nil {
			return err
		}
		pool = append(pool, more...)
	}
	if err := h.knownMissRow(bin, dbURL, db, pool); err != nil {
		return err
	}
	if err := h.restartRow(bin, dbURL, srv, restartKeys); err != nil {
		return err
	}
	h.profileMissed(first, body)
	srv.stop()
	return nil
}

// sqliteRows: the verify rows on a SQLite file (the service's default engine).
func (h *harness) sqliteRows(bin string) error {
	dbURL := "file:" + filepath.Join(h.tmp, "sqlite", "apikeys.db")
	srv, err := h.startServer(bin, "apikeys", "SQLite", dbURL)
	if err != nil {
		return err
	}
	h.logf("service on SQLite at %s (pid %d)", srv.base, srv.pid())
	first := len(h.rows)
	ceiling, body, err := h.verifyRows(srv)
	if err != nil {
		return err
	}
	if err := h.unknownMissRow(srv, ceiling); err != nil {
		return err
	}
	if err := h.defaultsHitRow(bin, dbURL, "SQLite"); err != nil {
		return err
	}
	if err := h.firstVerifyRow(bin, dbURL, srv, firstVerifyKeys, "SQLite"); err != nil {
		return err
	}
	h.profileMissed(first, body)
	srv.stop()
	return nil
}

// The keys of the rows at scale: first verifications, the known-key miss, the restart.
const (
	firstVerifyKeys = 10_000
	knownMissKeys   = 600
	restartKeys     = 10_000
)

// profileMissed profiles every row from first on that missed its target, and the HTTP ceiling
// once when a verify row did.
func (h *harness) profileMissed(first int, ceilingBody string) {
	ceiling := false
	for _, r := range h.rows[first:] {
		if r.ok == nil || r.met || r.rerun == nil {
			continue
		}
		rerun := r.rerun
		h.profileRow(fmt.Sprintf("%s (%s)", r.name, r.db), r.pid, func() (string, error) {
			w, err := rerun()
			return w.String(), err
		})
		if strings.HasPrefix(r.name, "verify") {
			ceiling = true
		}
		if strings.HasPrefix(r.name, "create") {
			h.profileArgon()
		}
	}
	if ceiling && !h.ceilingProfiled {
		h.ceilingProfiled = true
		h.profileCeiling(ceilingBody)
	}
}

// verifyRows: the verify rows that run at memory speed, between two measurements of the HTTP
// ceiling (their mean is the baseline). It returns the ceiling and the body it was measured
// with.
func (h *harness) verifyRows(srv *server) (float64, string, error) {
	ctx := h.ctx
	target, err := srv.createKey(ctx, map[string]any{"name": "bench verify target"})
	if err != nil {
		return 0, "", err
	}
	bearer, err := srv.createKey(ctx, map[string]any{"name": "bench verify bearer", "scopes": []string{"api_keys:verify"}})
	if err != nil {
		return 0, "", err
	}
	wrong, err := keytest.Forge(target.SecretKey)
	if err != nil {
		return 0, "", err
	}
	unknown, err := keys.Generate(keys.DefaultPrefix)
	if err != nil {
		return 0, "", err
	}
	last := target.SecretKey[len(target.SecretKey)-1]
	malformed := target.SecretKey[:len(target.SecretKey)-1] + map[bool]string{true: "y", false: "x"}[last == 'x']
	type vcase struct {
		name, bearer, key, code, target string
		ok                              func(*row) (bool, string)
	}
	cases := []vcase{
		{"verify, hit (admin bearer)", srv.admin, target.SecretKey, "VALID", hitTarget, atLeast(0.60, 5*time.Millisecond)},
		{"verify, hit (an api_keys:verify key as bearer)", bearer.SecretKey, target.SecretKey, "VALID", hitTarget, atLeast(0.60, 5*time.Millisecond)},
		{"verify, unknown handle (cached as absent)", srv.admin, unknown.Secret(), "NOT_FOUND", badTarget, atLeast(0.50, 0)},
		{"verify, malformed token (checksum)", srv.admin, malformed, "MALFORMED", "", nil},
		{"verify, wrong secret (proof memo mismatch)", srv.admin, wrong, "NOT_FOUND", badTarget, atLeast(0.50, 0)},
	}
	// Once each, in this order: the right secret's argon2id run fills the cache and the
	// proof memo, which the wrong secret then meets.
	for _, c := range cases {
		code, err := srv.verifyCode(ctx, c.bearer, c.key)
		if err != nil {
			return 0, "", fmt.Errorf("%s: %w", c.name, err)
		}
		if code != c.code {
			return 0, "", fmt.Errorf("%s: answered %s, want %s", c.name, code, c.code)
		}
	}
	body := verifyBody(target.SecretKey)
	ceilA, err := h.httpCeiling(body)
	if err != nil {
		return 0, "", err
	}
	// Warm-up: connections, goroutines and the GC's pacing.
	if _, err := h.wrk(srv.base, verifyLoad(srv.admin, target.SecretKey), 2*time.Second, *flagConns, srv.pid()); err != nil {
		return 0, "", err
	}
	results := make([]wrkResult, len(cases))
	for i, c := range cases {
		l := verifyLoad(c.bearer, c.key)
		measure := func() (wrkResult, error) { return h.wrk(srv.base, l, *flagDur, *flagConns, srv.pid()) }
		if results[i], err = h.stable(fmt.Sprintf("%s [%s]", c.name, srv.kind), measure); err != nil {
			return 0, "", err
		}
		if code, err := srv.verifyCode(ctx, c.bearer, c.key); err != nil || code != c.code {
			return 0, "", fmt.Errorf("%s: after the load it answered %s (%v), want %s", c.name, code, err, c.code)
		}
	}
	ceilB, err := h.httpCeiling(body)
	if err != nil {
		return 0, "", err
	}
	ceiling := (ceilA.RPS + ceilB.RPS) / 2
	h.add(&row{db: srv.kind, name: "HTTP ceiling: bare Echo binding the verify body, fixed 200 (baseline)", value: ceiling, unit: "req/s",
		p99: (ceilA.P99 + ceilB.P99) / 2, disturbd: ceilA.cpu.disturbed() && ceilB.cpu.disturbed(),
		detail: fmt.Sprintf("the mean of two runs, before the verify rows: %s; after them: %s.", ceilA, ceilB)})
	base := fmt.Sprintf("HTTP ceiling %.0f req/s", ceiling)
	for i, c := range cases {
		r := results[i]
		l := verifyLoad(c.bearer, c.key)
		h.add(&row{db: srv.kind, name: c.name, value: r.RPS, unit: "req/s", p99: r.P99, base: base, baseVal: ceiling,
			target: c.target, ok: c.ok, disturbd: r.cpu.disturbed(), pid: srv.pid(),
			detail: fmt.Sprintf("wrk POST /api-keys/verify, every answer 200 %s: %s.", c.code, r),
			rerun:  func() (wrkResult, error) { return h.wrk(srv.base, l, *flagDur, *flagConns, srv.pid()) }})
	}
	return ceiling, body, nil
}

// unknownMissRow: verification that misses every cache: 200,000 distinct unknown handles,
// ten times what the negative cache holds, so each request reads the database once.
func (h *harness) unknownMissRow(srv *server, ceiling float64) error {
	const n = 200_000
	file, err := h.unknownTokens(n)
	if err != nil {
		return err
	}
	l := load{method: "POST", path: "/api-keys/verify", bearer: srv.admin, keysFile: file}
	measure := func() (wrkResult, error) { return h.wrk(srv.base, l, *flagDur, *flagConns, srv.pid()) }
	r, err := h.stable(fmt.Sprintf("verify, miss (unknown handles) [%s]", srv.kind), measure)
	if err != nil {
		return err
	}
	tgt, ok := relTarget(0.50, 2, h.ceilingOf(srv.kind), "HTTP ceiling")
	h.add(&row{db: srv.kind, name: "verify, a new unknown handle each time (the handle filter)", value: r.RPS, unit: "req/s", p99: r.P99,
		base: fmt.Sprintf("HTTP ceiling %.0f req/s", ceiling), baseVal: ceiling, disturbd: r.cpu.disturbed(), target: tgt, ok: ok,
		pid: srv.pid(), rerun: measure,
		detail: fmt.Sprintf("wrk cycling through %d well-formed tokens whose handles no key has (the negative cache holds 20,000, so none is cached when it comes again), every answer NOT_FOUND: %s.", n, r)})
	target, err := srv.createKey(h.ctx, map[string]any{"name": "bench flood target"})
	if err != nil {
		return err
	}
	if code, err := srv.verifyCode(h.ctx, srv.admin, target.SecretKey); err != nil || code != "VALID" {
		return fmt.Errorf("flood row: %s %v", code, err)
	}
	return h.floodRow(srv, file, target.SecretKey)
}

// listRows: the first page and a page half-way down the million keys, against the same query
// through sqlx directly.
func (h *harness) listRows(srv *server, db *sqlx.DB) error {
	ctx := h.ctx
	cur, err := deepCursor(ctx, db, *flagRows/2)
	if err != nil {
		return fmt.Errorf("deep cursor: %w", err)
	}
	pages := []struct {
		name, path, sql string
		args            []any
	}{
		{"list, first page (limit 50) of 1 M keys", "/api-keys?limit=50", listFirstSQL, []any{51}},
		{fmt.Sprintf("list, a deep page (limit 50, cursor %d rows in)", *flagRows/2), "/api-keys?limit=50&cursor=" + url.QueryEscape(cur.String()),
			listAfterSQL, []any{cur.CreatedAt.Format(timeLayout), cur.ID, 51}},
	}
	if *flagRows != 1_000_000 {
		pages[0].name = fmt.Sprintf("list, first page (limit 50) of %d keys", *flagRows)
	}
	for _, p := range pages {
		var items []map[string]any
		if _, err := srv.call(ctx, "GET", p.path, srv.admin, nil, &items); err != nil {
			return err
		}
		if len(items) != 50 {
			return fmt.Errorf("%s: %d keys, want 50", p.path, len(items))
		}
		sq, err := h.sqlCeiling(db, p.sql, p.args, 5*time.Second)
		if err != nil {
			return fmt.Errorf("SQL ceiling of %s: %w", p.name, err)
		}
		l := load{method: "GET", path: p.path, bearer: srv.admin}
		if _, err := h.wrk(srv.base, l, 2*time.Second, *flagConns, srv.pid()); err != nil { // warm-up
			return err
		}
		measure := func() (wrkResult, error) { return h.wrk(srv.base, l, *flagDur, *flagConns, srv.pid()) }
		r, err := h.stable(p.name+" [PostgreSQL]", measure)
		if err != nil {
			return err
		}
		one, err := h.stable(p.name+", 1 connection [PostgreSQL]", func() (wrkResult, error) {
			return h.wrk(srv.base, l, 5*time.Second, 1, srv.pid())
		})
		if err != nil {
			return err
		}
		h.add(&row{db: "PostgreSQL", name: p.name, value: r.RPS, unit: "req/s", p99: r.P99, p99One: one.P99,
			base: fmt.Sprintf("SQL ceiling %.0f queries/s (p99 %.2f ms)", sq.QPS, sq.P99), baseVal: sq.QPS,
			target: "p99 ≤ 10 ms, ≥ 50 % of the SQL ceiling", ok: atLeast(0.50, 10*time.Millisecond),
			disturbd: r.cpu.disturbed(), pid: srv.pid(), rerun: measure,
			detail: fmt.Sprintf("wrk GET %s as the admin, every answer 200 with 50 keys: %s. At one connection (one thread, 5 s): %s. The SQL ceiling is the store's statement (`%s`, limit 51) through sqlx from %d goroutines on a pool of 32 for 5 s: %.0f queries/s, p99 %.2f ms (%s).",
				p.path, r, one, strings.Join(strings.Fields(strings.Replace(p.sql, keyColumns, "<the 25 columns>", 1)), " "), *flagConns, sq.QPS, sq.P99, sq.cpu)})
		h.note("PostgreSQL's plan of %q:\n\n  ```\n%s\n  ```", p.name, indent(explain(ctx, db, p.sql, p.args...), "  "))
	}
	return nil
}

func indent(s, pre string) string {
	return pre + strings.ReplaceAll(s, "\n", "\n"+pre)
}

// createRow: POST /api-keys as fast as argon2id lets it.
func (h *harness) createRow(srv *server) (*row, error) {
	l := load{method: "POST", path: "/api-keys", bearer: srv.admin, body: `{"name": "bench create", "scopes": ["api_keys:read"]}`}
	measure := func() (wrkResult, error) { return h.wrk(srv.base, l, *flagDur, *flagConns, srv.pid()) }
	r, err := h.stable("create [PostgreSQL]", measure)
	if err != nil {
		return nil, err
	}
	return &row{db: "PostgreSQL", name: "create (POST /api-keys)", value: r.RPS, unit: "keys/s", p99: r.P99,
		target: "≥ 85 % of the argon2id ceiling", ok: atLeast(0.85, 0), disturbd: r.cpu.disturbed(), pid: srv.pid(), rerun: measure,
		detail: fmt.Sprintf("wrk POST /api-keys, every answer 201: %s.", r)}, nil
}

// rssRow: peak resident memory of the server while 500 creates are in flight at once. It
// returns the secrets created, none of them verified yet.
func (h *harness) rssRow(srv *server) (*row, []string, error) {
	const n = 500
	pid := srv.pid()
	before, _ := procStatus(pid, "VmRSS")
	lifetimeHWM, _ := procStatus(pid, "VmHWM")
	reset := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0) == nil
	var (
		polled int64
		stop   = make(chan struct{})
		polls  sync.WaitGroup
	)
	polls.Add(1)
	go func() {
		defer polls.Done()
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			if v, err := procStatus(pid, "VmRSS"); err == nil && v > polled {
				polled = v
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	client := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: 0}}
	var (
		mu      sync.Mutex
		status  = map[int]int{}
		secrets []string
		slowest time.Duration
		wg      sync.WaitGroup
		gate    = make(chan struct{})
	)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			t := time.Now()
			req, _ := http.NewRequestWithContext(h.ctx, "POST", srv.base+"/api-keys", strings.NewReader(fmt.Sprintf(`{"name": "bench rss %d"}`, i)))
			req.Header.Set("Authorization", "Bearer "+srv.admin)
			req.Header.Set("Content-Type", "application/json")
			res, err := client.Do(req)
			code := 0
			var k createdKey
			if err == nil {
				code = res.StatusCode
				if code == http.StatusCreated {
					err = jsonDecode(res.Body, &k)
				}
				res.Body.Close()
			}
			mu.Lock()
			status[code]++
			if k.SecretKey != "" {
				secrets = append(secrets, k.SecretKey)
			}
			slowest = max(slowest, time.Since(t))
			mu.Unlock()
		}()
	}
	start := time.Now()
	close(gate)
	wg.Wait()
	took := time.Since(start)
	close(stop)
	polls.Wait()
	client.CloseIdleConnections()
	if err := h.ctx.Err(); err != nil {
		return nil, nil, err
	}
	hwm, _ := procStatus(pid, "VmHWM")
	peak := max(hwm, polled)
	how := "VmHWM was reset (clear_refs 5) just before"
	if !reset {
		how = fmt.Sprintf("VmHWM could not be reset, so it is the peak since start (%.0f MiB before this row)", float64(lifetimeHWM)/1024)
	}
	var codes []string
	for c, k := range status {
		codes = append(codes, fmt.Sprintf("%d × %s", k, map[bool]string{true: "no answer", false: fmt.Sprint(c)}[c == 0]))
	}
	return &row{db: "PostgreSQL", name: "peak RSS under 500 concurrent creates", value: float64(peak) / 1024, unit: "MiB",
		target: "≤ 300 MiB", ok: func(r *row) (bool, string) { return r.value <= 300, "memory" },
		detail: fmt.Sprintf("500 POST /api-keys sent at once on 500 connections by a Go client (%s, in %.1f s, the slowest %.1f s); RSS of the server: %.0f MiB before, peak %.0f MiB (%s: VmHWM %.0f MiB, VmRSS polled every 5 ms %.0f MiB).",
			strings.Join(codes, ", "), took.Seconds(), slowest.Seconds(), float64(before)/1024, float64(peak)/1024, how, float64(hwm)/1024, float64(polled)/1024)}, secrets, nil
}

// knownMissCache is the key cache of the server of the known-key miss row: far fewer rows
// than the keys it cycles through, so that each verification misses it.
const knownMissCache = 64

// knownMissRow: verification of a known key whose row is not in the cache but whose proof is
// in the memo, the steady-state miss (a row aged out or evicted): one indexed read and an HMAC,
// no argon2id. A second server on the same database runs with APIKEYS_CACHE_ENTRIES=64; each
// key of pool is verified once through it first (argon2id, filling its memo), then wrk cycles
// through them all.
func (h *harness) knownMissRow(bin, dbURL string, db *sqlx.DB, pool []string) error {
	srv, err := h.startServer(bin, "apikeys-smallcache", "PostgreSQL", dbURL, fmt.Sprintf("APIKEYS_CACHE_ENTRIES=%d", knownMissCache))
	if err != nil {
		return err
	}
	defer srv.stop()
	start := time.Now()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  = make(chan string)
	)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range next {
				code, err := srv.verifyCode(h.ctx, srv.admin, k)
				if err == nil && code != "VALID" {
					err = fmt.Errorf("answered %s, want VALID", code)
				}
				if err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, k := range pool {
		next <- k
	}
	close(next)
	wg.Wait()
	if first != nil {
		return fmt.Errorf("known-key miss row, first verifications: %w", first)
	}
	h.logf("verified %d keys once through the small-cache server in %.1fs", len(pool), time.Since(start).Seconds())
	file, err := h.tokensFile("known.txt", pool)
	if err != nil {
		return err
	}
	l := load{method: "POST", path: "/api-keys/verify", bearer: srv.admin, keysFile: file}
	measure := func() (wrkResult, error) { return h.wrk(srv.base, l, *flagDur, *flagConns, srv.pid()) }
	r, err := h.stable("verify, miss (known keys, small cache) [PostgreSQL]", measure)
	if err != nil {
		return err
	}
	if code, err := srv.verifyCode(h.ctx, srv.admin, pool[0]); err != nil || code != "VALID" {
		return fmt.Errorf("known-key miss row: after the load %s answered %s (%v)", pool[0], code, err)
	}
	handles := make([]string, 0, len(pool))
	for _, k := range pool {
		tok, err := keys.Parse(k)
		if err != nil {
			return err
		}
		handles = append(handles, tok.Handle())
	}
	sq, err := h.pointReadCeiling(db, handles, 5*time.Second)
	if err != nil {
		return fmt.Errorf("point-read ceiling: %w", err)
	}
	base := &row{p99: time.Duration(sq.P99 * 1e6)}
	tgt, ok := relTarget(0.50, 2, base, "point-read ceiling")
	h.add(&row{db: "PostgreSQL", name: "point-read ceiling: the store's GetKeyByHandle statement through lib/pq (baseline)", value: sq.QPS, unit: "queries/s", p99: base.p99,
		detail: fmt.Sprintf("`%s` through sqlx and lib/pq (binary parameters, as the store sends them) from %d goroutines on a pool of 32 for 5 s, cycling through the %d handles of the row below: %.0f queries/s, p99 %.2f ms (%s).",
			strings.Replace(pointReadSQL, keyColumns, "<the 25 columns>", 1), *flagConns, len(handles), sq.QPS, sq.P99, sq.cpu)})
	h.addNow(&row{db: "PostgreSQL", name: "verify, a known key whose row is not cached (row read, proof memo hit)", value: r.RPS, unit: "req/s", p99: r.P99,
		base: fmt.Sprintf("point-read ceiling %.0f queries/s", sq.QPS), baseVal: sq.QPS, disturbd: r.cpu.disturbed(), target: tgt, ok: ok,
		pid: srv.pid(), rerun: measure,
		detail: fmt.Sprintf("a second server process on the same database with APIKEYS_CACHE_ENTRIES=%d; each of %d keys was verified once through it first (argon2id, which puts its proof in the memo), then wrk cycled through them all, every answer 200 VALID: each request reads its key's row (the cache holds %d rows, a key comes back after %d others) and compares an HMAC, no argon2id: %s.", knownMissCache, len(pool), knownMissCache, len(pool)-1, r)})
	return nil
}
