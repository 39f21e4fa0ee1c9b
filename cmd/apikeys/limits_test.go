package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// sqliteEnv is replicaEnv on a SQLite file of the test's own.
func sqliteEnv(t *testing.T, extra ...string) []string {
	return append(replicaEnv("file:"+filepath.Join(t.TempDir(), "apikeys.db")), extra...)
}

// procStatus reads a field of /proc/<pid>/status in KiB (VmRSS, VmHWM).
func procStatus(pid int, field string) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// TestHostileBodiesStayWithinMemory sends 100 hostile batch bodies of up to 1 MiB at once, as
// any key with api_keys:write may: metadata that is one huge array, a huge array where no
// member belongs, and 100 items whose metadata are each within their size but hold 2,000
// values (so the validator does build their trees) with one name invalid. Every answer must
// be a 4xx, and the server's peak RSS stay within 300 MiB. Before the bounds, 100 such
// bodies took the process from 41 MB to 3.4 GB.
func TestHostileBodiesStayWithinMemory(t *testing.T) {
	r := startReplicas(t, sqliteEnv(t), "hostile")[0]
	ones := func(n int) string { return "[" + strings.Repeat("1,", n-1) + "1]" }
	meta := `{"a":` + ones(2000) + `}`
	items := make([]string, 100)
	for i := range items {
		items[i] = `{"name":"k` + strconv.Itoa(i) + `","metadata":` + meta + `}`
	}
	items[99] = `{"name":"","metadata":` + meta + `}`
	bodies := []string{
		`{"keys":[{"name":"x","metadata":{"a":` + ones(520_000) + `}}]}`,
		`{"keys":[{"name":"x"}],"junk":` + ones(520_000) + `}`,
		`{"keys":[` + strings.Join(items, ",") + `]}`,
	}
	for i, b := range bodies {
		if len(b) > 1<<20 {
			t.Fatalf("body %d is %d bytes, over the 1 MiB limit", i, len(b))
		}
	}
	start, err := procStatus(r.proc.Pid, "VmRSS")
	if err != nil {
		t.Fatal(err)
	}
	statuses := map[int]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	began := time.Now()
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", r.url+"/api-keys/batch", strings.NewReader(bodies[i%len(bodies)]))
			req.Header.Set("Authorization", "Bearer "+replicaAdminToken)
			req.Header.Set("Content-Type", "application/json")
			status := 0
			if res, err := (&http.Client{Timeout: 30 * time.Second}).Do(req); err == nil {
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				status = res.StatusCode
			}
			mu.Lock()
			statuses[status]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	took := time.Since(began)
	peak, err := procStatus(r.proc.Pid, "VmHWM")
	if err != nil {
		t.Fatal(err)
	}
	for status, n := range statuses {
		if status < 400 || status >= 500 {
			t.Errorf("%d answers were %d (0: no answer); every one must be a 4xx", n, status)
		}
	}
	t.Logf("100 hostile 1 MiB batch bodies: statuses %v in %v; RSS %d MiB before, peak %d MiB", statuses, took.Round(time.Millisecond), start/1024, peak/1024)
	if peak > 300<<10 {
		t.Errorf("peak RSS %d MiB, over 300 MiB", peak/1024)
	}
	reliabilityReport(t, fmt.Sprintf("| 100 concurrent hostile 1 MiB batch bodies | statuses %v in %v; RSS %d MiB before, peak (VmHWM) %d MiB | ≤ 300 MiB, all 4xx |",
		statuses, took.Round(time.Millisecond), start/1024, peak/1024))
}

// reliabilityReport appends a line to the file named by APIKEYS_RELIABILITY_REPORT, if set.
func reliabilityReport(t *testing.T, line string) {
	if path := os.Getenv("APIKEYS_RELIABILITY_REPORT"); path != "" {
		if err := appendFile(path, line+"\n"); err != nil {
			t.Errorf("APIKEYS_RELIABILITY_REPORT: %v", err)
		}
	}
}

// TestConnectionsAreBounded fills the server's connections (APIKEYS_MAX_CONNS) with
// keep-alive clients: a health probe still answers, on a spare connection; any other request
// there gets 503 with Retry-After and Connection: close; connections beyond the spares are
// closed at once rather than left to exhaust file descriptors; and idle connections are
// closed after APIKEYS_IDLE_TIMEOUT, which frees the server for new clients.
func TestConnectionsAreBounded(t *testing.T) {
	const maxConns = 20
	r := startReplicas(t, sqliteEnv(t, "APIKEYS_MAX_CONNS="+strconv.Itoa(maxConns), "APIKEYS_IDLE_TIMEOUT=2s"), "bounded")[0]
	addr := strings.TrimPrefix(r.url, "http://")
	// Requests on one connection, read with a bufio.Reader that lives as long as it.
	type conn struct {
		net.Conn
		rd *bufio.Reader
	}
	get := func(c conn, path string) (*http.Response, error) {
		c.SetDeadline(time.Now().Add(3 * time.Second))
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", path, replicaAdminToken)
		res, err := http.ReadResponse(c.rd, nil)
		if err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
		return res, err
	}
	dial := func() conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return conn{c, bufio.NewReader(c)}
	}
	// Keep-alive clients take every connection the server serves in full.
	for i := range maxConns {
		c := dial()
		if res, err := get(c, "/api-keys?limit=1"); err != nil || res.StatusCode != 200 {
			t.Fatalf("client %d: %v %v", i, err, res)
		}
	}
	probe := dial()
	began := time.Now()
	res, err := get(probe, "/readyz")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("a health probe at the limit: %v %v", err, res)
	}
	t.Logf("a health probe at the limit answered 200 in %v", time.Since(began).Round(time.Microsecond))
	if !res.Close {
		t.Error("the probe's spare connection is not closed after its answer")
	}
	res, err = get(dial(), "/api-keys?limit=1")
	if err != nil || res.StatusCode != 503 || res.Header.Get("Retry-After") == "" || res.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("an API request at the limit: %v %+v", err, res)
	}
	// Idle connections fill the spares too; beyond them a connection is closed at once.
	for range 64 {
		dial()
	}
	// Under load the server may not have accepted all of them yet, and a connection dialled
	// now can take a spare left: each one not closed at once fills one more, so within a few
	// tries a connection is beyond the spares, and must be closed at once.
	closed := false
	for try := 0; try < 20 && !closed; try++ {
		beyond := dial()
		beyond.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, err := beyond.Read(make([]byte, 1))
		closed = err != nil && n == 0 && !isTimeout(err)
	}
	if !closed {
		t.Errorf("20 connections beyond the 64 spares: none was closed at once")
	}
	// The keep-alive clients go idle: after the idle timeout the server closes them, and the
	// spare connections end within their lifetime, so a new client is served in full.
	time.Sleep(2500 * time.Millisecond)
	res, err = get(dial(), "/api-keys?limit=1")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("after the idle timeout: %v %+v", err, res)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
