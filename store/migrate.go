package store

import (
	"context"
	"time"
)

// Migration is one migration as the database records it.
type Migration struct {
	Version   string    // the file name, such as 0001_init.sql
	AppliedAt time.Time // when it was applied
	New       bool      // applied by this call of Migrate
}

// Migrate applies to the database named by dsn the migrations it has not seen, as OpenWith
// does, and returns every migration it records, oldest first. It lets a deployment apply
// them once before its replicas start (which then find nothing to do).
func Migrate(ctx context.Context, dsn string, opts Options) ([]Migration, error) {
	// applied_at is written at microsecond precision from this process's clock; anything
	// recorded from start on was applied now (or by a replica migrating at the same moment).
	start := time.Now().UTC().Truncate(time.Microsecond)
	s, err := OpenWith(ctx, dsn, opts)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	var rows []struct {
		Version   string `db:"version"`
		AppliedAt dbTime `db:"applied_at"`
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := s.db.SelectContext(ctx, &rows, "SELECT version, applied_at FROM schema_migrations ORDER BY version"); err != nil {
		return nil, s.translate(err)
	}
	out := make([]Migration, len(rows))
	for i, r := range rows {
		out[i] = Migration{Version: r.Version, AppliedAt: r.AppliedAt.T, New: !r.AppliedAt.T.Before(start)}
	}
	return out, nil
}
