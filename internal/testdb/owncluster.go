package testdb

// A throwaway PostgreSQL cluster that one test owns, for failure tests: it may be frozen
// (every process of it stopped with SIGSTOP, so the server hangs without refusing anything,
// as a stalled machine or a lost network looks to a client), thawed and restarted. It is
// never the machine's own server: it is always started by NewCluster, in a temporary
// directory, and every process it signals is found from that directory's postmaster.pid.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lib/pq"
)

// Bounds of the cluster's operations.
const (
	restartTimeout = 60 * time.Second       // pg_ctl restart, stop and start together
	stateTimeout   = 2 * time.Second        // for a signalled process to show its new state
	statePoll      = 200 * time.Microsecond // how often that state is read
)

// Cluster is a throwaway PostgreSQL cluster owned by one test. Its methods are safe for
// concurrent use.
type Cluster struct {
	c      *cluster
	mu     sync.Mutex
	frozen []int // processes Freeze stopped that Thaw has not continued yet
}

// NewCluster starts a throwaway cluster (initdb and pg_ctl in a temporary directory, on a
// free port of 127.0.0.1, trust authentication for the postgres role) and registers a
// t.Cleanup that thaws it, stops it and removes its directory; a watchdog does the same if
// the test process dies first. When initdb and pg_ctl are missing it skips the test, or,
// under CI=true, fails it.
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	if _, _, err := findPGBin(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("testdb: CI is set, so a throwaway PostgreSQL cluster is required, but: %v", err)
		}
		t.Skipf("testdb: no throwaway PostgreSQL cluster (never skipped under CI=true): %v", err)
	}
	c, err := startThrowaway()
	if err != nil {
		t.Fatalf("testdb: starting a throwaway PostgreSQL cluster: %v", err)
	}
	cl := &Cluster{c: c}
	recordRanAs(Postgres+":own", func() string {
		return "PostgreSQL throwaway clusters (initdb, pg_ctl) that the failure tests freeze and restart"
	})
	t.Cleanup(func() {
		if err := cl.Thaw(); err != nil {
			t.Errorf("testdb: thawing the cluster before stopping it: %v", err)
		}
		if err := c.stop(); err != nil {
			t.Errorf("testdb: stopping the throwaway cluster: %v", err)
		}
	})
	return cl
}

// AdminURL is the URL of the cluster's postgres database as the postgres superuser.
func (cl *Cluster) AdminURL() string { return cl.c.url }

// Dir is the cluster's temporary directory (the data directory is Dir()/data).
func (cl *Cluster) Dir() string { return cl.c.base }

// URL is the URL of database dbname on the cluster, as the postgres superuser. It does not
// create the database: see CreateDB.
func (cl *Cluster) URL(dbname string) string {
	u, err := databaseURL(cl.c.url, dbname)
	if err != nil {
		panic(err) // the cluster's own URL always parses
	}
	return u
}

// CreateDB creates the empty database dbname on the cluster and returns its URL.
func (cl *Cluster) CreateDB(dbname string) (string, error) {
	db, err := sql.Open("postgres", cl.c.url)
	if err != nil {
		return "", err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), ddlTimeout)
	defer cancel()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+pq.QuoteIdentifier(dbname)+" TEMPLATE template0"); err != nil {
		return "", fmt.Errorf("CREATE DATABASE %s: %w", dbname, err)
	}
	return cl.URL(dbname), nil
}

// PostmasterPID is the pid of the cluster's postmaster, checked to be the postmaster of
// this cluster's data directory.
func (cl *Cluster) PostmasterPID() (int, error) {
	pid := readPostmasterPID(filepath.Join(cl.c.data, "postmaster.pid"))
	if pid <= 0 {
		return 0, errors.New("no postmaster.pid: the cluster is not running")
	}
	// A stale postmaster.pid may name a pid reused by another process: never signal it.
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !slices.Contains(strings.Split(string(cmdline), "\x00"), cl.c.data) {
		return 0, fmt.Errorf("process %d of postmaster.pid is not the postmaster of %s", pid, cl.c.data)
	}
	return pid, nil
}

// Freeze stops the postmaster and every one of its child processes with SIGSTOP and returns
// once they are all stopped. Connections stay open and new ones are accepted by the kernel,
// but nothing answers until Thaw.
func (cl *Cluster) Freeze() error {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	pm, err := cl.PostmasterPID()
	if err != nil {
		return err
	}
	return cl.freezeTree(pm)
}

// freezeTree stops process pm and its children and records them for Thaw and the watchdog.
// A child that has exited (a zombie its stopped parent cannot reap) counts as stopped.
func (cl *Cluster) freezeTree(pm int) error {
	if err := cl.stopProcess(pm); err != nil {
		return err
	}
	// The postmaster is stopped, so it forks no more children: two scans find them all.
	for range 2 {
		kids, err := childrenOf(pm)
		if err != nil {
			return err
		}
		for _, k := range kids {
			if !slices.Contains(cl.frozen, k) {
				if err := cl.stopProcess(k); err != nil {
					return err
				}
			}
		}
	}
	return cl.recordFrozen()
}

// stopProcess sends SIGSTOP to pid, remembers it, and waits until it is stopped.
func (cl *Cluster) stopProcess(pid int) error {
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil // exited meanwhile
		}
		return fmt.Errorf("SIGSTOP %d: %w", pid, err)
	}
	cl.frozen = append(cl.frozen, pid)
	return waitState(pid, stopped)
}

// recordFrozen writes the stopped pids where the watchdog finds them, so that it can continue
// them before it stops the cluster should this process die while the cluster is frozen.
func (cl *Cluster) recordFrozen() error {
	path := cl.c.frozenFile()
	if len(cl.frozen) == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	var b strings.Builder
	for _, pid := range cl.frozen {
		fmt.Fprintf(&b, "%d\n", pid)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// Thaw continues every process Freeze stopped, and returns once none of them is stopped.
// Thawing a cluster that is not frozen does nothing.
func (cl *Cluster) Thaw() error {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	var errs []error
	for _, pid := range cl.frozen {
		if err := syscall.Kill(pid, syscall.SIGCONT); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("SIGCONT %d: %w", pid, err))
		}
	}
	for _, pid := range cl.frozen {
		if err := waitState(pid, func(s byte) bool { return s != 'T' && s != 't' }); err != nil {
			errs = append(errs, err)
		}
	}
	cl.frozen = nil
	errs = append(errs, cl.recordFrozen())
	return errors.Join(errs...)
}

// Restart restarts the cluster with pg_ctl restart -m fast -w: every session is ended, and
// it returns once the new postmaster accepts connections (on the same port), or an error
// after a minute. A frozen cluster must be thawed first.
func (cl *Cluster) Restart() error {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if len(cl.frozen) > 0 {
		return errors.New("the cluster is frozen: Thaw it before Restart")
	}
	c := cl.c
	return c.run(restartTimeout, c.pgCtl, "restart", "-D", c.data, "-m", "fast", "-w",
		"-t", strconv.Itoa(int((restartTimeout-10*time.Second)/time.Second)), "-l", filepath.Join(c.base, "log"))
}

// frozenFile lists, one a line, the processes of the cluster that are stopped by Freeze.
func (c *cluster) frozenFile() string { return filepath.Join(c.base, "frozen") }
