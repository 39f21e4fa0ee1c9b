// Command apikeys runs the API-key service and is its command-line client.
//
//	apikeys [serve]          run the service (the default)
//	apikeys healthcheck      ask the local service whether it is ready
//	apikeys migrate          apply the database migrations and exit
//	apikeys keys ...         create, list, get, update, revoke, rotate, verify keys
//	apikeys subjects get ID  the subject behind a key
//
// The service's configuration comes from the environment; see README.md for the table.
// The client reads APIKEYS_URL and APIKEYS_TOKEN; `apikeys --help` says more (cli.go).
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	apikeys "github.com/qs/apikeys"
	"github.com/qs/apikeys/keys"
	"github.com/qs/apikeys/server"
	"github.com/qs/apikeys/service"
	"github.com/qs/apikeys/store"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := exitCode(run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr), os.Stderr)
	stop()
	os.Exit(code)
}

// settings are the environment variables the service reads, for serve --help; README.md's
// Configuration table says the same at more length (TestSettingsAreDocumented holds the three
// to one list).
var settings = []struct{ name, def, meaning string }{
	{"APIKEYS_DATABASE_URL", "file:data/apikeys.db", "postgres://... for PostgreSQL; anything else is a SQLite file"},
	{"APIKEYS_ADDR", ":8080", "listen address (127.0.0.1:8080: this machine only)"},
	{"APIKEYS_ADMIN_TOKEN", "generated, printed once", "the admin bearer token, at least 16 characters"},
	{"APIKEYS_KEY_PREFIX", keys.DefaultPrefix, "prefix of new secrets: lower case, ending in _"},
	{"APIKEYS_ARGON2_MEMORY_KIB", strconv.Itoa(int(keys.DefaultParams().MemoryKiB)), "argon2id memory for new hashes"},
	{"APIKEYS_ARGON2_ITERATIONS", strconv.Itoa(int(keys.DefaultParams().Iterations)), "argon2id iterations"},
	{"APIKEYS_ARGON2_PARALLELISM", strconv.Itoa(int(keys.DefaultParams().Parallelism)), "argon2id lanes"},
	{"APIKEYS_USAGE_FLUSH_INTERVAL", "1s", "how often lastUsedAt and lastUsedIp are written"},
	{"APIKEYS_CACHE_ENTRIES", "50000", "key rows each replica keeps in memory"},
	{"APIKEYS_LOG_LEVEL", "INFO", "DEBUG, INFO, WARN or ERROR; JSON lines on standard error"},
	{"APIKEYS_DB_TIMEOUT", "3s", "bound of every database call"},
	{"APIKEYS_DB_MAX_CONNS", "4 per core, at least 8", "PostgreSQL connections of each replica's pool"},
	{"APIKEYS_REQUEST_TIMEOUT", "10s", "deadline of each request's work (503 past it)"},
	{"APIKEYS_MAX_CONNS", "1024", "connections served at once"},
	{"APIKEYS_IDLE_TIMEOUT", "30s", "how long an idle keep-alive connection is kept"},
	{"APIKEYS_BODY_BUDGET_MIB", "8", "request body bytes read and checked at once"},
	{"GOGC", "400", "the Go collector's pacing"},
	{"GOMEMLIMIT", "192MiB", "the Go collector's soft memory limit"},
}

// settingsHelp lists settings as a help text.
func settingsHelp() string {
	var b strings.Builder
	b.WriteString("Environment variables:\n")
	for _, s := range settings {
		fmt.Fprintf(&b, "  %-29s %s (default %s)\n", s.name, s.meaning, s.def)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// config is the service's configuration, read from the environment.
type config struct {
	databaseURL   string
	addr          string
	adminToken    string
	generated     bool // adminToken was generated because none was configured
	prefix        string
	hash          keys.Params
	flushInterval time.Duration
	cacheEntries  int
	dbMaxConns    int
	logLevel      slog.Level

	dbTimeout      time.Duration // each database call
	requestTimeout time.Duration // each request's work; the write timeout is 5 s longer
	idleTimeout    time.Duration // a keep-alive connection between requests
	maxConns       int           // connections served at once
	bodyBudget     int64         // request body bytes in flight
}

// spareConns is how many connections beyond maxConns are accepted to answer health probes
// (and 503 to anything else).
const spareConns = 64

func loadConfig(getenv func(string) string) (config, error) {
	c := config{
		databaseURL: getenv("APIKEYS_DATABASE_URL"),
		addr:        getenv("APIKEYS_ADDR"),
		adminToken:  getenv("APIKEYS_ADMIN_TOKEN"),
		prefix:      getenv("APIKEYS_KEY_PREFIX"),
		hash:        keys.DefaultParams(),
	}
	if c.databaseURL == "" {
		c.databaseURL = "file:data/apikeys.db"
	}
	if c.addr == "" {
		c.addr = ":8080"
	}
	if c.prefix == "" {
		c.prefix = keys.DefaultPrefix
	}
	if err := keys.ValidatePrefix(c.prefix); err != nil {
		return c, fmt.Errorf("APIKEYS_KEY_PREFIX: %w", err)
	}
	if c.adminToken == "" {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return c, err
		}
		c.adminToken, c.generated = base64.RawURLEncoding.EncodeToString(b), true
	} else if len(c.adminToken) < 16 {
		return c, errors.New("APIKEYS_ADMIN_TOKEN must be at least 16 characters")
	}
	for _, u := range []struct {
		name string
		dst  *uint32
	}{{"APIKEYS_ARGON2_MEMORY_KIB", &c.hash.MemoryKiB}, {"APIKEYS_ARGON2_ITERATIONS", &c.hash.Iterations}} {
		if v := getenv(u.name); v != "" {
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return c, fmt.Errorf("%s: %w", u.name, err)
			}
			*u.dst = uint32(n)
		}
	}
	if v := getenv("APIKEYS_ARGON2_PARALLELISM"); v != "" {
		n, err := strconv.ParseUint(v, 10, 8)
		if err != nil {
			return c, fmt.Errorf("APIKEYS_ARGON2_PARALLELISM: %w", err)
		}
		c.hash.Parallelism = uint8(n)
	}
	if err := c.hash.Validate(); err != nil {
		return c, fmt.Errorf("argon2id parameters: %w", err)
	}
	c.flushInterval = time.Second
	if v := getenv("APIKEYS_USAGE_FLUSH_INTERVAL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return c, fmt.Errorf("APIKEYS_USAGE_FLUSH_INTERVAL: want a positive duration such as 1s, got %q", v)
		}
		c.flushInterval = d
	}
	if v := getenv("APIKEYS_CACHE_ENTRIES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10_000_000 {
			return c, fmt.Errorf("APIKEYS_CACHE_ENTRIES: want 1 to 10000000 keys, got %q", v)
		}
		c.cacheEntries = n
	}
	durations := []struct {
		name     string
		dst      *time.Duration
		def, max time.Duration
	}{
		{"APIKEYS_DB_TIMEOUT", &c.dbTimeout, 3 * time.Second, time.Minute},
		{"APIKEYS_REQUEST_TIMEOUT", &c.requestTimeout, server.DefaultRequestTimeout, 10 * time.Minute},
		{"APIKEYS_IDLE_TIMEOUT", &c.idleTimeout, 30 * time.Second, time.Hour},
	}
	for _, d := range durations {
		*d.dst = d.def
		if v := getenv(d.name); v != "" {
			x, err := time.ParseDuration(v)
			if err != nil || x < 100*time.Millisecond || x > d.max {
				return c, fmt.Errorf("%s: want a duration from 100ms to %s such as %s, got %q", d.name, d.max, d.def, v)
			}
			*d.dst = x
		}
	}
	if c.dbTimeout >= c.requestTimeout {
		return c, fmt.Errorf("APIKEYS_DB_TIMEOUT (%s) must be shorter than APIKEYS_REQUEST_TIMEOUT (%s)", c.dbTimeout, c.requestTimeout)
	}
	c.dbMaxConns = store.DefaultMaxConns()
	if v := getenv("APIKEYS_DB_MAX_CONNS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return c, fmt.Errorf("APIKEYS_DB_MAX_CONNS: want 1 to 1000 connections, got %q", v)
		}
		c.dbMaxConns = n
	}
	c.maxConns = defaultMaxConns()
	if v := getenv("APIKEYS_MAX_CONNS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1_000_000 {
			return c, fmt.Errorf("APIKEYS_MAX_CONNS: want 1 to 1000000 connections, got %q", v)
		}
		c.maxConns = n
	}
	c.bodyBudget = server.DefaultBodyBudget
	if v := getenv("APIKEYS_BODY_BUDGET_MIB"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 65536 {
			return c, fmt.Errorf("APIKEYS_BODY_BUDGET_MIB: want 1 to 65536 MiB, got %q", v)
		}
		c.bodyBudget = int64(n) << 20
	}
	if v := getenv("APIKEYS_LOG_LEVEL"); v != "" {
		if err := c.logLevel.UnmarshalText([]byte(v)); err != nil {
			return c, fmt.Errorf("APIKEYS_LOG_LEVEL: %w", err)
		}
	}
	return c, nil
}

// serve starts the service and serves until ctx is cancelled, then shuts down gracefully:
// in-flight requests finish, recorded key usage is written, the database is closed.
func serve(ctx context.Context, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	lw := newLogWriter(stderr)
	defer lw.Close()
	log := slog.New(flushingHandler{slog.NewJSONHandler(lw, &slog.HandlerOptions{Level: cfg.logLevel}), lw})

	tuneGC(getenv)
	st, err := store.OpenWith(ctx, cfg.databaseURL, store.Options{Timeout: cfg.dbTimeout, MaxConns: cfg.dbMaxConns})
	if err != nil {
		return err
	}
	defer st.Close()
	svc := service.New(service.Config{
		Store: st, AdminToken: cfg.adminToken, KeyPrefix: cfg.prefix,
		Hasher: keys.NewHasher(cfg.hash, 0, 0), Logger: log, UsageFlushInterval: cfg.flushInterval,
		Feed: st, CacheEntries: cfg.cacheEntries,
	})
	srv, err := server.New(server.Config{Service: svc, Spec: apikeys.OpenAPI, Logger: log,
		RequestTimeout: cfg.requestTimeout, BodyBudget: cfg.bodyBudget, DB: st.DB()})
	if err != nil {
		svc.Close(context.Background())
		return err
	}
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		svc.Close(context.Background())
		return err
	}
	ln = server.LimitConnections(ln, cfg.maxConns, spareConns)
	// A request's work ends at its deadline (requestTimeout), and nothing is committed
	// after it; the write timeout leaves 5 s beyond it to send the answer to what was.
	hs := &http.Server{
		Handler:           srv,
		ConnContext:       server.ConnContext,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       cfg.requestTimeout,
		WriteTimeout:      cfg.requestTimeout + 5*time.Second,
		IdleTimeout:       cfg.idleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("listening", "addr", ln.Addr().String(), "interfaces", interfaces(ln.Addr()), "database", dbKind(cfg.databaseURL))
	fmt.Fprintf(stdout, "apikeys listening on http://%s (%s)\n", ln.Addr(), interfaces(ln.Addr()))
	if cfg.generated {
		// Printed once, to standard output beside the address, so that a first run needs no
		// set-up; only once the listener is up, so that a run that fails to start (a port in
		// use, a database that refuses) prints no token for a server that never served. It is
		// not written to the structured log on standard error.
		fmt.Fprintf(stdout, "\nWARNING: APIKEYS_ADMIN_TOKEN is not set; generated an admin token for this run only:\n\n    %s\n\nSet APIKEYS_ADMIN_TOKEN to keep one across restarts.\n\n", cfg.adminToken)
	}

	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		svc.Close(context.Background())
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err = hs.Shutdown(sctx)
	if cerr := svc.Close(sctx); err == nil {
		err = cerr
	}
	return err
}

// Unless GOGC or GOMEMLIMIT say otherwise, the collector runs when the heap has grown by
// 400 % rather than 100 %, under a soft limit of 192 MiB. The service's live heap is small
// (the key cache, some 50 MB when full), and at the default the collector took about a
// third of the CPU of a verification served from the cache (BENCHMARKS.md); the limit keeps
// the larger pacing from growing the process past what a container would allow.
const (
	defaultGCPercent   = 400
	defaultMemoryLimit = 192 << 20
)

func tuneGC(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	if getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
}

// defaultMaxConns leaves, of the process's file descriptors, room for the spare
// connections, the database pool, the log and the files of SQLite: at most 1024.
func defaultMaxConns() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur > 1<<20 {
		return 1024
	}
	return max(16, min(1024, int(lim.Cur)-spareConns-128))
}

// healthcheck asks the local service's /readyz, for images that have no curl.
func healthcheck(ctx context.Context, getenv func(string) string) error {
	addr := getenv("APIKEYS_ADDR")
	if addr == "" {
		addr = ":8080"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("APIKEYS_ADDR: %w", err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/readyz", nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("not ready: %s", res.Status)
	}
	return nil
}

// interfaces says, for the start-up message, who can reach a listener on addr.
func interfaces(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	switch {
	case !ok:
		return addr.Network()
	case tcp.IP.IsUnspecified() && tcp.IP.To4() == nil:
		return "every interface, IPv4 and IPv6"
	case tcp.IP.IsUnspecified():
		return "every IPv4 interface"
	case tcp.IP.IsLoopback():
		return "this machine only"
	default:
		return "the interface with address " + tcp.IP.String()
	}
}

// dbName names the database as a person would find it, without a password: the SQLite
// file, or PostgreSQL's database, user, host and port.
func dbName(raw string) string {
	if dbKind(raw) == "sqlite" {
		return "SQLite database " + strings.TrimPrefix(strings.SplitN(raw, "?", 2)[0], "file:")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "PostgreSQL database (its URL does not parse)"
	}
	name := "PostgreSQL database " + strings.TrimPrefix(u.Path, "/")
	if u.User != nil && u.User.Username() != "" {
		name += " as " + u.User.Username()
	}
	if u.Host != "" {
		name += " on " + u.Host
	}
	return name
}

// dbKind names the database without its credentials, for the log.
func dbKind(url string) string {
	if strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://") {
		return "postgres"
	}
	return "sqlite"
}
