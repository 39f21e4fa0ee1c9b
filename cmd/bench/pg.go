package main

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq"

	apikeys "github.com/qs/apikeys"
	"github.com/qs/apikeys/keys"
)

// pickPG returns the URL of a PostgreSQL database on which we may CREATE DATABASE.
func (h *harness) pickPG() (string, error) {
	candidates := []string{*flagPG}
	if *flagPG == "" {
		candidates = []string{"postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "postgres://127.0.0.1:5432/test?sslmode=disable"}
	}
	var why []string
	for _, c := range candidates {
		db, err := sql.Open("postgres", c)
		if err != nil {
			why = append(why, err.Error())
			continue
		}
		ctx, cancel := context.WithTimeout(h.ctx, 5*time.Second)
		var can bool
		err = db.QueryRowContext(ctx, "SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&can)
		cancel()
		db.Close()
		if err == nil && can {
			return c, nil
		}
		if err == nil {
			err = errors.New("the user may not create databases")
		}
		why = append(why, fmt.Sprintf("%s: %v", redact(c), err))
	}
	return "", fmt.Errorf("no PostgreSQL on which to create a database (set -pg):\n  %s", strings.Join(why, "\n  "))
}

func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(an unparsable URL)"
	}
	return p.Redacted()
}

// createDatabase creates a fresh database and registers its DROP (also after a failure).
func (h *harness) createDatabase(adminURL string) (string, error) {
	admin, err := sql.Open("postgres", adminURL)
	if err != nil {
		return "", err
	}
	name := fmt.Sprintf("apikeys_bench_%d_%d", os.Getpid(), time.Now().Unix())
	if _, err := admin.ExecContext(h.ctx, "CREATE DATABASE "+name); err != nil {
		admin.Close()
		return "", fmt.Errorf("CREATE DATABASE %s: %w", name, err)
	}
	h.logf("created database %s", name)
	h.onCleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			fmt.Fprintf(os.Stderr, "bench: DROP DATABASE %s: %v\n", name, err)
		} else {
			fmt.Fprintf(os.Stderr, "bench: dropped database %s\n", name)
		}
		admin.Close()
	})
	u, _ := url.Parse(adminURL)
	u.Path = "/" + name
	return u.String(), nil
}

// loadKeys inserts n keys (and their subjects) with SQL, the service having migrated the
// schema: one key in tenantEvery in tenant_bench, created_at one second apart by pairs (so
// that the id breaks ties), a real argon2id PHC string that no token matches, handles
// "bench" + 7 digits (never those of a real key, whose handles are random base62).
func (h *harness) loadKeys(db *sqlx.DB, n, tenantEvery int) error {
	tok, err := keys.Generate(keys.DefaultPrefix)
	if err != nil {
		return err
	}
	phc, err := keys.Hash(tok.Secret(), keys.DefaultParams())
	if err != nil {
		return err
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(h.ctx, 10*time.Minute)
	defer cancel()
	const series = `(SELECT g, timestamptz '2026-01-01 00:00:00+00' - (g / 2) * interval '1 second' AS at
		FROM generate_series(1, $1::int) g) s`
	tenant := `CASE WHEN g % $2::int = 0 THEN 'tenant_bench' ELSE 'tenant_' || (g % 997) END`
	env := `CASE WHEN g % 2 = 0 THEN 'environment_prod' ELSE 'environment_dev' END`
	stmts := []struct {
		sql  string
		args []any
	}{
		{`SET synchronous_commit = off`, nil},
		{`SET maintenance_work_mem = '256MB'`, nil},
		{`INSERT INTO subjects (id, type, tenant_id, environment_id, created_at)
			SELECT 'subject_' || md5('s' || g)::uuid, 'service', ` + tenant + `, ` + env + `, at FROM ` + series, []any{n, tenantEvery}},
		{`INSERT INTO api_keys (` + keyColumns + `)
			SELECT 'apk_' || md5('k' || g)::uuid, 'subject_' || md5('s' || g)::uuid, ` + tenant + `, ` + env + `,
				'bench key ' || g, CASE WHEN g % 3 = 0 THEN 'loaded by cmd/bench' END,
				'bench' || lpad(g::text, 7, '0'), 'qs_live_benc', lpad((g % 10000)::text, 4, '0'), $3, 'argon2id',
				'subject_admin', at, at,
				CASE WHEN g % 7 = 0 THEN at + interval '365 days' END,
				CASE WHEN g % 4 = 0 THEN 'ci-cd' END,
				CASE WHEN g % 5 = 0 THEN '{"team": "bench", "n": ' || g || '}' END,
				CASE WHEN g % 3 = 0 THEN '["api_keys:read"]'::jsonb ELSE '[]'::jsonb END,
				CASE WHEN g % 2 = 0 THEN at + interval '1 hour' END,
				CASE WHEN g % 2 = 0 THEN '10.0.0.' || (g % 250) END,
				CASE WHEN g % 50 = 0 THEN at + interval '1 day' END,
				CASE WHEN g % 50 = 0 THEN 'subject_admin' END,
				CASE WHEN g % 50 = 0 THEN 'loaded revoked' END,
				NULL, NULL
			FROM ` + series, []any{n, tenantEvery, phc}},
		{`VACUUM ANALYZE subjects`, nil},
		{`VACUUM ANALYZE api_keys`, nil},
		{`CHECKPOINT`, nil},
	}
	load := func() error {
		conn, err := db.Connx(ctx)
		if err != nil {
			return err
		}
		defer conn.Close()
		for _, s := range stmts {
			if _, err := conn.ExecContext(ctx, s.sql, s.args...); err != nil {
				return fmt.Errorf("load: %.60s…: %w", strings.Join(strings.Fields(s.sql), " "), err)
			}
		}
		return nil
	}
	// Once more if the connection was lost (another process on the machine may terminate
	// backends): the tables hold nothing else yet.
	if err := load(); err != nil {
		if ctx.Err() != nil || !errors.Is(err, driver.ErrBadConn) && !strings.Contains(err.Error(), "terminating connection") {
			return err
		}
		h.logf("%v; loading again", err)
		h.note("The first attempt to load the keys lost its connection (%v) and the load was run again.", err)
		if _, err := db.ExecContext(ctx, "TRUNCATE api_keys, subjects"); err != nil {
			return err
		}
		if err := load(); err != nil {
			return err
		}
	}
	h.logf("loaded %d keys (%d in tenant_bench) in %.1fs", n, n/tenantEvery, time.Since(start).Seconds())
	return nil
}

// keyColumns is store/keys.go's column list, in its order.
const keyColumns = `id, subject_id, tenant_id, environment_id, name, description, lookup_handle,
	prefix, last_four, secret_hash, hash_algo, created_by_subject_id, created_at, updated_at,
	expires_at, intended_use, metadata, scopes, last_used_at, last_used_ip, revoked_at,
	revoked_by_subject_id, revoked_reason, rotated_from_id, replaced_by_id`

// The list queries as store.listQuery builds them for an admin's unfiltered list of 50 (one
// row more, to know whether a page follows), rebound for PostgreSQL.
const (
	listFirstSQL = `SELECT ` + keyColumns + ` FROM api_keys ORDER BY created_at DESC, id DESC LIMIT $1`
	listAfterSQL = `SELECT ` + keyColumns + ` FROM api_keys WHERE (created_at, id) < ($1, $2) ORDER BY created_at DESC, id DESC LIMIT $3`
	timeLayout   = "2006-01-02T15:04:05.000000Z" // store.formatTime's
)

// deepCursor is the cursor of the row at offset in the list's order.
func deepCursor(ctx context.Context, db *sqlx.DB, offset int) (apikeys.Cursor, error) {
	var r struct {
		CreatedAt time.Time `db:"created_at"`
		ID        string    `db:"id"`
	}
	err := db.GetContext(ctx, &r, `SELECT created_at, id FROM api_keys ORDER BY created_at DESC, id DESC OFFSET $1 LIMIT 1`, offset)
	return apikeys.Cursor{CreatedAt: r.CreatedAt.UTC(), ID: r.ID}, err
}

// explain returns PostgreSQL's plan of a query, for the report.
func explain(ctx context.Context, db *sqlx.DB, query string, args ...any) string {
	var lines []string
	rows, err := db.QueryContext(ctx, "EXPLAIN (ANALYZE, BUFFERS) "+query, args...)
	if err != nil {
		return err.Error()
	}
	defer rows.Close()
	for rows.Next() {
		var l string
		rows.Scan(&l)
		lines = append(lines, l)
	}
	return strings.Join(lines, "\n")
}

// openSQL opens dbURL as the store does: binary_parameters=yes, a pool of 32.
func openSQL(dbURL string) (*sqlx.DB, error) {
	u, err := url.Parse(dbURL)
	if err != nil {
		return nil, err
	}
	q := u.Query()
	q.Set("binary_parameters", "yes")
	u.RawQuery = q.Encode()
	db, err := sqlx.Open("postgres", u.String())
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(32)
	db.SetMaxIdleConns(32)
	return db, nil
}

// unknownTokens writes n well-formed tokens whose handles no key carries, one a line.
func (h *harness) unknownTokens(n int) (string, error) {
	path := filepath.Join(h.tmp, fmt.Sprintf("unknown-%d.txt", n))
	var b strings.Builder
	for i := 0; i < n; i++ {
		tok, err := keys.Generate(keys.DefaultPrefix)
		if err != nil {
			return "", err
		}
		b.WriteString(tok.Secret())
		b.WriteByte('\n')
	}
	return path, os.WriteFile(path, []byte(b.String()), 0o600)
}

func (h *harness) tokensFile(name string, tokens []string) (string, error) {
	path := filepath.Join(h.tmp, name)
	return path, os.WriteFile(path, []byte(strings.Join(tokens, "\n")+"\n"), 0o600)
}
