package testdb

// PostgreSQL: discovery of a server, probing it, and creating and dropping the
// per-test databases on it.

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lib/pq" // PostgreSQL driver "postgres"
)

// envURL is the environment variable that points the tests at a specific
// PostgreSQL server; its role must be allowed to create databases.
const envURL = "APIKEYS_TEST_DATABASE_URL"

// Timeouts used by discovery and by New.
const (
	envPingTimeout   = 5 * time.Second
	localPingTimeout = 3 * time.Second
	ddlTimeout       = 30 * time.Second
)

// localCandidates are the well-known local servers probed by discovery step 2.
var localCandidates = []string{
	"postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
	"postgres://127.0.0.1:5432/test?sslmode=disable",
}

// Process-wide discovery state.
var (
	discoverOnce sync.Once
	pgURL        string   // admin URL of the discovered server, "" if none
	pgReasons    []string // why PostgreSQL is unavailable, one entry per step
	pgCluster    *cluster // the throwaway cluster, if discovery started one

	adminMu sync.Mutex
	adminDB *sql.DB // lazily opened pool on pgURL, used by New and its cleanups
)

// ensureDiscovered runs PostgreSQL discovery once per process.
func ensureDiscovered() {
	discoverOnce.Do(func() {
		pgURL, pgCluster, pgReasons = discover()
	})
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
