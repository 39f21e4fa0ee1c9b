package main

import (
	"bytes"
	"context"
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
		!c.generated || len(c.adminToken) < 32 || c.flushInterval != time.Second {
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
	}
	for _, kv := range bad {
		if _, err := loadConfig(env(kv...)); err == nil || !strings.Contains(err.Error(), kv[0][len("APIKEYS_"):len("APIKEYS_")+4]) && !strings.Contains(err.Error(), "argon2id") {
			t.Errorf("%s=%s: err = %v, want an error naming it", kv[0], kv[1], err)
		}
	}
}

func TestRunRejectsUnknownCommands(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"frobnicate"}, func(string) string { return "" }, &out, &out); err == nil {
		t.Error("run accepted an unknown command")
	}
	if err := run(context.Background(), []string{"--help"}, func(string) string { return "" }, &out, &out); err != nil || !strings.Contains(out.String(), "usage") {
		t.Errorf("--help: %v %q", err, out.String())
	}
}
