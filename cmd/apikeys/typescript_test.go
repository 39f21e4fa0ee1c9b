package main

// The TypeScript client of examples/typescript, run against the service binary: its types are
// generated from openapi.yaml, checked by tsc under strict, and its walk through create, list
// (following Link rel="next"), verify, rotate and revoke must succeed.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qs/apikeys/internal/testdb"
)

// typescriptBudget bounds the whole test, npm ci included.
const typescriptBudget = 3 * time.Minute

// TestTypeScriptExample runs `npm run example` in examples/typescript (npm ci first when
// node_modules is missing or older than the lock file) against the binary on SQLite, then
// checks what it printed and what it left in the service. Without Node 20+ and npm it skips,
// except under CI=true, where it fails.
func TestTypeScriptExample(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), typescriptBudget)
	defer cancel()
	needNode(t)
	dir, err := filepath.Abs(filepath.Join("..", "..", "examples", "typescript"))
	if err != nil {
		t.Fatal(err)
	}
	if stale, why := nodeModulesStale(dir); stale {
		t.Logf("npm ci: %s", why)
		if out, err := runNode(ctx, dir, nil, "npm", "ci", "--no-audit", "--no-fund"); err != nil {
			t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
		}
	}

	r := startReplicas(t, replicaEnv(testdb.New(t, testdb.SQLite).URL), "typescript")[0]
	out, err := runNode(ctx, dir, []string{"APIKEYS_URL=" + r.url, "APIKEYS_TOKEN=" + replicaAdminToken},
		"npm", "run", "example")
	if err != nil {
		t.Fatalf("npm run example: %v\n%s", err, out)
	}
	t.Logf("npm run example:\n%s", out)

	// Each step's line, in order.
	steps := []string{
		`created 5 keys for (tenant_ts_[0-9a-f]{8}): (apk_\S+) \(qs_live_\w{4}…\w{4}\)(?:, .*)?`,
		`listed 5 keys of tenant_ts_[0-9a-f]{8} in 3 pages of at most 2 \(2 \+ 2 \+ 1\), following Link rel="next"; no key on two pages`,
		`verified (apk_\S+) \(\S+\): VALID, subject subject_\S+`,
		`rotated (apk_\S+) to (apk_\S+) \(\S+\): new secret, same subject subject_\S+`,
		`revoked (apk_\S+) \(\S+\) at \S+`,
		`verified (apk_\S+) again: REVOKED`,
		`verified the rotated-out (apk_\S+): REVOKED`,
		`ok: every answer was as expected`,
	}
	text, matches := string(out), make([][]string, len(steps))
	for i, step := range steps {
		loc := regexp.MustCompile(`(?m)^` + step + `$`).FindStringSubmatchIndex(text)
		if loc == nil {
			t.Fatalf("the output has no line matching %q after the previous step's", step)
		}
		for j := 0; j < len(loc); j += 2 {
			matches[i] = append(matches[i], text[loc[j]:loc[j+1]])
		}
		text = text[loc[1]:]
	}
	tenant, first := matches[0][1], matches[0][2]
	rotatedFrom, rotated := matches[3][1], matches[3][2]
	if matches[2][1] != first || rotatedFrom != first || matches[6][1] != first {
		t.Errorf("verified %s, rotated %s, verified the rotated-out %s: want the first key %s each time",
			matches[2][1], rotatedFrom, matches[6][1], first)
	}
	if matches[4][1] != rotated || matches[5][1] != rotated {
		t.Errorf("revoked %s and verified %s: want the new key %s", matches[4][1], matches[5][1], rotated)
	}
	if s := regexp.MustCompile(`qs_live_\w{12,}`).FindString(string(out)); s != "" || bytes.Contains(out, []byte(replicaAdminToken)) {
		t.Errorf("the example printed a secret or the token (%.12s…)", s)
	}

	// What the service holds now: the tenant's six keys, the first and its replacement revoked.
	var keys []struct {
		ID            string `json:"id"`
		Status        string `json:"status"`
		RotatedFromID string `json:"rotatedFromId"`
	}
	c := newClient(t, r)
	if err := c.call(http.MethodGet, "/api-keys?limit=100&tenantId="+url.QueryEscape(tenant), nil, http.StatusOK, &keys); err != nil {
		t.Fatal(err)
	}
	status := map[string]string{}
	for _, k := range keys {
		status[k.ID] = k.Status
		if k.ID == rotated && k.RotatedFromID != first {
			t.Errorf("%s was rotated from %q, want %s", rotated, k.RotatedFromID, first)
		}
	}
	if len(keys) != 6 || status[first] != "revoked" || status[rotated] != "revoked" {
		t.Errorf("tenant %s holds %d keys (want 6) with statuses %v (want %s and %s revoked)", tenant, len(keys), status, first, rotated)
	}
}

// needNode fails (under CI=true) or skips the test when node 20+ or npm is missing.
func needNode(t *testing.T) {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		if os.Getenv("CI") != "" {
			t.Fatalf("%s (required when CI is set: install nodejs 20+ and npm)", msg)
		}
		t.Skipf("%s; skipped (never under CI=true)", msg)
	}
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing("examples/typescript needs %s: %v", tool, err)
		}
	}
	out, err := exec.Command("node", "--version").Output()
	if err != nil {
		missing("node --version: %v", err)
	}
	v := strings.TrimPrefix(strings.TrimSpace(string(out)), "v")
	major, err := strconv.Atoi(strings.SplitN(v, ".", 2)[0])
	if err != nil || major < 20 {
		missing("examples/typescript needs Node 20 or later, found %q", strings.TrimSpace(string(out)))
	}
}

// nodeModulesStale reports whether examples/typescript needs `npm ci`: npm writes
// node_modules/.package-lock.json last when it installs, so it is missing or older than
// package.json or package-lock.json when node_modules does not match them.
func nodeModulesStale(dir string) (bool, string) {
	installed, err := os.Stat(filepath.Join(dir, "node_modules", ".package-lock.json"))
	if err != nil {
		return true, "node_modules is not installed"
	}
	for _, f := range []string{"package.json", "package-lock.json"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.ModTime().After(installed.ModTime()) {
			return true, f + " is newer than node_modules"
		}
	}
	return false, ""
}

// runNode runs an npm command in dir with this process's environment, without its APIKEYS_
// settings, plus env. When ctx ends, the command's whole process group is killed: npm runs
// node through a shell.
func runNode(ctx context.Context, dir string, env []string, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "APIKEYS_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "npm_config_update_notifier=false", "NO_COLOR=1")
	cmd.Env = append(cmd.Env, env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		err = errors.Join(err, fmt.Errorf("the test's %s budget ran out", typescriptBudget))
	}
	return out.Bytes(), err
}
