// Command testreport reads `go test -json` on standard input and writes what `go test`
// writes without -json (the "ok" line of each package, the output of each failing test,
// build errors), then the report make test ends with: the databases the suite ran on, the
// tests that were skipped and why, and one closing line "N passed, N failed, N skipped".
// It exits 1 when a test or a package failed, or when its input held no test.
//
//	go test -json ./... 2>&1 | go run ./tools/testreport -ran FILE -notice FILE
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

type skip struct{ pkg, test, why string }

// report holds what the stream has said so far.
type report struct {
	out                    io.Writer
	buffered               map[string][]string // package + top-level test → its output, printed if it fails
	passed, failed         int
	skipped                []skip
	packagesFailed         int
	testOutput             map[string][]string // package + test → its own lines, for the reason of a skip
	sawTest, sawFailOutput bool
}

func newReport(out io.Writer) *report {
	return &report{out: out, buffered: map[string][]string{}, testOutput: map[string][]string{}}
}

func top(test string) string { t, _, _ := strings.Cut(test, "/"); return t }

// line takes one line of input: an event, or text that is not one (go vet, a panic of the
// go command), which is printed as it is.
func (r *report) line(b []byte) {
	var e event
	if len(b) == 0 || b[0] != '{' || json.Unmarshal(b, &e) != nil || e.Action == "" {
		fmt.Fprintf(r.out, "%s\n", b)
		return
	}
	switch {
	case e.Action == "build-output":
		fmt.Fprint(r.out, e.Output)
	case e.Test == "" && e.Action == "output":
		// The package's own lines: "ok", "FAIL", "PASS" (which go test without -json does not
		// print for a package that passed), and what a TestMain prints.
		if e.Output != "PASS\n" {
			fmt.Fprint(r.out, e.Output)
		}
	case e.Test == "" && e.Action == "fail":
		r.packagesFailed++
	case e.Test == "":
	case e.Action == "output":
		k := e.Package + "\x00" + top(e.Test)
		if !strings.HasPrefix(e.Output, "=== ") {
			r.buffered[k] = append(r.buffered[k], e.Output)
		}
		own := e.Package + "\x00" + e.Test
		if !strings.HasPrefix(e.Output, "=== ") && !strings.HasPrefix(strings.TrimSpace(e.Output), "--- ") {
			r.testOutput[own] = append(r.testOutput[own], strings.TrimSpace(e.Output))
		}
	case e.Action == "pass" || e.Action == "fail" || e.Action == "skip":
		r.sawTest = true
		switch e.Action {
		case "pass":
			r.passed++
		case "fail":
			r.failed++
		case "skip":
			r.skipped = append(r.skipped, skip{e.Package, e.Test, strings.Join(r.testOutput[e.Package+"\x00"+e.Test], " ")})
		}
		delete(r.testOutput, e.Package+"\x00"+e.Test)
		if e.Test == top(e.Test) {
			k := e.Package + "\x00" + e.Test
			if e.Action == "fail" {
				for _, l := range r.buffered[k] {
					fmt.Fprint(r.out, l)
				}
			}
			delete(r.buffered, k)
		}
	}
}

// finish writes the closing report and returns the exit status.
func (r *report) finish(ranFile, noticeFile string) int {
	fmt.Fprintln(r.out, "\nmake test: the databases the suite ran on (packages):")
	databases(r.out, ranFile)
	if b, err := os.ReadFile(noticeFile); err == nil && len(b) > 0 {
		fmt.Fprint(r.out, "\n"+strings.Repeat("!", 81)+"\n"+
			"!!! PostgreSQL was not available: ONLY THE SQLITE HALF OF THE SUITE RAN.       !!!\n"+
			"!!! Set APIKEYS_TEST_DATABASE_URL, run PostgreSQL on 127.0.0.1:5432, or install !!!\n"+
			"!!! its server binaries (initdb, pg_ctl) for a throwaway cluster.               !!!\n"+
			strings.Repeat("!", 81)+"\n")
		fmt.Fprintf(r.out, "%s", b)
	}
	if len(r.skipped) > 0 {
		were := "tests were"
		if len(r.skipped) == 1 {
			were = "test was"
		}
		fmt.Fprintf(r.out, "\nmake test: %d %s SKIPPED, so this run is not the whole suite; bash .ci/run installs what they need (chromium, node and npm, PostgreSQL), see README: Testing:\n", len(r.skipped), were)
		sort.Slice(r.skipped, func(i, j int) bool {
			return r.skipped[i].pkg+r.skipped[i].test < r.skipped[j].pkg+r.skipped[j].test
		})
		for _, s := range r.skipped {
			why := s.why
			if why == "" {
				why = "(it gave no reason)"
			}
			fmt.Fprintf(r.out, "  - %s %s: %s\n", s.pkg[strings.LastIndex(s.pkg, "/")+1:], s.test, why)
		}
	}
	fmt.Fprintf(r.out, "\n%d passed, %d failed, %d skipped\n", r.passed, r.failed, len(r.skipped))
	if r.failed > 0 || r.packagesFailed > 0 || !r.sawTest {
		return 1
	}
	return 0
}

// databases lists the lines testdb appended to ranFile ("engine\twhere\tpackage"), one a
// database with the packages that used it.
func databases(w io.Writer, ranFile string) {
	b, _ := os.ReadFile(ranFile)
	pkgs := map[string][]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Split(l, "\t")
		if len(f) == 3 && !slices.Contains(pkgs[f[1]], f[2]) {
			pkgs[f[1]] = append(pkgs[f[1]], f[2])
		}
	}
	if len(pkgs) == 0 {
		fmt.Fprintln(w, "  - none: no test created a database")
		return
	}
	var where []string
	for k := range pkgs {
		where = append(where, k)
	}
	sort.Strings(where)
	for _, k := range where {
		sort.Strings(pkgs[k])
		fmt.Fprintf(w, "  - %s (%s)\n", k, strings.Join(pkgs[k], ", "))
	}
}

func main() {
	ran := flag.String("ran", "", "the file testdb lists the databases in (APIKEYS_TEST_RAN_FILE)")
	notice := flag.String("notice", "", "the file testdb writes when PostgreSQL was missing (APIKEYS_TEST_NOTICE_FILE)")
	flag.Parse()
	r := newReport(os.Stdout)
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		r.line(sc.Bytes())
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(os.Stdout, "testreport:", err)
		os.Exit(1)
	}
	os.Exit(r.finish(*ran, *notice))
}
