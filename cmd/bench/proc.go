package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// envInfo is what the report says about the machine and the run.
type envInfo struct {
	nproc              int
	goVersion, goCmd   string
	date               string
	kernel, cpu, wrk   string
	memTotal           string
	loadStart, loadEnd string
	perf               bool
	elapsed            time.Duration
	otherProcs         string
}

func collectEnv() envInfo {
	e := envInfo{goVersion: runtime.Version(), date: time.Now().UTC().Format("2006-01-02 15:04 MST"), loadStart: readLoadavg()}
	if out, err := exec.Command("nproc").Output(); err == nil {
		e.nproc, _ = strconv.Atoi(strings.TrimSpace(string(out)))
	} else {
		e.nproc = runtime.NumCPU()
	}
	if out, err := exec.Command("go", "version").Output(); err == nil {
		e.goCmd = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("uname", "-sr").Output(); err == nil {
		e.kernel = strings.TrimSpace(string(out))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				e.cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "MemTotal:") {
				e.memTotal = strings.Join(strings.Fields(l)[1:], " ")
			}
		}
	}
	if out, _ := exec.Command("wrk", "--version").CombinedOutput(); len(out) > 0 {
		e.wrk = strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
		e.wrk = strings.TrimSuffix(e.wrk, " Copyright (C) 2012 Will Glozer")
	}
	e.perf = perfWorks()
	// What else runs on the machine: the busiest processes at the start.
	if out, err := exec.Command("ps", "-eo", "pcpu,comm", "--sort=-pcpu", "--no-headers").Output(); err == nil {
		var top []string
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			f := strings.Fields(l)
			if len(f) == 2 && f[1] != "ps" && len(top) < 6 {
				top = append(top, f[1]+" "+f[0]+"%")
			}
		}
		e.otherProcs = strings.Join(top, ", ")
	}
	return e
}

func readLoadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

func lookWrk() (string, error) {
	p, err := exec.LookPath("wrk")
	if err != nil {
		return "", errors.New("wrk is not installed: apt-get install -y wrk (make bench installs it)")
	}
	return p, nil
}

// build compiles the service into the temp dir.
func (h *harness) build() (string, error) {
	if *flagServerBin != "" {
		h.note("The service binary was %s (-server-bin), not a build of ./cmd/apikeys.", *flagServerBin)
		return *flagServerBin, nil
	}
	bin := filepath.Join(h.tmp, "apikeys")
	h.logf("go build -o %s ./cmd/apikeys", bin)
	cmd := exec.CommandContext(h.ctx, "go", "build", "-o", bin, "./cmd/apikeys")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build the service: %w", err)
	}
	return bin, nil
}

// proc is a child process: in its own process group, killed if the harness dies, its output
// in a log file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func (h *harness) startProc(name, path string, args, env []string) (*proc, error) {
	logPath := filepath.Join(h.tmp, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		f.Close()
		close(p.done)
	}()
	h.onCleanup(func() { p.stop() })
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, and SIGKILL to the group after 15 s.
func (p *proc) stop() {
	if p.exited() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		syscall.Kill(-p.pid(), syscall.SIGKILL)
		<-p.done
	}
}

// tail returns the last lines of the process's output, for error messages.
func (p *proc) tail(n int) string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// procStatus reads a field of /proc/<pid>/status in KiB (VmRSS, VmHWM).
func procStatus(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), field+":"); ok {
			fs := strings.Fields(rest)
			if len(fs) > 0 {
				return strconv.ParseInt(fs[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// server is a running apikeys process.
type server struct {
	*proc
	base  string // http://127.0.0.1:port
	admin string
	kind  string // PostgreSQL or SQLite
	// port and extraEnv, to start it again
	port     int
	extraEnv []string
}

const adminToken = "bench-admin-token-0123456789abcdef"

// startServer runs the service on dbURL with the production argon2id parameters and WARN
// logs (at INFO every request writes a JSON line to stderr, which would be measured too).
func (h *harness) startServer(bin, name, kind, dbURL string, extraEnv ...string) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	return h.startServerOn(bin, name, kind, dbURL, port, extraEnv...)
}

// restartServer starts a server like old, which has ended, on its port.
func (h *harness) restartServer(bin, name string, old *server, dbURL string) (*server, error) {
	return h.startServerOn(bin, name, old.kind, dbURL, old.port, old.extraEnv...)
}

func (h *harness) startServerOn(bin, name, kind, dbURL string, port int, extraEnv ...string) (*server, error) {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "APIKEYS_") && !strings.HasPrefix(kv, "GOMAXPROCS=") && !strings.HasPrefix(kv, "GOGC=") {
			env = append(env, kv)
		}
	}
	env = append(env, "APIKEYS_DATABASE_URL="+dbURL, fmt.Sprintf("APIKEYS_ADDR=127.0.0.1:%d", port),
		"APIKEYS_ADMIN_TOKEN="+adminToken, "APIKEYS_LOG_LEVEL=WARN")
	env = append(env, extraEnv...)
	if *flagServerEnv != "" {
		env = append(env, strings.Split(*flagServerEnv, ",")...)
		h.note("The servers ran with %s in their environment (-server-env).", *flagServerEnv)
	}
	p, err := h.startProc(name, bin, []string{"serve"}, env)
	if err != nil {
		return nil, err
	}
	s := &server{proc: p, base: fmt.Sprintf("http://127.0.0.1:%d", port), admin: adminToken, kind: kind, port: port, extraEnv: extraEnv}
	if err := h.waitReady(s.base+"/readyz", p, 90*time.Second); err != nil {
		return nil, err
	}
	return s, nil
}

func (h *harness) waitReady(url string, p *proc, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		if p.exited() {
			return fmt.Errorf("%s exited:\n%s", p.name, p.tail(20))
		}
		ctx, cancel := context.WithTimeout(h.ctx, time.Second)
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		res, err := http.DefaultClient.Do(req)
		cancel()
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		if h.ctx.Err() != nil {
			return h.ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s:\n%s", p.name, limit, p.tail(20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var apiClient = &http.Client{Timeout: 60 * time.Second}

// call sends a JSON request to the service and decodes the answer into out.
func (s *server) call(ctx context.Context, method, path, bearer string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.base+path, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+bearer)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := apiClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return res.StatusCode, err
	}
	if res.StatusCode >= 300 {
		return res.StatusCode, fmt.Errorf("%s %s: %d %s", method, path, res.StatusCode, bytes.TrimSpace(b))
	}
	if out != nil {
		return res.StatusCode, json.Unmarshal(b, out)
	}
	return res.StatusCode, nil
}

type createdKey struct {
	ID        string `json:"id"`
	SecretKey string `json:"secretKey"`
}

// createKey creates a key through the API as the admin.
func (s *server) createKey(ctx context.Context, body map[string]any) (createdKey, error) {
	var k createdKey
	_, err := s.call(ctx, "POST", "/api-keys", s.admin, body, &k)
	return k, err
}

// verifyCode verifies key with bearer and returns the answer's code.
func (s *server) verifyCode(ctx context.Context, bearer, key string) (string, error) {
	var v struct {
		Code string `json:"code"`
	}
	_, err := s.call(ctx, "POST", "/api-keys/verify", bearer, map[string]any{"key": key}, &v)
	return v.Code, err
}

// batchCreate creates n keys through POST /api-keys/batch, two requests at a time.
func (s *server) batchCreate(ctx context.Context, n int) ([]string, error) {
	type result struct {
		secrets []string
		err     error
	}
	var (
		out  []string
		sem  = make(chan struct{}, 2)
		res  = make(chan result)
		sent int
	)
	for left := n; left > 0; left -= 100 {
		size := min(left, 100)
		sent++
		go func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			keys := make([]map[string]any, size)
			for i := range keys {
				keys[i] = map[string]any{"name": "bench miss"}
			}
			var created []createdKey
			_, err := s.call(ctx, "POST", "/api-keys/batch", s.admin, map[string]any{"keys": keys}, &created)
			var r result
			r.err = err
			for _, c := range created {
				r.secrets = append(r.secrets, c.SecretKey)
			}
			res <- r
		}()
	}
	var first error
	for ; sent > 0; sent-- {
		r := <-res
		out = append(out, r.secrets...)
		if r.err != nil && first == nil {
			first = r.err
		}
	}
	return out, first
}

func jsonDecode(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }
