package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// profile is a system-wide CPU profile taken while a row ran again.
type profile struct {
	row    string
	result string
	split  string // CPU by process
	self   string // the busiest functions of the profiled process, self time
	cum    string // the same, inclusive time
}

func perfWorks() bool {
	if _, err := exec.LookPath("perf"); err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, "perf", "record", "-e", "cpu-clock", "-o", "/dev/null", "-q", "--", "true").Run() == nil
}

var perfSeq int

// profileRow runs run (a wrk row) again under `perf record -a -g` (cpu-clock, 499 Hz) and
// keeps the split of CPU between processes, the top functions of process pid and the
// inclusive share of the stages a request goes through.
func (h *harness) profileRow(name string, pid int, run func() (string, error)) {
	if !*flagProfile || !h.env.perf {
		return
	}
	perfSeq++
	data := filepath.Join(h.tmp, fmt.Sprintf("perf%02d.data", perfSeq))
	secs := max(int((*flagDur-2*time.Second)/time.Second), 2)
	ctx, cancel := context.WithTimeout(h.ctx, *flagDur+3*time.Minute)
	defer cancel()
	rec := exec.CommandContext(ctx, "perf", "record", "-F", "499", "-e", "cpu-clock", "-g", "-a", "-q", "-o", data, "--", "sleep", strconv.Itoa(secs))
	if err := rec.Start(); err != nil {
		h.logf("perf record: %v", err)
		return
	}
	r, err := run()
	rec.Wait()
	if err != nil {
		h.logf("profile of %s: %v", name, err)
		return
	}
	report := func(limit int, args ...string) []string {
		args = append([]string{"report", "-i", data, "--stdio", "-g", "none"}, args...)
		out, err := exec.CommandContext(ctx, "perf", args...).Output()
		if err != nil {
			return []string{"perf report: " + err.Error()}
		}
		var keep []string
		for _, l := range strings.Split(string(out), "\n") {
			if t := strings.TrimSpace(l); t == "" || strings.HasPrefix(t, "#") {
				continue
			}
			keep = append(keep, strings.TrimRight(l, " -"))
		}
		if limit > 0 && len(keep) > limit {
			keep = keep[:limit]
		}
		return keep
	}
	p := profile{row: name, result: r}
	p.split = h.split(ctx, data, pid)
	ps := strconv.Itoa(pid)
	p.self = strings.Join(report(30, "--no-children", "--pid", ps, "--sort", "dso,symbol", "--percentage", "relative", "--percent-limit", "0.5"), "\n")
	p.cum = stages(report(0, "--children", "--pid", ps, "--sort", "symbol", "--percentage", "relative", "--percent-limit", "0.3"))
	h.profiles = append(h.profiles, p)
	h.logf("profiled %s under perf: %s", name, r)
}

// stageSymbols are the functions whose inclusive time tells where a request's time goes,
// outermost first: each middleware's share includes every stage inside it.
var stageSymbols = []struct{ sym, what string }{
	{"net/http.(*conn).serve", "serving connections (all of a request's work in Go)"},
	{"net/http.(*conn).readRequest", "reading and parsing the request"},
	{"net/http.(*response).finishRequest", "flushing the response"},
	{"github.com/labstack/echo/v4.(*Echo).ServeHTTP", "Echo: routing and the middleware chain"},
	{"server.(*Server).logRequests", "logRequests middleware and all inside it"},
	{"server.(*Server).checkQuery", "checkQuery middleware and all inside it"},
	{"server.(*Server).authenticate", "authenticate middleware and all inside it"},
	{"service.(*Service).Authenticate", "  service.Authenticate (bearer: admin hash or the verifier)"},
	{"server.(*Server).checkBody", "checkBody middleware and all inside it"},
	{"apikeys.CheckJSONText", "  apikeys.CheckJSONText"},
	{"echo-middleware.OapiRequestValidatorWithOptions", "OpenAPI request validator and all inside it"},
	{"openapi3filter.ValidateRequest", "  openapi3filter.ValidateRequest (kin-openapi)"},
	{"routers/gorillamux.(*Router).FindRoute", "  the validator's route lookup (gorilla/mux)"},
	{"gen.(*strictHandler).", "the generated strict handler (decode, call, encode)"},
	{"encoding/json.(*Decoder).Decode", "  encoding/json decoding"},
	{"server.(*Server).VerifyApiKey", "  server.VerifyApiKey"},
	{"service.(*Service).Verify", "    service.Verify"},
	{"service.(*verifier).check", "    the verifier (parse, cache, memo)"},
	{"server.(*Server).ListApiKeys", "  server.ListApiKeys"},
	{"store.(*Store).ListKeys", "    store.ListKeys (query and scan)"},
	{"server.(*Server).CreateApiKey", "  server.CreateApiKey"},
	{"keys.(*Hasher).Hash", "    argon2id (in its slot)"},
	{"store.(*Store).CreateKeys", "    store.CreateKeys"},
	{"echo/v4.(*context).JSON", "  JSON encoding of the answer (echo)"},
	{"encoding/json.(*encodeState).marshal", "  encoding/json encoding"},
	{"regexp.(*Regexp)", "regexp, anywhere"},
	{"runtime.gcBgMarkWorker", "GC background marking"},
	{"runtime.mallocgc", "allocation (mallocgc)"},
	{"runtime.gcAssistAlloc", "GC assists charged to requests"},
	{"runtime.mcall", "scheduler (mcall)"},
	{"syscall.Syscall", "syscalls from Go (read, write)"},
	{"runtime.netpoll", "network poller"},
	{"do_syscall_64", "kernel: system calls"},
}

// stages picks the stage functions' inclusive shares out of `perf report --children`.
func stages(lines []string) string {
	share := map[string]string{}
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) < 4 || !strings.HasSuffix(f[0], "%") {
			continue
		}
		sym := strings.Join(f[3:], " ")
		for _, s := range stageSymbols {
			if _, seen := share[s.sym]; !seen && strings.Contains(sym, s.sym) {
				share[s.sym] = f[0]
			}
		}
	}
	var b strings.Builder
	for _, s := range stageSymbols {
		if v, ok := share[s.sym]; ok {
			fmt.Fprintf(&b, "%8s  %s\n", v, s.what)
		}
	}
	return strings.TrimRight(b.String(), "\n")
}

// split says how the samples of both cores divide between the profiled process, the load
// generator, PostgreSQL, idle and the rest (by process, from `perf script`).
func (h *harness) split(ctx context.Context, data string, pid int) string {
	out, err := exec.CommandContext(ctx, "perf", "script", "-i", data, "-F", "comm,pid").Output()
	if err != nil {
		return "perf script: " + err.Error()
	}
	type group struct {
		name string
		n    int
	}
	groups := map[string]*group{}
	total := 0
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		p, err := strconv.Atoi(f[len(f)-1])
		if err != nil {
			continue
		}
		comm := strings.Join(f[:len(f)-1], " ")
		total++
		key := fmt.Sprintf("%s (pid %d)", comm, p)
		switch {
		case p == pid:
			key = fmt.Sprintf("the profiled process (%s, pid %d)", comm, p)
		case p == 0:
			key = "idle"
		case comm == "wrk":
			key = "wrk (load generator)"
		case comm == "postgres":
			key = "postgres (every backend)"
		case comm == "perf":
			key = "perf"
		}
		g := groups[key]
		if g == nil {
			g = &group{name: key}
			groups[key] = g
		}
		g.n++
	}
	var gs []*group
	for _, g := range groups {
		gs = append(gs, g)
	}
	sort.Slice(gs, func(i, j int) bool { return gs[i].n > gs[j].n })
	var b strings.Builder
	for i, g := range gs {
		if i == 10 || total == 0 {
			break
		}
		fmt.Fprintf(&b, "%7.2f%%  %s\n", 100*float64(g.n)/float64(total), g.name)
	}
	return strings.TrimRight(b.String(), "\n")
}
