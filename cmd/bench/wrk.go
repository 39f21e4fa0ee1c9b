package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// load is what wrk sends: one fixed request, or (keysFile) a verify body per request cycling
// through the tokens of a file, each wrk thread over its own share of them.
type load struct {
	method, path, bearer, body string
	keysFile                   string
}

func verifyLoad(bearer, key string) load {
	return load{method: "POST", path: "/api-keys/verify", bearer: bearer, body: verifyBody(key)}
}

func verifyBody(key string) string {
	b, _ := json.Marshal(map[string]string{"key": key})
	return string(b)
}

// wrkResult is one wrk run, with what the rest of the machine did meanwhile.
type wrkResult struct {
	Requests           int64
	Duration           time.Duration
	RPS                float64
	P50, P90, P99, Max time.Duration
	Mean               time.Duration
	Status, SockErrs   int64 // non-2xx/3xx answers; connect, read, write errors and timeouts
	cpu                cpuUse
	Output             string
}

func (r wrkResult) String() string {
	s := fmt.Sprintf("%.0f req/s, p50 %s, p99 %s, max %s (%d requests", r.RPS, ms(r.P50), ms(r.P99), ms(r.Max), r.Requests)
	if r.Status > 0 || r.SockErrs > 0 {
		s += fmt.Sprintf(", %d non-2xx, %d socket errors", r.Status, r.SockErrs)
	}
	return s + "; " + r.cpu.String() + ")"
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }

// luaString quotes s as a Lua long string; no body or token here holds "]==]".
func luaString(s string) string { return "[==[" + s + "]==]" }

const luaDone = `
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCHJSON {"requests":%.0f,"duration_us":%.0f,"connect":%.0f,"read":%.0f,"write":%.0f,"status":%.0f,"timeout":%.0f,"p50_us":%.0f,"p90_us":%.0f,"p99_us":%.0f,"mean_us":%.0f,"max_us":%.0f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max))
end
`

var scriptSeq atomic.Int64

// script writes l as a wrk Lua script into the temp dir.
func (h *harness) script(l load, threads int) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "-- written by cmd/bench\nwrk.method = %s\nwrk.path = %s\n", luaString(l.method), luaString(l.path))
	if l.bearer != "" {
		fmt.Fprintf(&b, "wrk.headers[\"Authorization\"] = %s\n", luaString("Bearer "+l.bearer))
	}
	if l.body != "" || l.keysFile != "" {
		b.WriteString("wrk.headers[\"Content-Type\"] = \"application/json\"\n")
	}
	if l.body != "" {
		fmt.Fprintf(&b, "wrk.body = %s\n", luaString(l.body))
	}
	if l.keysFile != "" {
		fmt.Fprintf(&b, `
nextid = 0
function setup(thread)
  thread:set("tid", nextid)
  nextid = nextid + 1
end
local keys, n, i = {}, 0, 0
function init(args)
  for line in io.lines(%s) do
    n = n + 1
    keys[n] = line
  end
  i = tid
end
function request()
  local k = keys[(i %% n) + 1]
  i = i + %d
  return wrk.format(nil, nil, nil, '{"key":"' .. k .. '"}')
end
`, luaString(l.keysFile), threads)
	}
	b.WriteString(luaDone)
	path := filepath.Join(h.tmp, fmt.Sprintf("load%02d.lua", scriptSeq.Add(1)))
	return path, os.WriteFile(path, []byte(b.String()), 0o644)
}

// wrk runs wrk against base for dur with the harness's connections and threads. ours are the
// pids whose CPU counts as the system under test (PostgreSQL's processes always do).
func (h *harness) wrk(base string, l load, dur time.Duration, conns int, ours ...int) (wrkResult, error) {
	threads := max(min(*flagThreads, conns), 1)
	script, err := h.script(l, threads)
	if err != nil {
		return wrkResult{}, err
	}
	secs := max(int(dur.Round(time.Second)/time.Second), 1)
	ctx, cancel := context.WithTimeout(h.ctx, dur+90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "wrk", "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns),
		"-d", fmt.Sprintf("%ds", secs), "--timeout", "20s", "--latency", "-s", script, base+l.path)
	cmd.Stderr = os.Stderr
	before := snapCPU(ours)
	out, err := cmd.Output()
	after := snapCPU(ours)
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk %s %s: %w\n%s", l.method, l.path, err, out)
	}
	var r wrkResult
	r.Output = string(out)
	r.cpu = cpuBetween(before, after, cmd.ProcessState)
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	found := false
	for sc.Scan() {
		js, ok := strings.CutPrefix(sc.Text(), "BENCHJSON ")
		if !ok {
			continue
		}
		var v map[string]float64
		if err := json.Unmarshal([]byte(js), &v); err != nil {
			return r, fmt.Errorf("wrk summary %q: %w", js, err)
		}
		us := func(k string) time.Duration { return time.Duration(v[k] * 1e3) }
		r.Requests, r.Duration = int64(v["requests"]), us("duration_us")
		r.RPS = v["requests"] / r.Duration.Seconds()
		r.P50, r.P90, r.P99, r.Max, r.Mean = us("p50_us"), us("p90_us"), us("p99_us"), us("max_us"), us("mean_us")
		r.Status = int64(v["status"])
		r.SockErrs = int64(v["connect"] + v["read"] + v["write"] + v["timeout"])
		found = true
	}
	if !found {
		return r, fmt.Errorf("wrk printed no summary:\n%s", out)
	}
	return r, nil
}

// cpuUse says how the machine's CPU was spent during a run, in cores.
type cpuUse struct {
	seconds                         float64
	busy, ours, wrk, steal, foreign float64
}

func (c cpuUse) String() string {
	return fmt.Sprintf("CPU in cores: system under test %.2f, wrk %.2f, other processes %.2f, steal %.2f", c.ours, c.wrk, c.foreign, c.steal)
}

// disturbed: other processes took a noticeable share of the 2 cores.
func (c cpuUse) disturbed() bool { return c.foreign > 0.15 || c.steal > 0.15 }

type cpuSnap struct {
	at                time.Time
	busy, steal, ours uint64 // jiffies
}

// snapCPU reads the machine's busy and steal time and that of ours, this process and every
// PostgreSQL process.
func snapCPU(ours []int) cpuSnap {
	s := cpuSnap{at: time.Now()}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line)
		var v [10]uint64
		for i := 1; i < len(f) && i <= 10; i++ {
			v[i-1], _ = strconv.ParseUint(f[i], 10, 64)
		}
		// user nice system idle iowait irq softirq steal guest guest_nice
		s.busy = v[0] + v[1] + v[2] + v[5] + v[6]
		s.steal = v[7]
	}
	pids := append([]int{os.Getpid()}, ours...)
	if ents, err := os.ReadDir("/proc"); err == nil {
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			if c, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(c)) == "postgres" {
				pids = append(pids, pid)
			}
		}
	}
	for _, pid := range pids {
		s.ours += procJiffies(pid)
	}
	return s
}

func procJiffies(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return u + st
}

const userHZ = 100

func cpuBetween(a, b cpuSnap, wrk *os.ProcessState) cpuUse {
	secs := b.at.Sub(a.at).Seconds()
	c := cpuUse{seconds: secs}
	if secs <= 0 {
		return c
	}
	j := func(d uint64) float64 { return float64(d) / userHZ / secs }
	c.busy = j(b.busy - a.busy)
	c.steal = j(b.steal - a.steal)
	c.ours = j(b.ours - a.ours)
	if wrk != nil {
		if ru, ok := wrk.SysUsage().(*syscall.Rusage); ok {
			c.wrk = (time.Duration(ru.Utime.Nano()) + time.Duration(ru.Stime.Nano())).Seconds() / secs
		}
	}
	c.foreign = max(c.busy-c.ours-c.wrk, 0)
	return c
}
