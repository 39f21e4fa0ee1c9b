package testdb

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// ranEnv names a file to which every test process appends one line per engine it created a
// database on, so that `make test` can end by saying which databases the suite ran on.
const ranEnv = "APIKEYS_TEST_RAN_FILE"

var ranOnce sync.Map // engine → *sync.Once

// recordRan appends "<engine>\t<where>\t<package>" to the file ranEnv names, once per
// engine and process. A line under PIPE_BUF bytes appended with O_APPEND is written whole,
// whatever other test processes write at the same time.
func recordRan(engine string) {
	recordRanAs(engine, func() string {
		if engine == Postgres {
			return describePostgres()
		}
		return "SQLite, embedded (modernc.org/sqlite)"
	})
}

// recordRanAs records a database under key, described by where, once per key and process.
func recordRanAs(key string, where func() string) {
	path := os.Getenv(ranEnv)
	if path == "" {
		return
	}
	once, _ := ranOnce.LoadOrStore(key, new(sync.Once))
	once.(*sync.Once).Do(func() {
		engine, where := strings.SplitN(key, ":", 2)[0], where()
		pkg, _ := os.Getwd()
		line := fmt.Sprintf("%s\t%s\t%s\n", engine, where, filepath.Base(pkg))
		if len(line) > 500 {
			line = line[:499] + "\n"
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			fmt.Fprintf(os.Stderr, "testdb: %s: %v\n", path, err)
			return
		}
		defer f.Close()
		_, _ = f.WriteString(line)
	})
}

// describePostgres names the server the suite used: its version, and where it came from.
func describePostgres() string {
	from := redact(pgURL)
	switch {
	case pgCluster != nil:
		from = "a throwaway cluster started by the tests"
	case os.Getenv(envURL) != "":
		from = envURL + " (" + redact(pgURL) + ")"
	}
	version := "PostgreSQL"
	if admin, err := openAdmin(); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		var v string
		if admin.QueryRowContext(ctx, "SHOW server_version").Scan(&v) == nil {
			version = "PostgreSQL " + strings.Fields(v)[0]
		}
	}
	return version + " at " + from
}
