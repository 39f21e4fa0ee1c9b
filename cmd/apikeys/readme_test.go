package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	apikeys "github.com/qs/apikeys"
	"github.com/qs/apikeys/internal/testdb"
	"github.com/qs/apikeys/store"
)

func TestMain(m *testing.M) { os.Exit(testdb.Main(m)) }

// lockedBuffer collects a goroutine's output for the test to read.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// started is a service started by run, as `make run` starts it.
type started struct {
	url    string
	stdout *lockedBuffer
	stderr *lockedBuffer
	stop   func() error // cancels the context and returns run's result
}

func start(t *testing.T, env map[string]string) *started {
	t.Helper()
	addr := freeAddr(t)
	env["APIKEYS_ADDR"] = addr
	ctx, cancel := context.WithCancel(context.Background())
	s := &started{url: "http://" + addr, stdout: &lockedBuffer{}, stderr: &lockedBuffer{}}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve"}, func(k string) string { return env[k] }, nil, s.stdout, s.stderr)
	}()
	var once sync.Once
	var result error
	s.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case result = <-done:
			case <-time.After(20 * time.Second):
				result = fmt.Errorf("run did not return after cancel")
			}
		})
		return result
	}
	t.Cleanup(func() { s.stop() })

	deadline := time.Now().Add(15 * time.Second)
	for {
		res, err := http.Get(s.url + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return s
			}
		}
		select {
		case err := <-done:
			t.Fatalf("run returned before serving: %v\n%s", err, s.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz did not answer: %v\n%s", err, s.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// walkthrough returns the shell block of README.md between the walkthrough markers.
func walkthrough(t *testing.T) string {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)<!-- walkthrough:start -->\\s*```sh\\n(.*?)```\\s*<!-- walkthrough:end -->").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README.md has no walkthrough block")
	}
	return string(m[1])
}

// runWalkthrough runs the README's curl walkthrough against url with bash, as a newcomer
// would paste it; every jq -e in it is an assertion.
func runWalkthrough(t *testing.T, script, url, adminToken string) {
	t.Helper()
	for _, tool := range []string{"bash", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the README walkthrough needs %s: %v", tool, err)
		}
	}
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Env = append(os.Environ(), "APIKEYS_URL="+url, "APIKEYS_ADMIN_TOKEN="+adminToken)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("README walkthrough failed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), `"secretKey": "qs_live_`) {
		t.Errorf("walkthrough output does not show the created key:\n%s", out)
	}
}

// TestReadmeOnTheDefaults starts the service exactly as `make run` does on a fresh
// machine, with no configuration at all (SQLite under ./data, a generated admin token
// printed once), and runs the README walkthrough against it.
func TestReadmeOnTheDefaults(t *testing.T) {
	script := walkthrough(t) // before leaving the repository
	t.Chdir(t.TempDir())
	s := start(t, map[string]string{})
	m := regexp.MustCompile(`generated an admin token for this run only:\s+(\S+)`).FindStringSubmatch(s.stdout.String())
	if m == nil {
		t.Fatalf("no generated admin token was printed:\n%s", s.stdout.String())
	}
	token := m[1]
	if strings.Count(s.stdout.String(), token) != 1 {
		t.Errorf("the admin token was printed %d times", strings.Count(s.stdout.String(), token))
	}
	runWalkthrough(t, script, s.url, token)
	probe := func(k string) string {
		return map[string]string{"APIKEYS_ADDR": strings.TrimPrefix(s.url, "http://")}[k]
	}
	if err := run(context.Background(), []string{"healthcheck"}, probe, nil, io.Discard, io.Discard); err != nil {
		t.Errorf("healthcheck of a running service: %v", err)
	}
	if err := s.stop(); err != nil {
		t.Errorf("graceful shutdown: %v", err)
	}
	if err := run(context.Background(), []string{"healthcheck"}, probe, nil, io.Discard, io.Discard); err == nil {
		t.Error("healthcheck succeeded with the service stopped")
	}
	if _, err := os.Stat(filepath.Join("data", "apikeys.db")); err != nil {
		t.Errorf("the default SQLite database is not under ./data: %v", err)
	}
	if logs := s.stderr.String(); strings.Contains(logs, token) || strings.Contains(logs, "qs_live_") {
		t.Errorf("the log holds a secret:\n%s", logs)
	}
}

// TestReadmeOnEveryDatabase runs the walkthrough on each engine and checks that shutdown
// writes the usage still held in memory.
func TestReadmeOnEveryDatabase(t *testing.T) {
	for _, engine := range testdb.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			db := testdb.New(t, engine)
			const token = "readme-admin-token-0123456789"
			s := start(t, map[string]string{
				"APIKEYS_DATABASE_URL": db.URL, "APIKEYS_ADMIN_TOKEN": token,
				"APIKEYS_USAGE_FLUSH_INTERVAL": "1h", // only shutdown writes usage
			})
			runWalkthrough(t, walkthrough(t), s.url, token)
			if err := s.stop(); err != nil {
				t.Fatalf("graceful shutdown: %v", err)
			}
			if strings.Contains(s.stderr.String(), token) {
				t.Errorf("a configured admin token was printed")
			}
			st, err := store.Open(context.Background(), db.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			keys, _, err := st.ListKeys(context.Background(), apikeys.KeyFilter{Limit: 10, Now: time.Now(), IntendedUse: "ci-cd"})
			if err != nil || len(keys) != 2 {
				t.Fatalf("walkthrough left %d keys (%v), want 2", len(keys), err)
			}
			old := keys[1] // newest first: the rotated original is second
			if old.LastUsedAt == nil || old.LastUsedIP != "127.0.0.1" {
				t.Errorf("usage of the verified key was not written at shutdown: %v %q", old.LastUsedAt, old.LastUsedIP)
			}
		})
	}
}
