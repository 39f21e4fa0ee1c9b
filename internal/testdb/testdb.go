// Package testdb hands out fresh, throwaway databases to tests so that the
// same test code can run against both SQLite and PostgreSQL.
//
// Typical use:
//
//	func TestMain(m *testing.M) { os.Exit(testdb.Main(m)) }
//
//	func TestSomething(t *testing.T) {
//		for _, engine := range testdb.Engines(t) {
//			t.Run(engine, func(t *testing.T) {
//				db := testdb.New(t, engine)
//				// open db.URL with the engine's driver ...
//			})
//		}
//	}
//
// Every package that uses testdb MUST route its TestMain through [Main]: when
// no PostgreSQL server is reachable, testdb starts a private throwaway cluster
// and Main is what stops it and removes its directory once the tests are done.
// (A watchdog process also removes the cluster if the test binary dies without
// reaching the end of Main, e.g. after a panic or a timeout, but Main is the
// supported, prompt path.)
//
// PostgreSQL is discovered once per process, in this order:
//
//  1. APIKEYS_TEST_DATABASE_URL, if set. It must be reachable within 5s and
//     its role must be able to create databases; otherwise PostgreSQL counts
//     as unavailable and no other step is tried.
//  2. postgres://postgres@127.0.0.1:5432/postgres and then
//     postgres://127.0.0.1:5432/test (as the current OS user): the first that
//     answers within 3s with a role that may create databases.
//  3. A throwaway cluster built with initdb and pg_ctl (found on PATH or under
//     /usr/lib/postgresql/*/bin) in a temporary directory on a free port. When
//     running as root the cluster runs as the "postgres" OS user.
//
// When none of these works, [Engines] fails the test if the CI environment
// variable is set and otherwise prints a loud warning once and returns only
// SQLite.
package testdb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lib/pq"    // PostgreSQL driver "postgres"
	_ "modernc.org/sqlite" // SQLite driver "sqlite"
)

// SQLite is the engine name of the embedded SQLite database (driver "sqlite").
const SQLite = "sqlite"

// Postgres is the engine name of PostgreSQL (driver "postgres").
const Postgres = "postgres"

// envURL is the environment variable that points the tests at a specific
// PostgreSQL server; its role must be allowed to create databases.
const envURL = "APIKEYS_TEST_DATABASE_URL"

// Timeouts used by discovery and by New.
const (
	envPingTimeout   = 5 * time.Second
	localPingTimeout = 3 * time.Second
	clusterTimeout   = 60 * time.Second
	ddlTimeout       = 30 * time.Second
)

// localCandidates are the well-known local servers probed by discovery step 2.
var localCandidates = []string{
	"postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
	"postgres://127.0.0.1:5432/test?sslmode=disable",
}

// DB describes one fresh database created for one test.
type DB struct {
	// Engine is the engine name, SQLite or Postgres.
	Engine string
	// URL is the data source name to pass to sql.Open with the engine's
	// driver: "file:/abs/path/test.db" for SQLite (without pragmas) and a
	// postgres:// URL for Postgres.
	URL string
}

// Process-wide discovery state.
var (
	discoverOnce sync.Once
	pgURL        string   // admin URL of the discovered server, "" if none
	pgReasons    []string // why PostgreSQL is unavailable, one entry per step
	pgCluster    *cluster // the throwaway cluster, if discovery started one

	adminMu sync.Mutex
	adminDB *sql.DB // lazily opened pool on pgURL, used by New and its cleanups

	warnOnce sync.Once
)

// ensureDiscovered runs PostgreSQL discovery once per process.
func ensureDiscovered() {
	discoverOnce.Do(func() {
		pgURL, pgCluster, pgReasons = discover()
	})
}

// PostgresURL returns the admin URL of the discovered PostgreSQL server, or ""
// when PostgreSQL is unavailable. Discovery runs once per process and its
// result is cached.
func PostgresURL() string {
	ensureDiscovered()
	return pgURL
}

// unavailableReason explains, one line per discovery step, why PostgreSQL is
// unavailable.
func unavailableReason() string {
	ensureDiscovered()
	if len(pgReasons) == 0 {
		return "no reason recorded"
	}
	return "  - " + strings.Join(pgReasons, "\n  - ")
}

// noticeEnv names a file that receives the reason PostgreSQL was unavailable, so that
// a wrapper such as `make test` can report the SQLite-only run after go test ends.
const noticeEnv = "APIKEYS_TEST_NOTICE_FILE"

// Engines returns the engines a test should run against: always SQLite, and
// Postgres as well when a PostgreSQL server is available. When PostgreSQL is
// unavailable and the CI environment variable is non-empty, Engines fails the
// test with t.Fatalf; outside CI it prints a loud warning to stderr once per
// process and returns only SQLite.
func Engines(t testing.TB) []string {
	t.Helper()
	if PostgresURL() != "" {
		return []string{SQLite, Postgres}
	}
	reason := unavailableReason()
	if os.Getenv("CI") != "" {
		t.Fatalf("testdb: PostgreSQL is required when CI is set, but it is not available "+
			"(set %s or install PostgreSQL with initdb/pg_ctl):\n%s", envURL, reason)
		return nil
	}
	warnOnce.Do(func() {
		msg := "!!! PostgreSQL not available: running the SQLite half only — set " + envURL +
			" or install PostgreSQL (initdb/pg_ctl) !!!"
		bar := strings.Repeat("!", len([]rune(msg)))
		fmt.Fprintf(os.Stderr, "\n%s\n%s\n%s\n%s\n%s\n\n", bar, msg, bar, reason, bar)
		// go test hides a passing package's stderr; the Makefile names a file to
		// collect the reason in and prints it after the run.
		if path := os.Getenv(noticeEnv); path != "" {
			if err := os.WriteFile(path, []byte(reason+"\n"), 0o644); err != nil {
				fmt.Fprintf(os.Stderr, "testdb: write %s: %v\n", path, err)
			}
		}
	})
	t.Logf("testdb: PostgreSQL not available, running SQLite only:\n%s", reason)
	return []string{SQLite}
}

// New creates a fresh, empty database of the given engine for this test and
// registers a t.Cleanup that removes it. For SQLite the URL is
// "file:" + an absolute path inside t.TempDir() (callers add their own
// pragmas). For Postgres, New creates a database named apikeys_test_<random>
// on the discovered server and returns a postgres:// URL for it with the
// server's host, port and credentials (sslmode=disable unless the discovered
// URL sets sslmode); the cleanup drops it with DROP DATABASE ... WITH (FORCE),
// so connections the test left open do not keep it alive. New fails the test
// if the engine is unknown or unavailable.
func New(t testing.TB, engine string) DB {
	t.Helper()
	switch engine {
	case SQLite:
		return DB{Engine: SQLite, URL: "file:" + filepath.Join(t.TempDir(), "test.db")}
	case Postgres:
		return newPostgres(t)
	default:
		t.Fatalf("testdb: unknown engine %q (want %q or %q)", engine, SQLite, Postgres)
		return DB{}
	}
}

// newPostgres implements New for the Postgres engine.
func newPostgres(t testing.TB) DB {
	t.Helper()
	if PostgresURL() == "" {
		t.Fatalf("testdb: PostgreSQL is not available:\n%s", unavailableReason())
		return DB{}
	}
	admin, err := openAdmin()
	if err != nil {
		t.Fatalf("testdb: %v", err)
		return DB{}
	}
	name, err := randomName()
	if err != nil {
		t.Fatalf("testdb: %v", err)
		return DB{}
	}
	u, err := databaseURL(pgURL, name)
	if err != nil {
		t.Fatalf("testdb: %v", err)
		return DB{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), ddlTimeout)
	defer cancel()
	// template0 is never connected to and never modified, so the new
	// database is guaranteed empty and creation cannot fail because someone
	// is connected to the template.
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+pq.QuoteIdentifier(name)+" TEMPLATE template0"); err != nil {
		t.Fatalf("testdb: CREATE DATABASE %s on %s: %v", name, redact(pgURL), err)
		return DB{}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), ddlTimeout)
		defer cancel()
		if err := dropDatabase(ctx, admin, name); err != nil {
			t.Errorf("testdb: dropping database %s: %v", name, err)
		}
	})
	return DB{Engine: Postgres, URL: u}
}

// openAdmin returns the shared connection pool on the discovered admin URL.
func openAdmin() (*sql.DB, error) {
	adminMu.Lock()
	defer adminMu.Unlock()
	if adminDB != nil {
		return adminDB, nil
	}
	db, err := sql.Open("postgres", pgURL)
	if err != nil {
		return nil, fmt.Errorf("opening admin connection to %s: %w", redact(pgURL), err)
	}
	db.SetMaxIdleConns(2)
	db.SetConnMaxIdleTime(time.Minute)
	adminDB = db
	return db, nil
}

// randomName returns a fresh database name of the form apikeys_test_<12 hex>.
func randomName() (string, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generating database name: %w", err)
	}
	return "apikeys_test_" + hex.EncodeToString(b[:]), nil
}

// databaseURL returns admin with its database replaced by name. It keeps
// host, port, user, password and other parameters, and sets sslmode=disable
// unless admin already chooses an sslmode.
func databaseURL(admin, name string) (string, error) {
	u, err := url.Parse(admin)
	if err != nil {
		return "", fmt.Errorf("parsing PostgreSQL URL %s: %w", redact(admin), err)
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return "", fmt.Errorf("PostgreSQL URL %s: want scheme postgres:// or postgresql://", redact(admin))
	}
	u.Scheme = "postgres"
	u.Path = "/" + name
	u.RawPath = ""
	q := u.Query()
	q.Del("dbname")
	if q.Get("sslmode") == "" {
		q.Set("sslmode", "disable")
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// dropDatabase drops the database name, terminating its connections. It uses
// DROP DATABASE ... WITH (FORCE) (PostgreSQL 13+) and falls back to
// pg_terminate_backend followed by a plain DROP DATABASE.
func dropDatabase(ctx context.Context, admin *sql.DB, name string) error {
	q := pq.QuoteIdentifier(name)
	_, forceErr := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+q+" WITH (FORCE)")
	if forceErr == nil {
		return nil
	}
	var err error
	for attempt := 0; attempt < 10; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("WITH (FORCE): %v; fallback: %w", forceErr, errors.Join(err, ctx.Err()))
			case <-time.After(200 * time.Millisecond):
			}
		}
		_, err = admin.ExecContext(ctx,
			"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", name)
		if err != nil {
			continue
		}
		if _, err = admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+q); err == nil {
			return nil
		}
	}
	return fmt.Errorf("WITH (FORCE): %v; fallback: %w", forceErr, err)
}

// Main runs the tests of a package and then tears down whatever testdb set up
// for the process: the shared admin connection pool and, if discovery had to
// start one, the throwaway PostgreSQL cluster (stopped and its directory
// removed). Every package that uses testdb must call it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(testdb.Main(m)) }
//
// It returns m.Run's exit code, or 1 if the tests passed but teardown failed.
func Main(m *testing.M) int {
	code := m.Run()
	if err := teardown(); err != nil {
		fmt.Fprintf(os.Stderr, "testdb: teardown: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// teardown closes the admin pool and stops the throwaway cluster, if any.
func teardown() error {
	var errs []error
	adminMu.Lock()
	if adminDB != nil {
		errs = append(errs, adminDB.Close())
		adminDB = nil
	}
	adminMu.Unlock()
	if pgCluster != nil {
		errs = append(errs, pgCluster.stop())
		pgCluster = nil
	}
	return errors.Join(errs...)
}

// discover runs the discovery steps and returns the admin URL of a usable
// server (and the throwaway cluster when step 3 started one), or "" and the
// reasons each step failed.
func discover() (string, *cluster, []string) {
	if env := os.Getenv(envURL); env != "" {
		if err := probe(env, envPingTimeout); err != nil {
			return "", nil, []string{fmt.Sprintf("%s=%s is set but unusable: %v", envURL, redact(env), err)}
		}
		return env, nil, nil
	}
	var reasons []string
	for _, candidate := range localCandidates {
		err := probe(candidate, localPingTimeout)
		if err == nil {
			return candidate, nil, nil
		}
		reasons = append(reasons, fmt.Sprintf("%s: %v", redact(candidate), err))
	}
	c, err := startThrowaway()
	if err != nil {
		return "", nil, append(reasons, fmt.Sprintf("throwaway cluster: %v", err))
	}
	return c.url, c, nil
}

// probe checks that the server at rawURL answers within timeout and that its
// role may create databases.
func probe(rawURL string, timeout time.Duration) error {
	if _, err := databaseURL(rawURL, "x"); err != nil {
		return err
	}
	db, err := sql.Open("postgres", rawURL)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		return fmt.Errorf("ping (timeout %s): %w", timeout, err)
	}
	var can sql.NullBool
	err = db.QueryRowContext(ctx,
		"SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&can)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return errors.New("current role not found in pg_roles")
	case err != nil:
		return fmt.Errorf("checking CREATEDB privilege: %w", err)
	case !can.Bool:
		return errors.New("connected, but the role may not CREATE DATABASE (needs CREATEDB or SUPERUSER)")
	}
	return nil
}

// redact hides the password of a URL for messages.
func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "<unparsable URL>"
	}
	return u.Redacted()
}

// cluster is a throwaway PostgreSQL cluster started by startThrowaway.
type cluster struct {
	base  string // temporary directory holding everything below
	data  string // data directory (base/data)
	port  int
	url   string // admin URL: postgres@127.0.0.1:port/postgres
	pgCtl string // absolute path of pg_ctl
	as    runAs

	watchdog     *exec.Cmd // cleans up if the process dies before stop
	watchdogPipe *os.File  // write end of the watchdog's stdin; EOF = we died

	stopOnce sync.Once
	stopErr  error
}

// runAs runs commands either directly or, when the test runs as root, as the
// postgres OS user (initdb and postgres refuse to run as root).
type runAs struct {
	runuser string // path of runuser, if commands go through it
	su      string // path of su, if commands go through it instead
}

// argv returns the argument vector that runs name with args.
func (r runAs) argv(name string, args ...string) []string {
	switch {
	case r.runuser != "":
		return append([]string{r.runuser, "-u", "postgres", "--", name}, args...)
	case r.su != "":
		return []string{r.su, "postgres", "-s", "/bin/sh", "-c", shellJoin(append([]string{name}, args...))}
	default:
		return append([]string{name}, args...)
	}
}

// shellQuote quotes s for POSIX sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// shellJoin quotes and joins argv for POSIX sh.
func shellJoin(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}

// run runs a command of the cluster with a timeout and returns its output in
// the error when it fails.
func (c *cluster) run(timeout time.Duration, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	argv := c.as.argv(name, args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = c.base
	// A process group of its own keeps a ^C aimed at the test from reaching
	// the server; the watchdog cleans up instead.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, tail(string(out), 2000))
	}
	return nil
}

// tail returns at most the last n bytes of s, trimmed.
func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		s = "..." + s[len(s)-n:]
	}
	return s
}

// startThrowaway creates and starts a private PostgreSQL cluster in a new
// temporary directory and returns it once it accepts connections. The
// caller must call stop; a watchdog process also stops it and removes its
// directory if this process dies first.
func startThrowaway() (_ *cluster, err error) {
	initdb, pgCtl, err := findPGBin()
	if err != nil {
		return nil, err
	}
	var as runAs
	var pgUser *user.User
	if os.Geteuid() == 0 {
		pgUser, err = user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root, so initdb must run as the postgres OS user, but looking it up failed: %w", err)
		}
		if p, lerr := lookPath("runuser", "/usr/sbin", "/sbin"); lerr == nil {
			as.runuser = p
		} else if p, lerr := lookPath("su", "/bin", "/usr/bin"); lerr == nil {
			as.su = p
		} else {
			return nil, errors.New("running as root, so initdb must run as the postgres OS user, but neither runuser nor su was found")
		}
	}

	base, err := os.MkdirTemp("", "apikeys-pg-*")
	if err != nil {
		return nil, err
	}
	c := &cluster{base: base, data: filepath.Join(base, "data"), pgCtl: pgCtl, as: as}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.stop())
		}
	}()
	// Start the watchdog before anything that could leave state behind.
	if err := c.startWatchdog(); err != nil {
		return nil, err
	}
	if pgUser != nil {
		if err := chownTree(base, pgUser); err != nil {
			return nil, fmt.Errorf("handing %s to the postgres OS user: %w", base, err)
		}
	}
	if err := c.run(clusterTimeout, initdb, "-D", c.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"); err != nil {
		return nil, err
	}
	// The free port may be taken by someone else before the server binds
	// it, so try a few.
	var startErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
			port, c.base)
		startErr = c.run(clusterTimeout, pgCtl, "start", "-D", c.data, "-o", opts, "-w", "-t", "60", "-l", filepath.Join(c.base, "log"))
		if startErr == nil {
			c.port = port
			break
		}
		if b, rerr := os.ReadFile(filepath.Join(c.base, "log")); rerr == nil {
			startErr = fmt.Errorf("%w\nserver log:\n%s", startErr, tail(string(b), 2000))
		}
	}
	if startErr != nil {
		return nil, startErr
	}
	c.url = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port)
	if err := probe(c.url, 10*time.Second); err != nil {
		return nil, fmt.Errorf("throwaway cluster started but is unusable: %w", err)
	}
	return c, nil
}

// startWatchdog starts a detached shell that waits for EOF on a pipe whose
// write end only this process holds, then stops the cluster and removes its
// directory. EOF arrives when this process exits for any reason.
func (c *cluster) startWatchdog() error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	script := "read _ignored; " +
		shellJoin(c.as.argv(c.pgCtl, "stop", "-D", c.data, "-m", "immediate", "-w")) + " >/dev/null 2>&1; " +
		"rm -rf " + shellQuote(c.base)
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Stdin = r
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("starting cleanup watchdog: %w", err)
	}
	c.watchdog, c.watchdogPipe = cmd, w
	return nil
}

// stop stops the cluster immediately and removes its directory. It is safe
// to call more than once.
func (c *cluster) stop() error {
	c.stopOnce.Do(func() {
		// The watchdog is only for when we die; we are alive, so retire it.
		if c.watchdog != nil {
			_ = c.watchdog.Process.Kill()
			_ = c.watchdog.Wait()
			_ = c.watchdogPipe.Close()
		}
		var errs []error
		pidFile := filepath.Join(c.data, "postmaster.pid")
		if _, err := os.Stat(pidFile); err == nil {
			if err := c.run(clusterTimeout, c.pgCtl, "stop", "-D", c.data, "-m", "immediate", "-w"); err != nil {
				errs = append(errs, err)
				// Last resort: kill the postmaster we started, by its pid.
				if pid := readPostmasterPID(pidFile); pid > 0 {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		if err := os.RemoveAll(c.base); err != nil {
			errs = append(errs, err)
		}
		c.stopErr = errors.Join(errs...)
	})
	return c.stopErr
}

// readPostmasterPID returns the pid in the first line of postmaster.pid, or 0.
func readPostmasterPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		return 0
	}
	return pid
}

// chownTree hands the directory tree at root to u.
func chownTree(root string, u *user.User) error {
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return err
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return err
	}
	return filepath.WalkDir(root, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// lookPath finds an executable on PATH or, failing that, in extra dirs.
func lookPath(name string, extra ...string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return filepath.Abs(p)
	}
	for _, d := range extra {
		p := filepath.Join(d, name)
		if isExecutable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found on PATH or in %s", name, strings.Join(extra, ", "))
}

// isExecutable reports whether path is a regular file with an execute bit.
func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// pgLibGlob is where Debian-style packages install PostgreSQL server binaries.
var pgLibGlob = "/usr/lib/postgresql/*/bin"

// findPGBin finds initdb and pg_ctl: both on PATH, or else in the
// highest-versioned /usr/lib/postgresql/*/bin that has both.
func findPGBin() (initdb, pgCtl string, err error) {
	i, ierr := exec.LookPath("initdb")
	p, perr := exec.LookPath("pg_ctl")
	if ierr == nil && perr == nil {
		if i, ierr = filepath.Abs(i); ierr == nil {
			if p, perr = filepath.Abs(p); perr == nil {
				return i, p, nil
			}
		}
	}
	dirs, _ := filepath.Glob(pgLibGlob)
	for _, d := range sortByVersionDesc(dirs) {
		i, p := filepath.Join(d, "initdb"), filepath.Join(d, "pg_ctl")
		if isExecutable(i) && isExecutable(p) {
			return i, p, nil
		}
	}
	return "", "", fmt.Errorf("initdb and pg_ctl not found on PATH or in %s", pgLibGlob)
}

// sortByVersionDesc orders .../<version>/bin directories from the highest
// version to the lowest, comparing versions numerically ("9.6" < "15").
func sortByVersionDesc(dirs []string) []string {
	version := func(d string) []int {
		var v []int
		for _, f := range strings.Split(filepath.Base(filepath.Dir(d)), ".") {
			n, err := strconv.Atoi(f)
			if err != nil {
				n = -1
			}
			v = append(v, n)
		}
		return v
	}
	out := append([]string(nil), dirs...)
	sort.SliceStable(out, func(a, b int) bool {
		va, vb := version(out[a]), version(out[b])
		for k := 0; k < len(va) && k < len(vb); k++ {
			if va[k] != vb[k] {
				return va[k] > vb[k]
			}
		}
		return len(va) > len(vb)
	})
	return out
}
