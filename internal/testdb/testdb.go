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
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
)

// SQLite is the engine name of the embedded SQLite database (driver "sqlite").
const SQLite = "sqlite"

// Postgres is the engine name of PostgreSQL (driver "postgres").
const Postgres = "postgres"

// DB describes one fresh database created for one test.
type DB struct {
	// Engine is the engine name, SQLite or Postgres.
	Engine string
	// URL is the data source name to pass to sql.Open with the engine's
	// driver: "file:/abs/path/test.db" for SQLite (without pragmas) and a
	// postgres:// URL for Postgres.
	URL string
}

// warnOnce makes Engines print its warning about a missing PostgreSQL once per process.
var warnOnce sync.Once

// PostgresURL returns the admin URL of the discovered PostgreSQL server, or ""
// when PostgreSQL is unavailable. Discovery runs once per process and its
// result is cached.
func PostgresURL() string {
	ensureDiscovered()
	return pgURL
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
		db := newSQLite(t)
		recordRan(engine)
		return db
	case Postgres:
		db := newPostgres(t)
		recordRan(engine)
		return db
	default:
		t.Fatalf("testdb: unknown engine %q (want %q or %q)", engine, SQLite, Postgres)
		return DB{}
	}
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
