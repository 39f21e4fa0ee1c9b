package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/lib/pq"
	"slices"
	"strings"

	"github.com/jmoiron/sqlx"

	"github.com/qs/apikeys"
)

const keyColumns = `id, subject_id, tenant_id, environment_id, name, description, lookup_handle,
	prefix, last_four, secret_hash, hash_algo, created_by_subject_id, created_at, updated_at,
	expires_at, intended_use, metadata, scopes, last_used_at, last_used_ip, revoked_at,
	revoked_by_subject_id, revoked_reason, rotated_from_id, replaced_by_id, controls`

// keyRow is the database shape of a Key.
type keyRow struct {
	ID                 string `db:"id"`
	SubjectID          string `db:"subject_id"`
	TenantID           dbText `db:"tenant_id"`
	EnvironmentID      dbText `db:"environment_id"`
	Name               string `db:"name"`
	Description        dbText `db:"description"`
	Handle             string `db:"lookup_handle"`
	Prefix             string `db:"prefix"`
	LastFour           string `db:"last_four"`
	Hash               string `db:"secret_hash"`
	HashAlgo           string `db:"hash_algo"`
	CreatedBySubjectID string `db:"created_by_subject_id"`
	CreatedAt          dbTime `db:"created_at"`
	UpdatedAt          dbTime `db:"updated_at"`
	ExpiresAt          dbTime `db:"expires_at"`
	IntendedUse        dbText `db:"intended_use"`
	Metadata           dbText `db:"metadata"`
	Scopes             dbText `db:"scopes"`
	LastUsedAt         dbTime `db:"last_used_at"`
	LastUsedIP         dbText `db:"last_used_ip"`
	RevokedAt          dbTime `db:"revoked_at"`
	RevokedBySubjectID dbText `db:"revoked_by_subject_id"`
	RevokedReason      dbText `db:"revoked_reason"`
	RotatedFromID      dbText `db:"rotated_from_id"`
	ReplacedByID       dbText `db:"replaced_by_id"`
	Controls           string `db:"controls"`
}

// key converts the row into the domain's Key.
func (r *keyRow) key() (apikeys.Key, error) {
	k := apikeys.Key{
		ID: r.ID, SubjectID: r.SubjectID, TenantID: r.TenantID.S, EnvironmentID: r.EnvironmentID.S,
		Name: r.Name, Description: r.Description.S, Handle: r.Handle, Prefix: r.Prefix,
		LastFour: r.LastFour, Hash: r.Hash, HashAlgo: r.HashAlgo,
		CreatedBySubjectID: r.CreatedBySubjectID, CreatedAt: r.CreatedAt.T, UpdatedAt: r.UpdatedAt.T,
		ExpiresAt: r.ExpiresAt.ptr(), IntendedUse: r.IntendedUse.S, LastUsedAt: r.LastUsedAt.ptr(),
		LastUsedIP: r.LastUsedIP.S, RevokedAt: r.RevokedAt.ptr(), RevokedBySubjectID: r.RevokedBySubjectID.S,
		RevokedReason: r.RevokedReason.S, RotatedFromID: r.RotatedFromID.S, ReplacedByID: r.ReplacedByID.S,
		Scopes: []apikeys.Scope{},
	}
	c, err := apikeys.UnmarshalControls(r.Controls)
	if err != nil {
		return apikeys.Key{}, fmt.Errorf("key %s: controls: %w", r.ID, err)
	}
	k.Controls = c
	if r.Metadata.Valid {
		k.Metadata = apikeys.Metadata(r.Metadata.S)
	}
	if r.Scopes.Valid && r.Scopes.S != "" {
		if err := json.Unmarshal([]byte(r.Scopes.S), &k.Scopes); err != nil {
			return apikeys.Key{}, fmt.Errorf("key %s: scopes: %w", r.ID, err)
		}
	}
	return k, nil
}

// scopesJSON renders scopes as the JSON array both databases keep ("[]" for none).
func scopesJSON(scopes []apikeys.Scope) string {
	if scopes == nil {
		scopes = []apikeys.Scope{}
	}
	b, _ := json.Marshal(scopes) // a []Scope (strings) always marshals
	return string(b)
}

// CreateKeys inserts keys, and for each key whose subject is new (NewSubject true) that
// subject, all in one transaction: either every key is stored or none is.
// Returns ECONFLICT when a key id, subject id or lookup handle is taken. Each key is a change
// (see Watch).
func (s *Store) CreateKeys(ctx context.Context, keys []apikeys.NewKey) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.writeTx(ctx, func(tx *sqlx.Tx) ([]string, error) {
		handles := make([]string, 0, len(keys))
		for _, nk := range keys {
			if nk.NewSubject {
				_, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO subjects (id, type, tenant_id, environment_id, created_at)
					VALUES (?, 'service', ?, ?, ?)`),
					nk.SubjectID, nullString(nk.TenantID), nullString(nk.EnvironmentID), formatTime(nk.CreatedAt))
				if err != nil {
					return nil, s.translate(err)
				}
			}
			if err := s.insertKey(ctx, tx, &nk.Key); err != nil {
				return nil, err
			}
			handles = append(handles, nk.Handle)
		}
		return handles, nil
	})
}

// insertKey inserts k as a new row.
func (s *Store) insertKey(ctx context.Context, tx *sqlx.Tx, k *apikeys.Key) error {
	_, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO api_keys (`+keyColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		k.ID, k.SubjectID, nullString(k.TenantID), nullString(k.EnvironmentID), k.Name,
		nullString(k.Description), k.Handle, k.Prefix, k.LastFour, k.Hash, k.HashAlgo,
		k.CreatedBySubjectID, formatTime(k.CreatedAt), formatTime(k.UpdatedAt), nullTime(k.ExpiresAt),
		nullString(k.IntendedUse), nullBytes(k.Metadata), scopesJSON(k.Scopes), nullTime(k.LastUsedAt),
		nullString(k.LastUsedIP), nullTime(k.RevokedAt), nullString(k.RevokedBySubjectID),
		nullString(k.RevokedReason), nullString(k.RotatedFromID), nullString(k.ReplacedByID),
		apikeys.MarshalControls(k.Controls))
	return s.translate(err)
}

// GetKey returns the key with the given id, or ENOTFOUND.
func (s *Store) GetKey(ctx context.Context, id string) (apikeys.Key, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.getKey(ctx, s.db, "id", id, false)
}

// GetKeyByHandle returns the key whose token carries handle, or ENOTFOUND. It is the
// verification path's only query and is served by a unique index.
func (s *Store) GetKeyByHandle(ctx context.Context, handle string) (apikeys.Key, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.getKey(ctx, s.db, "lookup_handle", handle, false)
}

// ListHandles pages through the unique index of lookup handles: each page is one short
// indexed query, bounded like any other call, whatever the number of keys.
func (s *Store) ListHandles(ctx context.Context, after string, limit int) ([]string, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	hs := []string{}
	q := s.db.Rebind("SELECT lookup_handle FROM api_keys WHERE lookup_handle > ? ORDER BY lookup_handle LIMIT ?")
	if err := s.db.SelectContext(ctx, &hs, q, after, limit); err != nil {
		return nil, s.translate(err)
	}
	return hs, nil
}

// getKey loads the key whose column equals value, locking its row when forUpdate (SQLite
// needs no lock: its write transactions take the database at BEGIN). ENOTFOUND.
func (s *Store) getKey(ctx context.Context, q sqlx.QueryerContext, column, value string, forUpdate bool) (apikeys.Key, error) {
	query := "SELECT " + keyColumns + " FROM api_keys WHERE " + column + " = ?"
	if forUpdate && s.dialect == postgres {
		query += " FOR UPDATE"
	}
	var r keyRow
	if err := sqlx.GetContext(ctx, q, &r, s.db.Rebind(query), value); err != nil {
		what := "id"
		if column == "lookup_handle" {
			what = "lookup handle"
		}
		return apikeys.Key{}, s.notFound(err, "no API key has this "+what)
	}
	return r.key()
}

// ListKeys returns up to f.Limit keys matching f, newest first, and a cursor for the next
// page when more keys may follow. Every condition is evaluated in SQL. EINVALID for an
// unknown status or a limit below 1.
func (s *Store) ListKeys(ctx context.Context, f apikeys.KeyFilter) ([]apikeys.Key, *apikeys.Cursor, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	query, args, err := s.listQuery(f)
	if err != nil {
		return nil, nil, err
	}
	var rows []keyRow
	if err := s.db.SelectContext(ctx, &rows, query, args...); err != nil {
		return nil, nil, s.translate(err)
	}
	var next *apikeys.Cursor
	if len(rows) > f.Limit {
		rows = rows[:f.Limit]
		last := rows[len(rows)-1]
		next = &apikeys.Cursor{CreatedAt: last.CreatedAt.T, ID: last.ID}
	}
	out := make([]apikeys.Key, 0, len(rows))
	for i := range rows {
		k, err := rows[i].key()
		if err != nil {
			return nil, nil, err
		}
		out = append(out, k)
	}
	return out, next, nil
}

// listQuery builds ListKeys' statement, rebound for the driver. It asks for one row more
// than the limit so that ListKeys knows whether another page follows.
func (s *Store) listQuery(f apikeys.KeyFilter) (string, []any, error) {
	var (
		where []string
		args  []any
	)
	eq := func(col, v string) {
		if v != "" {
			where = append(where, col+" = ?")
			args = append(args, v)
		}
	}
	eq("tenant_id", f.TenantID)
	eq("environment_id", f.EnvironmentID)
	eq("subject_id", f.SubjectID)
	eq("created_by_subject_id", f.CreatedBySubjectID)
	eq("intended_use", f.IntendedUse)
	now := formatTime(f.Now)
	switch f.Status {
	case "":
	case apikeys.StatusRevoked:
		where = append(where, "revoked_at IS NOT NULL")
	case apikeys.StatusExpired:
		where = append(where, "revoked_at IS NULL", "expires_at <= ?")
		args = append(args, now)
	case apikeys.StatusActive:
		where = append(where, "revoked_at IS NULL", "(expires_at IS NULL OR expires_at > ?)")
		args = append(args, now)
	default:
		return "", nil, apikeys.Invalid("the status filter must be active, revoked or expired")
	}
	if f.After != nil {
		// A row-value comparison rather than its expansion (created_at < ? OR (created_at
		// = ? AND id < ?)): PostgreSQL can then start the index scan at the cursor instead
		// of filtering from the newest row on. SQLite has row values since 3.15.
		where = append(where, "(created_at, id) < (?, ?)")
		args = append(args, formatTime(f.After.CreatedAt), f.After.ID)
	}
	if f.Limit < 1 {
		return "", nil, apikeys.Invalid("the page size must be at least 1")
	}
	query := "SELECT " + keyColumns + " FROM api_keys"
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY created_at DESC, id DESC LIMIT ?"
	args = append(args, f.Limit+1)
	return s.db.Rebind(query), args, nil
}

// UpdateKey loads the key with the given id inside a transaction that holds it against
// concurrent writers, lets fn change it, and stores the mutable fields fn may have
// changed (name, description, metadata, expiry, intended use, scopes, revocation and
// replacement). If fn returns an error nothing is written and that error is returned.
// Returns ENOTFOUND when no key has the id. A stored update is a change (see Watch).
func (s *Store) UpdateKey(ctx context.Context, id string, fn func(k *apikeys.Key) error) (apikeys.Key, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var out apikeys.Key
	err := s.writeTx(ctx, func(tx *sqlx.Tx) ([]string, error) {
		k, err := s.getKey(ctx, tx, "id", id, true)
		if err != nil {
			return nil, err
		}
		handle := k.Handle // as stored: writeKey does not write the handle
		if err := fn(&k); err != nil {
			return nil, err
		}
		if err := s.writeKey(ctx, tx, &k); err != nil {
			return nil, err
		}
		out = k
		return []string{handle}, nil
	})
	return out, err
}

// writeKey stores the mutable fields of k over its row.
func (s *Store) writeKey(ctx context.Context, tx *sqlx.Tx, k *apikeys.Key) error {
	_, err := tx.ExecContext(ctx, tx.Rebind(`UPDATE api_keys SET name = ?, description = ?, metadata = ?,
		expires_at = ?, intended_use = ?, scopes = ?, updated_at = ?, revoked_at = ?,
		revoked_by_subject_id = ?, revoked_reason = ?, replaced_by_id = ?, controls = ? WHERE id = ?`),
		k.Name, nullString(k.Description), nullBytes(k.Metadata), nullTime(k.ExpiresAt),
		nullString(k.IntendedUse), scopesJSON(k.Scopes), formatTime(k.UpdatedAt), nullTime(k.RevokedAt),
		nullString(k.RevokedBySubjectID), nullString(k.RevokedReason), nullString(k.ReplacedByID),
		apikeys.MarshalControls(k.Controls), k.ID)
	return s.translate(err)
}

// RotateKey replaces the key with the given id in one transaction: fn receives the old key
// (held against concurrent writers), changes it (typically setting ReplacedByID and a
// revocation or shortened expiry) and returns the new key, which is inserted for the same
// subject. If fn returns an error nothing is written and that error is returned.
// Returns ENOTFOUND when no key has the id, ECONFLICT when the new key's id or handle is
// taken. A stored rotation is a change to both keys (see Watch).
func (s *Store) RotateKey(ctx context.Context, id string, fn func(old *apikeys.Key) (apikeys.Key, error)) (old, replacement apikeys.Key, err error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	err = s.writeTx(ctx, func(tx *sqlx.Tx) ([]string, error) {
		k, err := s.getKey(ctx, tx, "id", id, true)
		if err != nil {
			return nil, err
		}
		handle := k.Handle
		nk, err := fn(&k)
		if err != nil {
			return nil, err
		}
		// The new row must exist before the old one can point at it.
		if err := s.insertKey(ctx, tx, &nk); err != nil {
			return nil, err
		}
		if err := s.writeKey(ctx, tx, &k); err != nil {
			return nil, err
		}
		old, replacement = k, nk
		return []string{handle, nk.Handle}, nil
	})
	return old, replacement, err
}

// SetKeyHash replaces the stored hash of the key with id by newHash if it is still oldHash,
// and reports whether it did: of replicas rehashing a key together, one writes. A replaced
// hash is a change (see Watch); a key with another hash, or none with the id, is not.
func (s *Store) SetKeyHash(ctx context.Context, id, oldHash, newHash string) (bool, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var set bool
	err := s.writeTx(ctx, func(tx *sqlx.Tx) ([]string, error) {
		var handle string
		err := tx.GetContext(ctx, &handle, tx.Rebind(`UPDATE api_keys SET secret_hash = ?
			WHERE id = ? AND secret_hash = ? RETURNING lookup_handle`), newHash, id, oldHash)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, nil
		}
		if err != nil {
			return nil, s.translate(err)
		}
		set = true
		return []string{handle}, nil
	})
	return set && err == nil, err
}

// RecordUsage stores the latest use of each key in one transaction. A use older than the
// one already recorded is ignored, so batches may arrive out of order. It is not a change:
// the feed does not report it.
func (s *Store) RecordUsage(ctx context.Context, uses []apikeys.Usage) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if len(uses) == 0 {
		return nil
	}
	// In the order of ids: replicas flushing the same keys take their row locks in the same
	// order, so that they wait for each other briefly instead of deadlocking.
	uses = slices.Clone(uses)
	slices.SortFunc(uses, func(a, b apikeys.Usage) int { return strings.Compare(a.KeyID, b.KeyID) })
	if s.dialect == postgres {
		return s.recordUsagePostgres(ctx, uses)
	}
	// SQLite: one writer at a time, and no row locks to hold.
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		stmt, err := tx.PreparexContext(ctx, tx.Rebind(`UPDATE api_keys SET last_used_at = ?, last_used_ip = ?
			WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)`))
		if err != nil {
			return s.translate(err)
		}
		defer stmt.Close()
		for _, u := range uses {
			at := formatTime(u.At)
			if _, err := stmt.ExecContext(ctx, at, nullString(u.IP), u.KeyID, at); err != nil {
				return s.translate(err)
			}
		}
		return nil
	})
}

// usagePage bounds the keys of one usage statement.
const usagePage = 1000

// recordUsagePostgres writes each page of uses in one statement, in its own transaction:
// its rows are locked (in id order) for one round trip, not for one per key, so that a
// revoke of one of them waits milliseconds, and no write waits for a whole flush.
func (s *Store) recordUsagePostgres(ctx context.Context, uses []apikeys.Usage) error {
	for page := range slices.Chunk(uses, usagePage) {
		ids, ats, ips := make([]string, len(page)), make([]string, len(page)), make([]sql.NullString, len(page))
		for i, u := range page {
			ids[i], ats[i] = u.KeyID, formatTime(u.At)
			ips[i] = sql.NullString{String: u.IP, Valid: u.IP != ""}
		}
		_, err := s.db.ExecContext(ctx, `WITH u AS (
				SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[]) AS u(id, at, ip)
			), locked AS (
				SELECT k.id FROM api_keys k JOIN u ON u.id = k.id
				WHERE k.last_used_at IS NULL OR k.last_used_at < u.at
				ORDER BY k.id FOR UPDATE OF k
			)
			UPDATE api_keys AS k SET last_used_at = u.at, last_used_ip = u.ip
			FROM u WHERE k.id = u.id AND k.id IN (SELECT id FROM locked)
				AND (k.last_used_at IS NULL OR k.last_used_at < u.at)`,
			pq.Array(ids), pq.Array(ats), pq.Array(ips))
		if err != nil {
			return s.translate(err)
		}
	}
	return nil
}

// GetSubject returns the subject with the given id, or ENOTFOUND.
func (s *Store) GetSubject(ctx context.Context, id string) (apikeys.Subject, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var r struct {
		ID            string `db:"id"`
		Type          string `db:"type"`
		TenantID      dbText `db:"tenant_id"`
		EnvironmentID dbText `db:"environment_id"`
		CreatedAt     dbTime `db:"created_at"`
	}
	err := s.db.GetContext(ctx, &r, s.db.Rebind(
		"SELECT id, type, tenant_id, environment_id, created_at FROM subjects WHERE id = ?"), id)
	if err != nil {
		return apikeys.Subject{}, s.notFound(err, "no subject has this id")
	}
	return apikeys.Subject{ID: r.ID, Type: r.Type, TenantID: r.TenantID.S, EnvironmentID: r.EnvironmentID.S, CreatedAt: r.CreatedAt.T}, nil
}
