package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/labstack/echo/v4"
	"golang.org/x/crypto/argon2"

	"github.com/qs/apikeys/keys"
)

// ceilingAnswer is the fixed answer of the HTTP ceiling: the size and shape of a VALID verdict.
var ceilingAnswer = []byte(`{"valid":true,"code":"VALID","keyId":"apk_019a2b3c-4d5e-7f60-8a9b-0c1d2e3f4a5b",` +
	`"subjectId":"subject_019a2b3c-4d5e-7f60-8a9b-0c1d2e3f4a5c","scopes":[]}`)

// ceilingRequest is the verify body, bound as the service's generated types bind it.
type ceilingRequest struct {
	Key            string    `json:"key"`
	ClientIP       *string   `json:"clientIp,omitempty"`
	TenantID       *string   `json:"tenantId,omitempty"`
	EnvironmentID  *string   `json:"environmentId,omitempty"`
	RequiredScopes *[]string `json:"requiredScopes,omitempty"`
}

// serveCeiling is the HTTP ceiling: a bare Echo v4 server (no middleware) whose verify route
// binds the same JSON body and answers a fixed 200. It runs until SIGTERM.
func serveCeiling(addr string) error {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.POST("/api-keys/verify", func(c echo.Context) error {
		var r ceilingRequest
		if err := c.Bind(&r); err != nil {
			return err
		}
		if c.Request().Header.Get(echo.HeaderAuthorization) == "" || r.Key == "" {
			return echo.NewHTTPError(http.StatusUnauthorized)
		}
		return c.JSONBlob(http.StatusOK, ceilingAnswer)
	})
	e.GET("/readyz", func(c echo.Context) error { return c.String(http.StatusOK, "ok") })
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- e.Start(addr) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// startCeiling starts the HTTP ceiling process, as "httpceiling" (a link to this binary) so
// that profiles tell it from the harness.
func (h *harness) startCeiling() (string, *proc, error) {
	self, err := os.Executable()
	if err != nil {
		return "", nil, err
	}
	link := filepath.Join(h.tmp, "httpceiling")
	if _, err := os.Lstat(link); err != nil {
		if err := os.Symlink(self, link); err != nil {
			return "", nil, err
		}
	}
	port, err := freePort()
	if err != nil {
		return "", nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOMAXPROCS=") && !strings.HasPrefix(kv, "GOGC=") {
			env = append(env, kv)
		}
	}
	p, err := h.startProc("httpceiling", link, []string{"-ceiling-server", addr}, env)
	if err != nil {
		return "", nil, err
	}
	base := "http://" + addr
	if err := h.waitReady(base+"/readyz", p, 30*time.Second); err != nil {
		p.stop()
		return "", nil, err
	}
	return base, p, nil
}

// httpCeiling measures the ceiling process with the same wrk settings and body as the verify
// rows, after a warm-up.
func (h *harness) httpCeiling(body string) (wrkResult, error) {
	base, p, err := h.startCeiling()
	if err != nil {
		return wrkResult{}, err
	}
	defer p.stop()
	l := load{method: "POST", path: "/api-keys/verify", bearer: adminToken, body: body}
	if _, err := h.wrk(base, l, 2*time.Second, *flagConns, p.pid()); err != nil { // warm-up
		return wrkResult{}, err
	}
	return h.stable("HTTP ceiling (bare Echo, same body)", func() (wrkResult, error) { return h.wrk(base, l, *flagDur, *flagConns, p.pid()) })
}

// profileCeiling profiles the ceiling under the verify load, to compare with the server's.
func (h *harness) profileCeiling(body string) {
	if !*flagProfile || !h.env.perf {
		return
	}
	base, p, err := h.startCeiling()
	if err != nil {
		h.logf("profile of the ceiling: %v", err)
		return
	}
	defer p.stop()
	l := load{method: "POST", path: "/api-keys/verify", bearer: adminToken, body: body}
	h.profileRow("HTTP ceiling (bare Echo), for comparison", p.pid(), func() (string, error) {
		r, err := h.wrk(base, l, *flagDur, *flagConns, p.pid())
		return r.String(), err
	})
}

// stable runs measure again, up to -retries times, while other processes took CPU during it,
// and keeps the least disturbed run.
func (h *harness) stable(name string, measure func() (wrkResult, error)) (wrkResult, error) {
	var best wrkResult
	for i := 0; i <= *flagRetries; i++ {
		h.waitQuiet(name)
		r, err := measure()
		if err != nil {
			return r, err
		}
		h.logf("%-58s %s", name, r)
		if i == 0 || r.cpu.foreign+r.cpu.steal < best.cpu.foreign+best.cpu.steal {
			best = r
		}
		if !r.cpu.disturbed() {
			break
		}
		if i < *flagRetries {
			h.logf("%s: other processes took %.2f cores (steal %.2f): again", name, r.cpu.foreign, r.cpu.steal)
		}
	}
	return best, nil
}

// profileArgon profiles the argon2id ceiling (this process), to compare with create's.
func (h *harness) profileArgon() {
	h.profileRow("argon2id ceiling (raw IDKey in this process), for comparison", os.Getpid(), func() (string, error) {
		r, err := h.argonRun(*flagDur - time.Second)
		return fmt.Sprintf("%.1f hashes/s", r), err
	})
}

// argonRun is one run of the argon2id ceiling: hashes per second.
func (h *harness) argonRun(d time.Duration) (float64, error) {
	p := keys.DefaultParams()
	var n atomic.Int64
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for g := 0; g < runtime.GOMAXPROCS(0); g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			salt := make([]byte, p.SaltLen)
			rand.Read(salt)
			secret := []byte("qs_live_0123456789abcdefghijklmnopqrstuvwxyzABCD")
			for time.Now().Before(deadline) && h.ctx.Err() == nil {
				argon2.IDKey(secret, salt, p.Iterations, p.MemoryKiB, p.Parallelism, p.KeyLen)
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	if err := h.ctx.Err(); err != nil {
		return 0, err
	}
	return float64(n.Load()) / time.Since(start).Seconds(), nil
}

// argonParams names the service's default argon2id parameters.
func argonParams() string {
	p := keys.DefaultParams()
	return fmt.Sprintf("m=%d KiB, t=%d, p=%d", p.MemoryKiB, p.Iterations, p.Parallelism)
}

// argonCeiling is raw argon2.IDKey with the production parameters on GOMAXPROCS goroutines.
func (h *harness) argonCeiling(d time.Duration) (float64, error) {
	var rate float64
	for i := 0; i <= *flagRetries; i++ {
		h.waitQuiet("argon2id ceiling")
		before := snapCPU(nil)
		r, err := h.argonRun(d)
		if err != nil {
			return 0, err
		}
		c := cpuBetween(before, snapCPU(nil), nil)
		h.logf("%-58s %.1f hashes/s (%s)", "argon2id ceiling (IDKey, "+argonParams()+")", r, c)
		rate = max(rate, r)
		if !c.disturbed() {
			break
		}
	}
	return rate, nil
}

// sqlRow is the list query's row, scanned as sqlx scans the store's.
type sqlRow struct {
	ID                 string     `db:"id"`
	SubjectID          string     `db:"subject_id"`
	TenantID           nullString `db:"tenant_id"`
	EnvironmentID      nullString `db:"environment_id"`
	Name               string     `db:"name"`
	Description        nullString `db:"description"`
	Handle             string     `db:"lookup_handle"`
	Prefix             string     `db:"prefix"`
	LastFour           string     `db:"last_four"`
	Hash               string     `db:"secret_hash"`
	HashAlgo           string     `db:"hash_algo"`
	CreatedBySubjectID string     `db:"created_by_subject_id"`
	CreatedAt          time.Time  `db:"created_at"`
	UpdatedAt          time.Time  `db:"updated_at"`
	ExpiresAt          nullTime   `db:"expires_at"`
	IntendedUse        nullString `db:"intended_use"`
	Metadata           nullString `db:"metadata"`
	Scopes             nullString `db:"scopes"`
	LastUsedAt         nullTime   `db:"last_used_at"`
	LastUsedIP         nullString `db:"last_used_ip"`
	RevokedAt          nullTime   `db:"revoked_at"`
	RevokedBySubjectID nullString `db:"revoked_by_subject_id"`
	RevokedReason      nullString `db:"revoked_reason"`
	RotatedFromID      nullString `db:"rotated_from_id"`
	ReplacedByID       nullString `db:"replaced_by_id"`
}

type nullString struct {
	S     string
	Valid bool
}

func (n *nullString) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		*n = nullString{}
	case string:
		*n = nullString{x, true}
	case []byte:
		*n = nullString{string(x), true}
	default:
		return fmt.Errorf("cannot scan %T", v)
	}
	return nil
}

type nullTime struct {
	T     time.Time
	Valid bool
}

func (n *nullTime) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		*n = nullTime{}
	case time.Time:
		*n = nullTime{x.UTC(), true}
	default:
		return fmt.Errorf("cannot scan %T", v)
	}
	return nil
}

// sqlResult is a run of the SQL ceiling.
type sqlResult struct {
	QPS, P99 float64 // queries/s, ms
	Queries  int64
	cpu      cpuUse
}

// sqlCeiling runs query through sqlx on 32 connections (the store's pool size) from as many
// goroutines for d, each query scanning its rows into a slice as ListKeys does.
func (h *harness) sqlCeiling(db *sqlx.DB, query string, args []any, d time.Duration) (sqlResult, error) {
	return h.sqlCeilingWith(db, query, func() []any { return args }, d)
}

// sqlCeilingWith is sqlCeiling with arguments chosen for each query.
func (h *harness) sqlCeilingWith(db *sqlx.DB, query string, args func() []any, d time.Duration) (sqlResult, error) {
	run := func() (sqlResult, error) {
		before := snapCPU(nil)
		var (
			n        atomic.Int64
			mu       sync.Mutex
			lats     []time.Duration
			firstErr error
			wg       sync.WaitGroup
		)
		deadline := time.Now().Add(d)
		start := time.Now()
		for g := 0; g < *flagConns; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var local []time.Duration
				for time.Now().Before(deadline) && h.ctx.Err() == nil {
					t := time.Now()
					var rows []sqlRow
					if err := db.SelectContext(h.ctx, &rows, query, args()...); err != nil {
						mu.Lock()
						if firstErr == nil {
							firstErr = err
						}
						mu.Unlock()
						return
					}
					local = append(local, time.Since(t))
					n.Add(1)
				}
				mu.Lock()
				lats = append(lats, local...)
				mu.Unlock()
			}()
		}
		wg.Wait()
		if firstErr != nil {
			return sqlResult{}, firstErr
		}
		if err := h.ctx.Err(); err != nil {
			return sqlResult{}, err
		}
		r := sqlResult{Queries: n.Load(), QPS: float64(n.Load()) / time.Since(start).Seconds(),
			P99: percentile(lats, 0.99).Seconds() * 1e3, cpu: cpuBetween(before, snapCPU(nil), nil)}
		return r, nil
	}
	var best sqlResult
	for i := 0; i <= *flagRetries; i++ {
		h.waitQuiet("SQL ceiling")
		r, err := run()
		if err != nil {
			return r, err
		}
		h.logf("%-58s %.0f queries/s, p99 %.2f ms (%s)", "SQL ceiling", r.QPS, r.P99, r.cpu)
		if i == 0 || r.cpu.foreign+r.cpu.steal < best.cpu.foreign+best.cpu.steal {
			best = r
		}
		if !r.cpu.disturbed() {
			break
		}
	}
	return best, nil
}

// waitQuiet waits, at most -quiet-wait, until processes other than ours (this one and
// PostgreSQL's; the servers are idle between rows) use less than a tenth of a core over two
// seconds: the machine is shared, and a row measured while something else runs measures that.
func (h *harness) waitQuiet(what string) {
	deadline := time.Now().Add(*flagQuietWait)
	waited := false
	for {
		a := snapCPU(nil)
		select {
		case <-h.ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
		c := cpuBetween(a, snapCPU(nil), nil)
		if c.foreign+c.steal < 0.1 {
			if waited {
				h.logf("the machine is quiet again")
			}
			return
		}
		if time.Now().After(deadline) {
			h.logf("other processes still take %.2f cores after %s; measuring %s anyway", c.foreign+c.steal, *flagQuietWait, what)
			return
		}
		if !waited {
			h.logf("other processes take %.2f cores: waiting (at most %s) before %s", c.foreign+c.steal, *flagQuietWait, what)
			waited = true
		}
	}
}
