package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/qs/apikeys/keys"
)

func TestLoadConfig(t *testing.T) {
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	c, err := loadConfig(env())
	if err != nil {
		t.Fatal(err)
	}
	if c.databaseURL != "file:data/apikeys.db" || c.addr != ":8080" || c.prefix != "qs_live_" || c.hash != keys.DefaultParams() ||
		!c.generated || len(c.adminToken) < 32 || c.flushInterval != time.Second ||
		c.dbTimeout != 3*time.Second || c.requestTimeout != 10*time.Second || c.idleTimeout != 30*time.Second ||
		c.maxConns < 16 || c.bodyBudget != 8<<20 {
		t.Errorf("defaults = %+v", c)
	}
	c, err = loadConfig(env("APIKEYS_ADMIN_TOKEN", "0123456789abcdef", "APIKEYS_KEY_PREFIX", "acme_test_",
		"APIKEYS_ARGON2_MEMORY_KIB", "65536", "APIKEYS_ARGON2_ITERATIONS", "3", "APIKEYS_ARGON2_PARALLELISM", "2",
		"APIKEYS_USAGE_FLUSH_INTERVAL", "250ms", "APIKEYS_LOG_LEVEL", "debug", "APIKEYS_CACHE_ENTRIES", "1000"))
	if err != nil {
		t.Fatal(err)
	}
	if c.generated || c.prefix != "acme_test_" || c.hash.MemoryKiB != 65536 || c.hash.Iterations != 3 || c.hash.Parallelism != 2 ||
		c.flushInterval != 250*time.Millisecond || c.logLevel.String() != "DEBUG" || c.cacheEntries != 1000 {
		t.Errorf("configured = %+v", c)
	}
	bad := [][]string{
		{"APIKEYS_ADMIN_TOKEN", "short"},
		{"APIKEYS_KEY_PREFIX", "QS-LIVE"},
		{"APIKEYS_ARGON2_MEMORY_KIB", "lots"},
		{"APIKEYS_ARGON2_MEMORY_KIB", "1"},
		{"APIKEYS_ARGON2_ITERATIONS", "0"},
		{"APIKEYS_ARGON2_PARALLELISM", "300"},
		{"APIKEYS_USAGE_FLUSH_INTERVAL", "-1s"},
		{"APIKEYS_LOG_LEVEL", "loud"},
		{"APIKEYS_CACHE_ENTRIES", "0"},
		{"APIKEYS_CACHE_ENTRIES", "many"},
		{"APIKEYS_DB_TIMEOUT", "0"},
		{"APIKEYS_DB_TIMEOUT", "forever"},
		{"APIKEYS_REQUEST_TIMEOUT", "1ms"},
		{"APIKEYS_IDLE_TIMEOUT", "2h"},
		{"APIKEYS_MAX_CONNS", "0"},
		{"APIKEYS_BODY_BUDGET_MIB", "-1"},
		{"APIKEYS_DB_TIMEOUT", "20s"}, // not shorter than the request timeout
	}
	for _, kv := range bad {
		if _, err := loadConfig(env(kv...)); err == nil || !strings.Contains(err.Error(), kv[0][len("APIKEYS_"):len("APIKEYS_")+4]) && !strings.Contains(err.Error(), "argon2id") {
			t.Errorf("%s=%s: err = %v, want an error naming it", kv[0], kv[1], err)
		}
	}
}

func TestRunRejectsUnknownCommands(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"frobnicate"}, func(string) string { return "" }, nil, &out, &out); err == nil {
		t.Error("run accepted an unknown command")
	}
	if err := run(context.Background(), []string{"--help"}, func(string) string { return "" }, nil, &out, &out); err != nil || !strings.Contains(out.String(), "usage") {
		t.Errorf("--help: %v %q", err, out.String())
	}
}

// TestUnknownCommandsAreNamed: a mistyped command is reported as the command, on one line
// with the commands it may have meant, whatever flags follow it.
func TestUnknownCommandsAreNamed(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"key", "list"}, `unknown command "key" for "apikeys" (did you mean keys?)`},
		{[]string{"kyes", "list", "--tenant-id", "x"}, `unknown command "kyes" for "apikeys" (did you mean keys?)`},
		{[]string{"keys", "creat", "--name", "x"}, `unknown command "creat" for "apikeys keys" (did you mean create?)`},
		{[]string{"subjects", "gt", "--id", "x"}, `unknown command "gt" for "apikeys subjects" (did you mean get?)`},
		{[]string{"frobnicate"}, `unknown command "frobnicate" for "apikeys"` + "\n"},
	} {
		r := runCLI(map[string]string{}, "", tt.args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, tt.want) || strings.Contains(r.stderr, `\u{`) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tt.args, r.code, r.stderr, exitUsage, tt.want)
		}
	}
	// An unknown flag of a known command is still the flag.
	if r := runCLI(map[string]string{}, "", "keys", "list", "--bogus"); r.code != exitUsage || !strings.Contains(r.stderr, "unknown flag: --bogus") {
		t.Errorf("keys list --bogus: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestVersion: --version and version print the build's version, commit and Go release.
func TestVersion(t *testing.T) {
	a, b := runCLI(map[string]string{}, "", "--version"), runCLI(map[string]string{}, "", "version")
	if a.code != 0 || b.code != 0 || a.stdout != b.stdout || !strings.HasPrefix(a.stdout, "apikeys ") ||
		!strings.Contains(a.stdout, "commit ") || !strings.Contains(a.stdout, runtime.Version()) {
		t.Errorf("--version: %d %q; version: %d %q", a.code, a.stdout, b.code, b.stdout)
	}
	// The binary make build makes names the commit it was built from.
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatalf("git rev-parse HEAD: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "apikeys")
	if out, err := exec.Command("make", "-s", "-C", "../..", "build", "BIN="+bin).CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").Output()
	if want := "commit " + string(head[:12]); err != nil || !strings.Contains(string(out), want) {
		t.Errorf("the built binary's --version: %q, %v; want it to name %s", out, err, want)
	}
}

// TestDatabaseURLPasswordIsNeverPrinted: a malformed or unreachable database URL is reported
// without its password.
func TestDatabaseURLPasswordIsNeverPrinted(t *testing.T) {
	for _, url := range []string{
		"postgres://apikeys:s3cret-pw@127.0.0.1:notaport/db",
		"postgres://apikeys:s3cret-pw@127.0.0.1:1/db?sslmode=bogus",
		"postgres://apikeys:s3cret-pw@127.0.0.1:1/db?connect_timeout=1",
		"postgres://apikeys:s3cret-pw@[::1/db",
	} {
		var out bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := run(ctx, nil, func(k string) string {
			return map[string]string{"APIKEYS_DATABASE_URL": url, "APIKEYS_ADDR": "127.0.0.1:0", "APIKEYS_DB_TIMEOUT": "1s"}[k]
		}, nil, &out, &out)
		cancel()
		if err == nil {
			t.Errorf("%s: run started", url)
			continue
		}
		if strings.Contains(err.Error()+out.String(), "s3cret-pw") {
			t.Errorf("the password was printed: %v\n%s", err, out.String())
		}
	}
}

// TestTokenIsPrintedOnlyOnceServing: the generated admin token is printed after the listener
// is up, so a run that cannot start (here: its port is taken) prints none; a run that starts
// prints it once, after the address and the interfaces it listens on.
func TestTokenIsPrintedOnlyOnceServing(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dir := t.TempDir()
	env := func(addr string) func(string) string {
		return func(k string) string {
			return map[string]string{"APIKEYS_DATABASE_URL": "file:" + dir + "/k.db", "APIKEYS_ADDR": addr}[k]
		}
	}
	out := &lockedBuffer{}
	err = run(context.Background(), nil, env(taken.Addr().String()), nil, out, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("serving on a taken port: err = %v", err)
	}
	if strings.Contains(out.String(), "admin token") {
		t.Errorf("a run that never served printed an admin token:\n%s", out.String())
	}

	out = &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, env("127.0.0.1:0"), nil, out, io.Discard) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "Set APIKEYS_ADMIN_TOKEN") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	s := out.String()
	listening, token := strings.Index(s, "apikeys listening on http://127.0.0.1:"), strings.Index(s, "generated an admin token")
	if listening < 0 || token < listening || strings.Count(s, "generated an admin token") != 1 {
		t.Errorf("want the address, then the token once:\n%s", s)
	}
	if !strings.Contains(s, "(this machine only)") {
		t.Errorf("the start-up line does not say who can reach it:\n%s", s)
	}
}

// TestSettingsAreDocumented: the variables the service reads, the ones serve --help lists and
// the ones README.md's Configuration table names are one list.
func TestSettingsAreDocumented(t *testing.T) {
	read := map[string]bool{}
	getenv := func(k string) string { read[k] = true; return "" }
	if _, err := loadConfig(getenv); err != nil {
		t.Fatal(err)
	}
	tuneGC(getenv)
	listed := map[string]bool{}
	for _, s := range settings {
		listed[s.name] = true
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, config, _ := strings.Cut(string(readme), "## Configuration\n")
	config, _, _ = strings.Cut(config, "\n\n")
	inReadme := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| (`[A-Z0-9_]+`(?:, `[A-Z0-9_]+`)*) \\|").FindAllStringSubmatch(config, -1) {
		for _, name := range strings.Split(m[1], ", ") {
			inReadme[strings.Trim(name, "`")] = true
		}
	}
	help := runCLI(map[string]string{}, "", "serve", "--help")
	for name := range read {
		if !listed[name] {
			t.Errorf("the service reads %s, which settings does not list", name)
		}
	}
	for name := range listed {
		if !read[name] {
			t.Errorf("settings lists %s, which the service does not read", name)
		}
		if !inReadme[name] {
			t.Errorf("README.md's Configuration table does not name %s", name)
		}
		if !strings.Contains(help.stdout, "\n  "+name+" ") {
			t.Errorf("serve --help does not list %s:\n%s", name, help.stdout)
		}
	}
	for name := range inReadme {
		if !listed[name] {
			t.Errorf("README.md's Configuration table names %s, which settings does not list", name)
		}
	}
}

func TestParseDays(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"30d": 30 * 24 * time.Hour, "1d12h": 36 * time.Hour, "12h": 12 * time.Hour, "90m": 90 * time.Minute,
		"0d": 0, "-1d": -24 * time.Hour, "2d30m": 48*time.Hour + 30*time.Minute,
	} {
		if got, err := parseDays(in); err != nil || got != want {
			t.Errorf("parseDays(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "d", "30", "30x", "1d-1h", "1d+1h", "1.5d", "123456d", "1dd"} {
		if got, err := parseDays(in); err == nil {
			t.Errorf("parseDays(%q) = %v, want an error", in, got)
		}
	}
}

func TestDBName(t *testing.T) {
	for in, want := range map[string]string{
		"file:data/apikeys.db":                                                       "SQLite database data/apikeys.db",
		"file:/var/lib/apikeys.db?_pragma=busy_timeout(5000)":                        "SQLite database /var/lib/apikeys.db",
		"postgres://apikeys:s3cret@db.internal:5432/keys?sslmode=require&password=x": "PostgreSQL database keys as apikeys on db.internal:5432",
	} {
		if got := dbName(in); got != want {
			t.Errorf("dbName(%q) = %q, want %q", in, got, want)
		}
	}
}
