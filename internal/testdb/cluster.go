package testdb

// The throwaway PostgreSQL cluster (initdb and pg_ctl in a temporary directory) that
// discovery starts when no server answers, and the watchdog that removes it if the test
// process dies first.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clusterTimeout bounds each initdb and pg_ctl command of the throwaway cluster.
const clusterTimeout = 60 * time.Second

// cluster is a throwaway PostgreSQL cluster started by startThrowaway.
type cluster struct {
	base  string // temporary directory holding everything below
	data  string // data directory (base/data)
	port  int
	url   string // admin URL: postgres@127.0.0.1:port/postgres
	pgCtl string // absolute path of pg_ctl
	as    runAs

	watchdog     *exec.Cmd // cleans up if the process dies before stop
	watchdogPipe *os.File  // write end of the watchdog's stdin; EOF = we died

	stopOnce sync.Once
	stopErr  error
}

// runAs runs commands either directly or, when the test runs as root, as the
// postgres OS user (initdb and postgres refuse to run as root).
type runAs struct {
	runuser string // path of runuser, if commands go through it
	su      string // path of su, if commands go through it instead
}

// argv returns the argument vector that runs name with args.
func (r runAs) argv(name string, args ...string) []string {
	switch {
	case r.runuser != "":
		return append([]string{r.runuser, "-u", "postgres", "--", name}, args...)
	case r.su != "":
		return []string{r.su, "postgres", "-s", "/bin/sh", "-c", shellJoin(append([]string{name}, args...))}
	default:
		return append([]string{name}, args...)
	}
}

// shellQuote quotes s for POSIX sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// shellJoin quotes and joins argv for POSIX sh.
func shellJoin(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}

// run runs a command of the cluster with a timeout and returns its output in
// the error when it fails.
func (c *cluster) run(timeout time.Duration, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	argv := c.as.argv(name, args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = c.base
	// A process group of its own keeps a ^C aimed at the test from reaching
	// the server; the watchdog cleans up instead.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, tail(string(out), 2000))
	}
	return nil
}

// tail returns at most the last n bytes of s, trimmed.
func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		s = "..." + s[len(s)-n:]
	}
	return s
}

// startThrowaway creates and starts a private PostgreSQL cluster in a new
// temporary directory and returns it once it accepts connections. The
// caller must call stop; a watchdog process also stops it and removes its
// directory if this process dies first.
func startThrowaway() (_ *cluster, err error) {
	initdb, pgCtl, err := findPGBin()
	if err != nil {
		return nil, err
	}
	var as runAs
	var pgUser *user.User
	if os.Geteuid() == 0 {
		pgUser, err = user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root, so initdb must run as the postgres OS user, but looking it up failed: %w", err)
		}
		if p, lerr := lookPath("runuser", "/usr/sbin", "/sbin"); lerr == nil {
			as.runuser = p
		} else if p, lerr := lookPath("su", "/bin", "/usr/bin"); lerr == nil {
			as.su = p
		} else {
			return nil, errors.New("running as root, so initdb must run as the postgres OS user, but neither runuser nor su was found")
		}
	}

	base, err := os.MkdirTemp("", "apikeys-pg-*")
	if err != nil {
		return nil, err
	}
	c := &cluster{base: base, data: filepath.Join(base, "data"), pgCtl: pgCtl, as: as}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.stop())
		}
	}()
	// Start the watchdog before anything that could leave state behind.
	if err := c.startWatchdog(); err != nil {
		return nil, err
	}
	if pgUser != nil {
		if err := chownTree(base, pgUser); err != nil {
			return nil, fmt.Errorf("handing %s to the postgres OS user: %w", base, err)
		}
	}
	if err := c.run(clusterTimeout, initdb, "-D", c.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"); err != nil {
		return nil, err
	}
	// The free port may be taken by someone else before the server binds
	// it, so try a few.
	var startErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
			port, c.base)
		startErr = c.run(clusterTimeout, pgCtl, "start", "-D", c.data, "-o", opts, "-w", "-t", "60", "-l", filepath.Join(c.base, "log"))
		if startErr == nil {
			c.port = port
			break
		}
		if b, rerr := os.ReadFile(filepath.Join(c.base, "log")); rerr == nil {
			startErr = fmt.Errorf("%w\nserver log:\n%s", startErr, tail(string(b), 2000))
		}
	}
	if startErr != nil {
		return nil, startErr
	}
	c.url = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port)
	if err := probe(c.url, 10*time.Second); err != nil {
		return nil, fmt.Errorf("throwaway cluster started but is unusable: %w", err)
	}
	return c, nil
}

// startWatchdog starts a detached shell that waits for EOF on a pipe whose
// write end only this process holds, then continues the processes Freeze
// stopped, stops the cluster and removes its directory. EOF arrives when this
// process exits for any reason.
func (c *cluster) startWatchdog() error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	// A cluster left frozen (NewCluster's Freeze) must be continued before pg_ctl can stop it.
	frozen := shellQuote(c.frozenFile())
	script := "read _ignored; " +
		"[ -f " + frozen + " ] && kill -CONT $(cat " + frozen + ") >/dev/null 2>&1; " +
		shellJoin(c.as.argv(c.pgCtl, "stop", "-D", c.data, "-m", "immediate", "-w")) + " >/dev/null 2>&1; " +
		"rm -rf " + shellQuote(c.base)
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Stdin = r
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("starting cleanup watchdog: %w", err)
	}
	c.watchdog, c.watchdogPipe = cmd, w
	return nil
}

// stop stops the cluster immediately and removes its directory. It is safe
// to call more than once.
func (c *cluster) stop() error {
	c.stopOnce.Do(func() {
		// The watchdog is only for when we die; we are alive, so retire it.
		if c.watchdog != nil {
			_ = c.watchdog.Process.Kill()
			_ = c.watchdog.Wait()
			_ = c.watchdogPipe.Close()
		}
		var errs []error
		pidFile := filepath.Join(c.data, "postmaster.pid")
		if _, err := os.Stat(pidFile); err == nil {
			if err := c.run(clusterTimeout, c.pgCtl, "stop", "-D", c.data, "-m", "immediate", "-w"); err != nil {
				errs = append(errs, err)
				// Last resort: kill the postmaster we started, by its pid.
				if pid := readPostmasterPID(pidFile); pid > 0 {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		if err := os.RemoveAll(c.base); err != nil {
			errs = append(errs, err)
		}
		c.stopErr = errors.Join(errs...)
	})
	return c.stopErr
}

// readPostmasterPID returns the pid in the first line of postmaster.pid, or 0.
func readPostmasterPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		return 0
	}
	return pid
}

// chownTree hands the directory tree at root to u.
func chownTree(root string, u *user.User) error {
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return err
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return err
	}
	return filepath.WalkDir(root, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// lookPath finds an executable on PATH or, failing that, in extra dirs.
func lookPath(name string, extra ...string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return filepath.Abs(p)
	}
	for _, d := range extra {
		p := filepath.Join(d, name)
		if isExecutable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found on PATH or in %s", name, strings.Join(extra, ", "))
}

// isExecutable reports whether path is a regular file with an execute bit.
func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// pgLibGlob is where Debian-style packages install PostgreSQL server binaries.
var pgLibGlob = "/usr/lib/postgresql/*/bin"

// findPGBin finds initdb and pg_ctl: both on PATH, or else in the
// highest-versioned /usr/lib/postgresql/*/bin that has both.
func findPGBin() (initdb, pgCtl string, err error) {
	i, ierr := exec.LookPath("initdb")
	p, perr := exec.LookPath("pg_ctl")
	if ierr == nil && perr == nil {
		if i, ierr = filepath.Abs(i); ierr == nil {
			if p, perr = filepath.Abs(p); perr == nil {
				return i, p, nil
			}
		}
	}
	dirs, _ := filepath.Glob(pgLibGlob)
	for _, d := range sortByVersionDesc(dirs) {
		i, p := filepath.Join(d, "initdb"), filepath.Join(d, "pg_ctl")
		if isExecutable(i) && isExecutable(p) {
			return i, p, nil
		}
	}
	return "", "", fmt.Errorf("initdb and pg_ctl not found on PATH or in %s", pgLibGlob)
}

// sortByVersionDesc orders .../<version>/bin directories from the highest
// version to the lowest, comparing versions numerically ("9.6" < "15").
func sortByVersionDesc(dirs []string) []string {
	version := func(d string) []int {
		var v []int
		for _, f := range strings.Split(filepath.Base(filepath.Dir(d)), ".") {
			n, err := strconv.Atoi(f)
			if err != nil {
				n = -1
			}
			v = append(v, n)
		}
		return v
	}
	out := append([]string(nil), dirs...)
	sort.SliceStable(out, func(a, b int) bool {
		va, vb := version(out[a]), version(out[b])
		for k := 0; k < len(va) && k < len(vb); k++ {
			if va[k] != vb[k] {
				return va[k] > vb[k]
			}
		}
		return len(va) > len(vb)
	})
	return out
}
