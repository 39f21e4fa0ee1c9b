// Package store keeps API keys and their subjects in PostgreSQL or SQLite through sqlx.
//
// Store implements apikeys.KeyStore. Both databases run the same queries (written with '?'
// placeholders and rebound per driver) and the same conformance suite, store/storetest.
// Driver errors never leave this package as such: they are translated into *apikeys.Error
// (ENOTFOUND, ECONFLICT, EINVALID), and anything else is an internal error whose message is
// for logs only.
//
// Store also implements apikeys.ChangeFeed. Every write through a Store is reported to the
// Store's watchers after it commits and before the write returns; on PostgreSQL the writing
// transaction also sends NOTIFY apikeys_changes, and Watch keeps a LISTEN connection, so
// every process over the database hears every change. SQLite has no such channel: the feed
// of a SQLite Store is in memory, so a SQLite database must be used by one process (one
// Store) only; a second process writing to it would change keys unseen by the first one's
// caches.
package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/qs/apikeys"
)

// Store is a handle on the database, the service's apikeys.KeyStore in production. It is
// safe for concurrent use.
type Store struct {
	db      *sqlx.DB
	dialect dialect
	dsn     string // PostgreSQL: the URL the pool dials, from which Watch derives its own
	timeout time.Duration
	feed    feed // the watchers of this Store and the commits being reported to them

	life    context.Context // ends when Close is called, ending every Watch
	endLife context.CancelFunc
}

type dialect int

const (
	postgres dialect = iota
	sqliteDialect
)

// Store is the KeyStore of the use cases; this fails to compile when the two drift apart.
var _ apikeys.KeyStore = (*Store)(nil)

// Store is the change feed of the verifier's cache.
var _ apikeys.ChangeFeed = (*Store)(nil)

var bindOnce sync.Once

// Open connects to the database named by dsn and applies pending migrations.
// A dsn starting with postgres:// or postgresql:// selects PostgreSQL; anything else is a
// SQLite file path or a "file:" URI, whose directory is created if needed.
//
// On PostgreSQL, parameters are sent with the query (binary_parameters=yes), so that a
// query with arguments takes one round trip instead of two (prepare, then execute); an
// explicit binary_parameters in the URL is kept.
func Open(ctx context.Context, dsn string) (*Store, error) {
	return OpenWith(ctx, dsn, Options{})
}

// OpenWith is Open with options. Migrations run on a pool of their own, without the
// per-call bounds (an index built on a large table may take minutes), closed before
// OpenWith returns.
func OpenWith(ctx context.Context, dsn string, opts Options) (*Store, error) {
	// sqlx does not know modernc's driver name; teach it once.
	bindOnce.Do(func() { sqlx.BindDriver("sqlite", sqlx.QUESTION) })
	opts = opts.withDefaults()

	s := &Store{timeout: opts.Timeout}
	var migrator *sqlx.DB
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		pdsn, err := postgresDSN(dsn, opts.Timeout)
		if err != nil {
			return nil, err
		}
		connector, err := pq.NewConnector(pdsn)
		if err != nil {
			return nil, errors.New("postgres: the database URL is not valid")
		}
		connector.Dialer(newDeadlineDialer(opts.Timeout))
		s.db = sqlx.NewDb(sql.OpenDB(connector), "postgres")
		s.db.SetMaxOpenConns(opts.MaxConns)
		s.db.SetMaxIdleConns(opts.MaxConns)
		s.dialect, s.dsn = postgres, pdsn
		if migrator, err = sqlx.Open("postgres", dsn); err != nil {
			s.db.Close()
			return nil, errors.New("postgres: the database URL is not valid")
		}
		migrator.SetMaxOpenConns(1)
	} else {
		sdsn, err := sqliteDSN(dsn, opts.Timeout)
		if err != nil {
			return nil, fmt.Errorf("open database: %w", err)
		}
		if s.db, err = sqlx.Open("sqlite", sdsn); err != nil {
			return nil, fmt.Errorf("open database: %w", err)
		}
		// SQLite has one writer; a small pool keeps readers concurrent under WAL.
		s.db.SetMaxOpenConns(8)
		s.dialect, migrator = sqliteDialect, s.db
	}
	s.db.SetConnMaxIdleTime(5 * time.Minute)
	s.life, s.endLife = context.WithCancel(context.Background())
	err := (&Store{db: migrator, dialect: s.dialect}).migrate(ctx)
	if migrator != s.db {
		migrator.Close()
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// bound gives a database call the Store's timeout, within ctx's own deadline.
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

// postgresDSN sets the options this package relies on in a postgres:// URL, keeping any the
// URL sets itself.
func postgresDSN(dsn string, timeout time.Duration) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		// url's message quotes the URL, password included.
		return "", errors.New("postgres: the database URL cannot be parsed")
	}
	q := u.Query()
	if !q.Has("binary_parameters") {
		// One round trip per query with arguments (Parse, Bind, Execute, Sync together)
		// instead of preparing first. It changes only how []byte arguments are sent (as
		// binary); this package sends strings, numbers and NULLs.
		q.Set("binary_parameters", "yes")
	}
	serverTimeouts(q, timeout)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// sqliteDSN turns a path or file: URI into a modernc DSN with the pragmas every
// connection needs (pragmas are per connection, so they must live in the DSN).
func sqliteDSN(dsn string, timeout time.Duration) (string, error) {
	dsn = strings.TrimPrefix(dsn, "sqlite://")
	path, query, _ := strings.Cut(strings.TrimPrefix(dsn, "file:"), "?")
	if path == "" || path == ":memory:" {
		return "", fmt.Errorf("sqlite: a file path is required, got %q", dsn)
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", fmt.Errorf("sqlite: create %s: %w", dir, err)
		}
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return "", fmt.Errorf("sqlite: bad options in %q: %w", dsn, err)
	}
	busy := fmt.Sprintf("busy_timeout(%d)", timeout.Milliseconds())
	for _, p := range []string{"foreign_keys(1)", busy, "journal_mode(WAL)", "synchronous(NORMAL)"} {
		q.Add("_pragma", p)
	}
	// Writers take the lock at BEGIN, so read-then-write transactions never deadlock.
	q.Set("_txlock", "immediate")
	return "file:" + path + "?" + q.Encode(), nil
}

// Close ends every Watch on the Store and releases the connection pool.
func (s *Store) Close() error {
	s.endLife()
	return s.db.Close()
}

// DB returns the Store's connection pool, for its statistics (sql.DB.Stats, which metrics
// report). Queries go through the Store's methods, which bound and translate them.
func (s *Store) DB() *sql.DB { return s.db.DB }

// Ping reports whether the database answers.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := s.db.PingContext(ctx); err != nil {
		return s.translate(err)
	}
	var one int
	return s.translate(s.db.GetContext(ctx, &one, "SELECT 1"))
}

//go:embed migrations
var migrations embed.FS

// migrate applies, in order and each in its own transaction, the embedded migrations the
// database has not seen. On PostgreSQL an advisory lock keeps replicas that start together
// from racing.
func (s *Store) migrate(ctx context.Context) error {
	dir := "migrations/postgres"
	if s.dialect == sqliteDialect {
		dir = "migrations/sqlite"
	}
	names, err := fs.Glob(migrations, dir+"/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		version := filepath.Base(name)
		err := s.inTx(ctx, func(tx *sqlx.Tx) error {
			if s.dialect == postgres {
				if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(727274)"); err != nil {
					return err
				}
			}
			// Inside the lock, so that replicas starting together do not race to create it.
			if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
				version TEXT PRIMARY KEY, applied_at TEXT NOT NULL)`); err != nil {
				return err
			}
			var n int
			if err := tx.GetContext(ctx, &n, tx.Rebind("SELECT count(*) FROM schema_migrations WHERE version = ?"), version); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			body, err := migrations.ReadFile(name)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, string(body)); err != nil {
				return err
			}
			_, err = tx.ExecContext(ctx, tx.Rebind("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)"),
				version, formatTime(time.Now()))
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate %s: %w", version, err)
		}
	}
	return nil
}

// inTx runs fn in a transaction, committing when it returns nil.
func (s *Store) inTx(ctx context.Context, fn func(tx *sqlx.Tx) error) (err error) {
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return s.translate(err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if err = fn(tx); err != nil {
		return err
	}
	return s.translate(tx.Commit())
}

// translate turns driver errors into domain errors: sql.ErrNoRows is ENOTFOUND, a unique
// violation ECONFLICT and a PostgreSQL data exception EINVALID, each with a sentence of this
// package's own (never the driver's message, which may quote the offending value). Any other
// error is returned as it is, an internal failure for the caller to log.
func (s *Store) translate(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return apikeys.Errorf(apikeys.ENOTFOUND, "the requested record does not exist")
	}
	if unavailable(err) {
		return &apikeys.Error{Code: apikeys.EUNAVAILABLE, Detail: "the database is unavailable; retry shortly", Err: err}
	}
	var pqErr *pq.Error
	if errors.As(err, &pqErr) {
		switch {
		case pqErr.Code == "23505":
			return apikeys.Errorf(apikeys.ECONFLICT, "%s", conflictWhat(pqErr.Constraint))
		case pqErr.Code.Class() == "22":
			// A data exception (a value PostgreSQL cannot store, such as NUL in text)
			// is the client's input, which validation should have caught: never a 500.
			return apikeys.Errorf(apikeys.EINVALID, "a value in the request cannot be stored")
		}
	}
	var sqErr *sqlite.Error
	if errors.As(err, &sqErr) {
		switch sqErr.Code() {
		case sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE:
			what := "api_keys_pkey"
			if strings.Contains(sqErr.Error(), "lookup_handle") {
				what = "api_keys_lookup_handle_key"
			} else if strings.Contains(sqErr.Error(), "subjects.") {
				what = "subjects_pkey"
			}
			return apikeys.Errorf(apikeys.ECONFLICT, "%s", conflictWhat(what))
		}
	}
	return err
}

// unavailable reports whether err says the database could not serve the call now, though
// it may later: the call ran out of time, the connection failed or was refused, the server
// is starting or shutting down, out of connections or resources, or ended the statement on
// its timeouts, or a transaction lost a serialization race or a deadlock. The client's own
// cancellation (context.Canceled) is not the database's failure and stays as it is.
func unavailable(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false
	}
	var netErr net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, driver.ErrBadConn), errors.Is(err, sql.ErrConnDone),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.As(err, &netErr):
		return true
	}
	var pqErr *pq.Error
	if errors.As(err, &pqErr) {
		switch pqErr.Code.Class() {
		case "08", "53", "57": // connection exception, insufficient resources, operator intervention
			return true
		}
		switch pqErr.Code {
		case "40001", "40P01", "55P03": // serialization failure, deadlock, lock not available
			return true
		}
	}
	var sqErr *sqlite.Error
	if errors.As(err, &sqErr) {
		switch sqErr.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return true
		}
	}
	return false
}

// notFound is translate for the lookup of one row, whose ENOTFOUND says what was missing.
func (s *Store) notFound(err error, detail string) error {
	if errors.Is(err, sql.ErrNoRows) {
		return apikeys.Errorf(apikeys.ENOTFOUND, "%s", detail)
	}
	return s.translate(err)
}

// conflictWhat is the ECONFLICT sentence for the unique constraint a write violated.
func conflictWhat(constraint string) string {
	switch constraint {
	case "api_keys_pkey":
		return "a key with this id already exists"
	case "subjects_pkey":
		return "a subject with this id already exists"
	default:
		return "a key with this lookup handle already exists"
	}
}

// timeLayout is fixed-width so that SQLite's text timestamps compare in time order.
const timeLayout = "2006-01-02T15:04:05.000000Z"

// formatTime renders t for either database: PostgreSQL parses it into timestamptz, SQLite
// stores it as text. Precision is microseconds, PostgreSQL's.
func formatTime(t time.Time) string { return t.UTC().Truncate(time.Microsecond).Format(timeLayout) }

func nullTime(t *time.Time) any {
	if t == nil {
		return nil
	}
	return formatTime(*t)
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nullBytes(b []byte) any {
	if b == nil {
		return nil
	}
	return string(b)
}

// dbTime scans a timestamp from either a time.Time (PostgreSQL) or text (SQLite).
type dbTime struct {
	T     time.Time
	Valid bool
}

func (d *dbTime) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		*d = dbTime{}
		return nil
	case time.Time:
		*d = dbTime{T: x.UTC(), Valid: true}
		return nil
	case string:
		return d.parse(x)
	case []byte:
		return d.parse(string(x))
	default:
		return fmt.Errorf("dbTime: cannot scan %T", v)
	}
}

func (d *dbTime) parse(s string) error {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("dbTime: %w", err)
	}
	*d = dbTime{T: t.UTC(), Valid: true}
	return nil
}

func (d dbTime) ptr() *time.Time {
	if !d.Valid {
		return nil
	}
	t := d.T
	return &t
}

// dbText scans text or JSON from either driver (lib/pq gives []byte for jsonb).
type dbText struct {
	S     string
	Valid bool
}

func (d *dbText) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		*d = dbText{}
	case string:
		*d = dbText{S: x, Valid: true}
	case []byte:
		*d = dbText{S: string(x), Valid: true}
	default:
		return fmt.Errorf("dbText: cannot scan %T", v)
	}
	return nil
}
