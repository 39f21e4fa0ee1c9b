package main

import (
	"bytes"
	"context"
	"io"
	"net"
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
