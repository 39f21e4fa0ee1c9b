package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A stream as go test -json writes it for a package with a pass, a failing subtest, a skip
// with its reason, and one package whose build failed.
const stream = `{"Action":"start","Package":"example/a"}
{"Action":"run","Package":"example/a","Test":"TestPass"}
{"Action":"output","Package":"example/a","Test":"TestPass","Output":"=== RUN   TestPass\n"}
{"Action":"output","Package":"example/a","Test":"TestPass","Output":"    a_test.go:10: a log line of a passing test\n"}
{"Action":"output","Package":"example/a","Test":"TestPass","Output":"--- PASS: TestPass (0.00s)\n"}
{"Action":"pass","Package":"example/a","Test":"TestPass","Elapsed":0}
{"Action":"run","Package":"example/a","Test":"TestFail"}
{"Action":"output","Package":"example/a","Test":"TestFail","Output":"=== RUN   TestFail\n"}
{"Action":"run","Package":"example/a","Test":"TestFail/sub"}
{"Action":"output","Package":"example/a","Test":"TestFail/sub","Output":"    a_test.go:20: got 1, want 2\n"}
{"Action":"output","Package":"example/a","Test":"TestFail/sub","Output":"    --- FAIL: TestFail/sub (0.00s)\n"}
{"Action":"fail","Package":"example/a","Test":"TestFail/sub","Elapsed":0}
{"Action":"output","Package":"example/a","Test":"TestFail","Output":"--- FAIL: TestFail (0.00s)\n"}
{"Action":"fail","Package":"example/a","Test":"TestFail","Elapsed":0}
{"Action":"run","Package":"example/a","Test":"TestBrowser"}
{"Action":"output","Package":"example/a","Test":"TestBrowser","Output":"=== RUN   TestBrowser\n"}
{"Action":"output","Package":"example/a","Test":"TestBrowser","Output":"    docs_test.go:156: chromium is not installed\n"}
{"Action":"output","Package":"example/a","Test":"TestBrowser","Output":"--- SKIP: TestBrowser (0.00s)\n"}
{"Action":"skip","Package":"example/a","Test":"TestBrowser","Elapsed":0}
{"Action":"output","Package":"example/a","Output":"FAIL\n"}
{"Action":"output","Package":"example/a","Output":"FAIL\texample/a\t0.01s\n"}
{"Action":"fail","Package":"example/a","Elapsed":0.01}
{"Action":"output","Package":"example/b","Output":"PASS\n"}
{"Action":"output","Package":"example/b","Output":"ok  \texample/b\t0.01s\n"}
{"Action":"pass","Package":"example/b","Elapsed":0.01}
{"ImportPath":"example/c","Action":"build-output","Output":"c/c.go:3:1: syntax error\n"}
not JSON: a line of the go command
`

func TestReport(t *testing.T) {
	dir := t.TempDir()
	ran := filepath.Join(dir, "ran")
	if err := os.WriteFile(ran, []byte("sqlite\tSQLite, embedded\ta\nsqlite\tSQLite, embedded\tb\npostgres\tPostgreSQL 17 at x\tb\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	r := newReport(&out)
	for _, l := range strings.Split(strings.TrimSuffix(stream, "\n"), "\n") {
		r.line([]byte(l))
	}
	code := r.finish(ran, filepath.Join(dir, "no-notice"))
	got := out.String()
	for _, want := range []string{
		"    a_test.go:20: got 1, want 2\n    --- FAIL: TestFail/sub (0.00s)\n--- FAIL: TestFail (0.00s)\n",
		"FAIL\texample/a\t0.01s\n",
		"ok  \texample/b\t0.01s\n",
		"c/c.go:3:1: syntax error\n",
		"not JSON: a line of the go command\n",
		"  - PostgreSQL 17 at x (b)\n  - SQLite, embedded (a, b)\n",
		"1 test was SKIPPED",
		"  - a TestBrowser: docs_test.go:156: chromium is not installed\n",
		"\n1 passed, 2 failed, 1 skipped\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the report lacks %q:\n%s", want, got)
		}
	}
	for _, not := range []string{"a log line of a passing test", "=== RUN", "--- PASS", "PASS\n", "--- SKIP", "PostgreSQL was not available"} {
		if strings.Contains(got, not) {
			t.Errorf("the report holds %q, which go test without -json does not print:\n%s", not, got)
		}
	}
	if code != 1 {
		t.Errorf("exit status %d with a failed test, want 1", code)
	}
}

func TestReportExitStatus(t *testing.T) {
	for name, tt := range map[string]struct {
		lines []string
		want  int
	}{
		"all passed":                              {[]string{`{"Action":"pass","Package":"p","Test":"TestA"}`, `{"Action":"pass","Package":"p"}`}, 0},
		"skips only are no failure":               {[]string{`{"Action":"pass","Package":"p","Test":"TestA"}`, `{"Action":"skip","Package":"p","Test":"TestB"}`}, 0},
		"no test at all":                          {[]string{`{"Action":"output","Package":"p","Output":"ok  \tp\t0.01s [no tests to run]\n"}`}, 1},
		"a package failed without a failing test": {[]string{`{"Action":"pass","Package":"p","Test":"TestA"}`, `{"Action":"fail","Package":"p"}`}, 1},
	} {
		var out bytes.Buffer
		r := newReport(&out)
		for _, l := range tt.lines {
			r.line([]byte(l))
		}
		if got := r.finish("", ""); got != tt.want {
			t.Errorf("%s: exit status %d, want %d\n%s", name, got, tt.want, out.String())
		}
	}
}
