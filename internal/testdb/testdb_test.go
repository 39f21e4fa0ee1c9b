package testdb

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func TestNewSQLite(t *testing.T) {
	db := New(t, SQLite)
	if db.Engine != SQLite {
		t.Fatalf("Engine = %q, want %q", db.Engine, SQLite)
	}
	path, ok := strings.CutPrefix(db.URL, "file:")
	if !ok || !filepath.IsAbs(path) || filepath.Base(path) != "test.db" {
		t.Fatalf("URL = %q, want file:/abs/dir/test.db", db.URL)
	}
	if _, err := os.Stat(filepath.Dir(path)); err != nil {
		t.Fatalf("directory of %s: %v", path, err)
	}
	conn, err := sql.Open("sqlite", db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec("INSERT INTO t (v) VALUES ('x')"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database file not created: %v", err)
	}
	if other := New(t, SQLite); other.URL == db.URL {
		t.Fatalf("two calls returned the same URL %q", db.URL)
	}
}

func TestEngines(t *testing.T) {
	engines := Engines(t)
	if len(engines) == 0 || engines[0] != SQLite {
		t.Fatalf("Engines = %v, want SQLite first", engines)
	}
	hasPG := len(engines) == 2 && engines[1] == Postgres
	if hasPG != (PostgresURL() != "") {
		t.Fatalf("Engines = %v but PostgresURL() = %q", engines, PostgresURL())
	}
	t.Logf("engines: %v, PostgreSQL admin URL: %q", engines, redact(PostgresURL()))
}

// hasPostgres reports whether this run includes PostgreSQL; without it the
// PostgreSQL tests log and return (Engines has already failed the test under
// CI).
func hasPostgres(t *testing.T) bool {
	t.Helper()
	for _, e := range Engines(t) {
		if e == Postgres {
			return true
		}
	}
	t.Log("PostgreSQL not available; nothing to check here")
	return false
}

// databaseExists reports whether the discovered server has a database name.
func databaseExists(t *testing.T, name string) bool {
	t.Helper()
	admin, err := sql.Open("postgres", PostgresURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var n int
	if err := admin.QueryRow("SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

// openPG opens db and returns the connection and the database's name.
func openPG(t *testing.T, db DB) (*sql.DB, string) {
	t.Helper()
	if db.Engine != Postgres || !strings.HasPrefix(db.URL, "postgres://") {
		t.Fatalf("New(Postgres) = %+v", db)
	}
	conn, err := sql.Open("postgres", db.URL)
	if err != nil {
		t.Fatal(err)
	}
	var name string
	if err := conn.QueryRow("SELECT current_database()").Scan(&name); err != nil {
		t.Fatalf("connecting to %s: %v", redact(db.URL), err)
	}
	if !strings.HasPrefix(name, "apikeys_test_") || len(name) != len("apikeys_test_")+12 {
		t.Fatalf("database name %q, want apikeys_test_<12 hex>", name)
	}
	return conn, name
}

func TestNewPostgres(t *testing.T) {
	if !hasPostgres(t) {
		return
	}
	var first, second string
	t.Run("fresh", func(t *testing.T) {
		conn, name := openPG(t, New(t, Postgres))
		defer conn.Close()
		first = name
		var tables int
		if err := conn.QueryRow("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'").Scan(&tables); err != nil {
			t.Fatal(err)
		}
		if tables != 0 {
			t.Fatalf("new database has %d tables in public", tables)
		}
		if _, err := conn.Exec("CREATE TABLE t (id serial PRIMARY KEY)"); err != nil {
			t.Fatal(err)
		}
		if !databaseExists(t, name) {
			t.Fatalf("database %s not in pg_database", name)
		}

		// A second database is distinct and does not see the first one's table.
		conn2, name2 := openPG(t, New(t, Postgres))
		defer conn2.Close()
		second = name2
		if name2 == name {
			t.Fatalf("two calls returned the same database %s", name)
		}
		var n int
		if err := conn2.QueryRow("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Fatalf("second database has %d tables", n)
		}
	})
	for _, name := range []string{first, second} {
		if name != "" && databaseExists(t, name) {
			t.Errorf("database %s still exists after the subtest's cleanup", name)
		}
	}

	// A connection still open when the cleanup runs must not keep the
	// database alive (DROP ... WITH (FORCE) or the terminate fallback).
	var leaked *sql.DB
	var leakedName string
	t.Run("open connection at cleanup", func(t *testing.T) {
		leaked, leakedName = openPG(t, New(t, Postgres))
		leaked.SetMaxIdleConns(1)
		if err := leaked.Ping(); err != nil {
			t.Fatal(err)
		}
	})
	if leaked != nil {
		defer leaked.Close()
	}
	if leakedName == "" || databaseExists(t, leakedName) {
		t.Errorf("database %q survived cleanup with an open connection", leakedName)
	}
}

func TestDropFallback(t *testing.T) {
	if !hasPostgres(t) {
		return
	}
	// Exercise the fallback path directly: drop with the plain statements
	// while a connection is open.
	db := New(t, Postgres)
	conn, name := openPG(t, db)
	defer conn.Close()
	admin, err := openAdmin()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx,
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", name); err != nil {
		t.Fatal(err)
	}
	if err := dropDatabase(ctx, admin, name); err != nil {
		t.Fatal(err)
	}
	if databaseExists(t, name) {
		t.Fatalf("database %s still exists", name)
	}
	// Dropping again (as the registered cleanup will) is not an error.
	if err := dropDatabase(ctx, admin, name); err != nil {
		t.Fatalf("second drop: %v", err)
	}
}

func TestDatabaseURL(t *testing.T) {
	for _, tc := range []struct{ admin, want string }{
		{"postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "postgres://postgres@127.0.0.1:5432/db1?sslmode=disable"},
		{"postgresql://u:p%40ss@db.example:6543/admin?sslmode=require", "postgres://u:p%40ss@db.example:6543/db1?sslmode=require"},
		{"postgres://127.0.0.1/test", "postgres://127.0.0.1/db1?sslmode=disable"},
	} {
		got, err := databaseURL(tc.admin, "db1")
		if err != nil || got != tc.want {
			t.Errorf("databaseURL(%q) = %q, %v; want %q", tc.admin, got, err, tc.want)
		}
	}
	if _, err := databaseURL("host=localhost dbname=x", "db1"); err == nil {
		t.Error("key=value DSN accepted, want an error")
	}
}

func TestSortByVersionDesc(t *testing.T) {
	in := []string{"/usr/lib/postgresql/9.6/bin", "/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/10/bin", "/usr/lib/postgresql/16/bin"}
	want := []string{"/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/10/bin", "/usr/lib/postgresql/9.6/bin"}
	if got := sortByVersionDesc(in); !reflect.DeepEqual(got, want) {
		t.Fatalf("sortByVersionDesc = %v, want %v", got, want)
	}
}

func TestDiscoverEnvUnreachable(t *testing.T) {
	t.Setenv(envURL, "postgres://nobody:secret@127.0.0.1:1/x?sslmode=disable")
	start := time.Now()
	u, c, reasons := discover()
	if c != nil {
		defer c.stop()
		t.Fatal("discover started a throwaway cluster although the env URL was set")
	}
	if u != "" {
		t.Fatalf("discover() = %q, want unavailable", u)
	}
	if took := time.Since(start); took > envPingTimeout+time.Second {
		t.Errorf("discover took %s", took)
	}
	msg := strings.Join(reasons, "\n")
	if !strings.Contains(msg, envURL) || strings.Contains(msg, "secret") {
		t.Fatalf("reason %q should name %s and hide the password", msg, envURL)
	}
	t.Logf("reason (after %s): %s", time.Since(start).Round(time.Millisecond), msg)
}

func TestDiscoverWithoutEnv(t *testing.T) {
	t.Setenv(envURL, "")
	u, c, reasons := discover()
	if c != nil {
		defer func() {
			if err := c.stop(); err != nil {
				t.Error(err)
			}
		}()
	}
	if u == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("no PostgreSQL found:\n%s", strings.Join(reasons, "\n"))
		}
		t.Logf("no PostgreSQL found:\n%s", strings.Join(reasons, "\n"))
		return
	}
	t.Logf("discovered %s (throwaway cluster: %v; skipped: %v)", redact(u), c != nil, reasons)
	if err := probe(u, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestThrowawayCluster(t *testing.T) {
	if _, _, err := findPGBin(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set but the throwaway cluster cannot be tested: %v", err)
		}
		t.Logf("throwaway cluster not testable here: %v", err)
		return
	}
	start := time.Now()
	c, err := startThrowaway()
	if err != nil {
		t.Fatalf("startThrowaway: %v", err)
	}
	started := time.Since(start)
	stopped := false
	defer func() {
		if !stopped {
			c.stop()
		}
	}()
	if !strings.Contains(filepath.Base(c.base), "apikeys-pg-") {
		t.Errorf("cluster directory %s, want apikeys-pg-*", c.base)
	}

	conn, err := sql.Open("postgres", c.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var version string
	if err := conn.QueryRow("SHOW server_version").Scan(&version); err != nil {
		t.Fatalf("querying throwaway cluster at %s: %v", c.url, err)
	}
	var fsync string
	if err := conn.QueryRow("SHOW fsync").Scan(&fsync); err != nil || fsync != "off" {
		t.Errorf("fsync = %q, %v; want off", fsync, err)
	}
	// The cluster must be usable for New's work: create and drop a database.
	if _, err := conn.Exec(`CREATE DATABASE "apikeys_test_throwaway" TEMPLATE template0`); err != nil {
		t.Fatal(err)
	}
	if err := dropDatabase(context.Background(), conn, "apikeys_test_throwaway"); err != nil {
		t.Fatal(err)
	}
	conn.Close()

	pid := readPostmasterPID(filepath.Join(c.data, "postmaster.pid"))
	if pid <= 0 {
		t.Fatal("no postmaster.pid in the running cluster")
	}
	stopStart := time.Now()
	if err := c.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	stopped = true
	t.Logf("throwaway PostgreSQL %s on port %d: started in %s, stopped in %s",
		version, c.port, started.Round(time.Millisecond), time.Since(stopStart).Round(time.Millisecond))

	if _, err := os.Stat(c.base); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cluster directory %s still exists after stop (stat: %v)", c.base, err)
	}
	// pg_ctl returns once postmaster.pid is gone; the process itself may
	// take a moment longer to exit and be reaped by init.
	for deadline := time.Now().Add(10 * time.Second); syscall.Kill(pid, 0) == nil; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("postmaster %d still running 10s after stop", pid)
			break
		}
	}
	if c.watchdog.ProcessState == nil {
		t.Error("watchdog not reaped after stop")
	}
	if err := probe(c.url, 2*time.Second); err == nil {
		t.Error("cluster still accepts connections after stop")
	}
}

func TestDiscoverFallsBackToThrowaway(t *testing.T) {
	if _, _, err := findPGBin(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set but the throwaway cluster cannot be tested: %v", err)
		}
		t.Logf("throwaway cluster not testable here: %v", err)
		return
	}
	t.Setenv(envURL, "")
	saved := localCandidates
	localCandidates = []string{"postgres://postgres@127.0.0.1:1/postgres?sslmode=disable"}
	defer func() { localCandidates = saved }()

	u, c, reasons := discover()
	if c == nil {
		t.Fatalf("discover() = %q without a throwaway cluster; reasons:\n%s", u, strings.Join(reasons, "\n"))
	}
	defer func() {
		if err := c.stop(); err != nil {
			t.Error(err)
		}
		if _, err := os.Stat(c.base); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cluster directory %s still exists after stop", c.base)
		}
	}()
	if u != c.url {
		t.Fatalf("discover() = %q, cluster URL %q", u, c.url)
	}
	if err := probe(u, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}
