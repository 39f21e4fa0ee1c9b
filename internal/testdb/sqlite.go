package testdb

// SQLite: a database is a file in the test's temporary directory.

import (
	"path/filepath"
	"testing"

	_ "modernc.org/sqlite" // SQLite driver "sqlite"
)

// newSQLite implements New for the SQLite engine.
func newSQLite(t testing.TB) DB {
	t.Helper()
	return DB{Engine: SQLite, URL: "file:" + filepath.Join(t.TempDir(), "test.db")}
}
