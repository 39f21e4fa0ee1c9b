// Command bench is `make bench`'s harness: it builds the service, runs it as its own process on
// PostgreSQL (and, for the verify rows, on SQLite), loads a million keys, drives HTTP load with
// wrk (Debian's package) on 127.0.0.1, and prints a table whose figures are ratios to baselines
// measured in the same run:
//
//   - the HTTP ceiling: a bare Echo process (this binary run with -ceiling-server) that binds
//     the same verify body and answers a fixed 200, under the same wrk settings;
//   - the argon2id ceiling: raw argon2.IDKey with the production parameters on every core;
//   - the SQL ceiling: the list query the store issues, through sqlx directly.
//
// It writes the table, the command, nproc and the machine's state into -out (BENCHMARKS.md).
// A row that misses its target is run again under perf, and the profile goes into the report.
//
//	go run ./cmd/bench -out BENCHMARKS.md [-d 10s] [-c 32] [-t 2] [-rows 1000000]
//
// Everything it starts (servers, wrk, perf, a database named apikeys_bench_*) is stopped or
// dropped when it ends, also on failure or Ctrl-C; the whole run is bounded by -timeout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"
)

var (
	flagOut       = flag.String("out", "", "write the report (Markdown) to this file")
	flagDur       = flag.Duration("d", 10*time.Second, "duration of each wrk row")
	flagConns     = flag.Int("c", 32, "wrk connections")
	flagThreads   = flag.Int("t", 2, "wrk threads")
	flagRows      = flag.Int("rows", 1_000_000, "keys loaded into PostgreSQL for the list rows")
	flagTenant    = flag.Int("tenant-rows", 100_000, "of which this many in one tenant")
	flagPG        = flag.String("pg", "", "a PostgreSQL URL of a database from which to CREATE and DROP the bench database (default: postgres://postgres@127.0.0.1:5432/postgres, then .../test)")
	flagGoBench   = flag.String("gobench", "", "a file holding the output of `go test -bench`, quoted in the report")
	flagTimeout   = flag.Duration("timeout", 45*time.Minute, "the whole run stops after this long")
	flagProfile   = flag.Bool("profile", true, "profile every row that misses its target (perf record, system-wide)")
	flagRetries   = flag.Int("retries", 2, "re-run a row this many times at most when other processes took CPU during it")
	flagQuietWait = flag.Duration("quiet-wait", 45*time.Second, "before each measurement, wait at most this long for other processes to leave the CPU")
	flagSQLite    = flag.Bool("sqlite", true, "run the verify rows on SQLite too")
	flagServerBin = flag.String("server-bin", "", "run this apikeys binary instead of building ./cmd/apikeys (for experiments)")
	flagServerEnv = flag.String("server-env", "", "extra environment of the servers, comma-separated (for experiments, e.g. GOGC=400)")
	flagKeep      = flag.Bool("keep", false, "keep the temp dir (scripts, logs, perf data) for inspection")
	flagCeilingAt = flag.String("ceiling-server", "", "internal: serve the HTTP ceiling on this address and nothing else")
)

func main() {
	flag.Parse()
	if *flagCeilingAt != "" {
		if err := serveCeiling(*flagCeilingAt); err != nil {
			fmt.Fprintln(os.Stderr, "bench: ceiling server:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, *flagTimeout)
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl-C kills at once; the first one lets the clean-up run
	}()
	h := &harness{ctx: ctx, start: time.Now(), command: "cmd/bench " + strings.Join(os.Args[1:], " ")}
	err := h.run()
	h.cleanup()
	cancel()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w (the whole run is bounded by -timeout %s)", err, *flagTimeout)
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// harness holds what a run started, so that cleanup can stop it whatever happened.
type harness struct {
	ctx      context.Context
	start    time.Time
	command  string
	tmp      string
	cleanups []func()
	rows     []*row
	notes    []string
	profiles []profile
	env      envInfo

	ceilingProfiled bool
}

func (h *harness) onCleanup(f func()) { h.cleanups = append(h.cleanups, f) }

func (h *harness) cleanup() {
	for i := len(h.cleanups) - 1; i >= 0; i-- {
		h.cleanups[i]()
	}
	h.cleanups = nil
}

func (h *harness) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench %6.1fs  %s\n", time.Since(h.start).Seconds(), fmt.Sprintf(format, args...))
}

func (h *harness) note(format string, args ...any) {
	n := fmt.Sprintf(format, args...)
	for _, seen := range h.notes {
		if seen == n {
			return
		}
	}
	h.notes = append(h.notes, n)
}

func (h *harness) run() error {
	if _, err := lookWrk(); err != nil {
		return err
	}
	var err error
	if h.tmp, err = os.MkdirTemp("", "apikeys-bench-"); err != nil {
		return err
	}
	h.onCleanup(func() {
		if *flagKeep {
			fmt.Fprintln(os.Stderr, "bench: kept", h.tmp)
			return
		}
		os.RemoveAll(h.tmp)
	})
	h.env = collectEnv()
	h.logf("nproc %d, GOMAXPROCS %d, %s; temp dir %s", h.env.nproc, runtime.GOMAXPROCS(0), h.env.goVersion, h.tmp)

	bin, err := h.build()
	if err != nil {
		return err
	}

	if err := h.postgresRows(bin); err != nil {
		return err
	}
	if *flagSQLite {
		if err := h.sqliteRows(bin); err != nil {
			return err
		}
	}
	h.env.loadEnd = readLoadavg()
	h.env.elapsed = time.Since(h.start)
	report := h.report()
	fmt.Println()
	fmt.Println(h.table())
	if *flagOut != "" {
		if err := os.WriteFile(*flagOut, []byte(report), 0o644); err != nil {
			return err
		}
		h.logf("wrote %s", *flagOut)
	}
	return nil
}
