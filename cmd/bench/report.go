package main

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
)

// row is one line of the table.
type row struct {
	db       string // PostgreSQL, SQLite or ""
	name     string
	value    float64
	unit     string
	p99      time.Duration // 0: none measured
	p99One   time.Duration // p99 at one connection, where measured
	base     string        // the baseline's name and figure
	baseVal  float64
	target   string                      // "" : no target
	ok       func(r *row) (bool, string) // met, and if not, which part of the target is missed
	met      bool
	why      string
	detail   string // how it was measured (the wrk line, CPU split)
	disturbd bool
	// rerun measures the row again, for its profile; pid is the process to profile.
	rerun func() (wrkResult, error)
	pid   int
}

func (r *row) ratio() float64 {
	if r.baseVal == 0 {
		return 0
	}
	return r.value / r.baseVal
}

func (h *harness) add(r *row) *row {
	if r.ok != nil {
		r.met, r.why = r.ok(r)
	}
	h.rows = append(h.rows, r)
	verdict := ""
	if r.ok != nil {
		verdict = map[bool]string{true: "met", false: "NOT MET"}[r.met]
	}
	h.logf("ROW %-56s %s %s", r.name+" ["+r.db+"]", r.figure(), verdict)
	return r
}

func (r *row) figure() string {
	s := fmt.Sprintf("%s %s", human(r.value), r.unit)
	if r.p99 > 0 {
		s += ", p99 " + ms(r.p99)
	}
	if r.baseVal > 0 {
		s += fmt.Sprintf(" = %.0f %% of %s", 100*r.ratio(), r.base)
	}
	return s
}

func human(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// atLeast is a target of the issue: at least ratio of the baseline and, when p99 > 0, a
// 99th percentile of at most p99 at the row's connections.
func atLeast(ratio float64, p99 time.Duration) func(*row) (bool, string) {
	return func(r *row) (bool, string) {
		var why []string
		if r.ratio() < ratio {
			why = append(why, "throughput")
		}
		if p99 > 0 && r.p99 > p99 {
			w := "p99"
			if r.p99One > 0 {
				w += fmt.Sprintf(" (at 1 connection %s: %s)", ms(r.p99One), map[bool]string{true: "within", false: "also over"}[r.p99One <= p99])
			}
			why = append(why, w)
		}
		return len(why) == 0, strings.Join(why, ", ")
	}
}

func (h *harness) missed() []*row {
	var out []*row
	for _, r := range h.rows {
		if r.ok != nil && !r.met {
			out = append(out, r)
		}
	}
	return out
}

// table renders the rows as a Markdown table.
func (h *harness) table() string {
	var b strings.Builder
	b.WriteString("| # | row | database | result | p99 | baseline (same run) | ratio | target | met |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for i, r := range h.rows {
		p99, ratio, met, target := "", "", "–", r.target
		if r.p99 > 0 {
			p99 = ms(r.p99)
		}
		if r.p99One > 0 {
			p99 += " (1 conn.: " + ms(r.p99One) + ")"
		}
		if r.baseVal > 0 {
			ratio = fmt.Sprintf("%.0f %%", 100*r.ratio())
		}
		if r.ok != nil {
			met = "**met**"
			if !r.met {
				met = "**not met**: " + r.why
			}
		}
		if target == "" {
			target = "–"
		}
		name := r.name
		if r.disturbd {
			name += " ⚠"
		}
		fmt.Fprintf(&b, "| %d | %s | %s | %s %s | %s | %s | %s | %s | %s |\n", i+1, name, r.db, human(r.value), r.unit, p99, r.base, ratio, target, met)
	}
	return b.String()
}

const (
	markStart = "<!-- bench:start (written by cmd/bench; edit outside these markers) -->"
	markEnd   = "<!-- bench:end -->"
)

// report is BENCHMARKS.md: the generated part between the markers; what lies outside them in
// an existing file (the reading of the figures) is kept.
func (h *harness) report() string {
	var b strings.Builder
	e := h.env
	b.WriteString(markStart + "\n\n")
	fmt.Fprintf(&b, "Measured %s by `make bench`, which ran `%s` after the `go test -bench` below.\n\n", e.date, h.command)
	b.WriteString("| | |\n|---|---|\n")
	fmt.Fprintf(&b, "| `nproc` | %d |\n| CPU | %s |\n| memory | %s |\n| kernel | %s |\n| Go | %s |\n| load generator | %s, %d threads, %d connections, %s per row, on the same cores |\n",
		e.nproc, e.cpu, e.memTotal, e.kernel, e.goCmd, e.wrk, *flagThreads, *flagConns, *flagDur)
	fmt.Fprintf(&b, "| load average at start, end | %s; %s |\n| busiest processes at start | %s |\n| harness run time | %s |\n\n",
		e.loadStart, e.loadEnd, e.otherProcs, e.elapsed.Round(time.Second))
	b.WriteString("The service runs as its own process with its defaults, among them the default argon2id parameters (" + argonParams() + "), " +
		"except `APIKEYS_LOG_LEVEL=WARN`: at INFO it writes a JSON line to standard error for every request, which would be measured too. " +
		"Ratios compare figures measured in this run; each row was measured after waiting (at most -quiet-wait) for other processes to leave the CPU, and run again (at most -retries times) when they took more than 0.15 of a core during it.\n\n")
	b.WriteString(h.table())
	b.WriteString("\n⚠: other processes took more than 0.15 of a core during the row, in every one of its runs (see the details).\n\n")
	var met, missed []string
	for i, r := range h.rows {
		if r.ok == nil {
			continue
		}
		s := fmt.Sprintf("%d (%s, %s)", i+1, r.name, r.db)
		if !r.met {
			s = fmt.Sprintf("%d (%s, %s: %s)", i+1, r.name, r.db, r.why)
		}
		if r.met {
			met = append(met, s)
		} else {
			missed = append(missed, s)
		}
	}
	fmt.Fprintf(&b, "**Met:** %s.\n\n**Not met:** %s.\n\n", orNone(met), orNone(missed))

	b.WriteString("### How each row was measured\n\n")
	for i, r := range h.rows {
		fmt.Fprintf(&b, "%d. **%s** (%s): %s\n", i+1, r.name, r.db, r.detail)
	}
	if len(h.notes) > 0 {
		b.WriteString("\n### Notes of this run\n\n")
		for _, n := range h.notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	if len(h.profiles) > 0 {
		b.WriteString("\n### Profiles of the rows not met\n\n")
		b.WriteString("Each row was run again under `perf record -a -g -e cpu-clock -F 499` (system-wide, so the load generator and PostgreSQL show too). " +
			"First the CPU of both cores by process, then the busiest functions of the profiled process (self time, then the inclusive time of the stages a request goes through, outermost first; percentages of that process's samples). The inclusive figures miss time in assembly without frame pointers (argon2id's kernels), so for create read the self time.\n\n")
		for _, p := range h.profiles {
			fmt.Fprintf(&b, "#### %s\n\n%s\n\n```\n# CPU by process\n%s\n\n# profiled process, self\n%s\n\n# profiled process, inclusive\n%s\n```\n\n", p.row, p.result, p.split, p.self, p.cum)
		}
	}
	if *flagGoBench != "" {
		if gb, err := os.ReadFile(*flagGoBench); err == nil {
			b.WriteString("\n### `go test -run '^$' -bench . -benchmem -count=1 ./...`\n\n```\n")
			b.WriteString(strings.TrimSpace(filterBench(string(gb))))
			b.WriteString("\n```\n")
		}
	}
	b.WriteString("\n" + markEnd + "\n")
	generated := b.String()

	if *flagOut != "" {
		if old, err := os.ReadFile(*flagOut); err == nil {
			s := string(old)
			i, j := strings.Index(s, markStart), strings.Index(s, markEnd)
			if i >= 0 && j > i {
				return s[:i] + generated + s[j+len(markEnd)+1:]
			}
		}
	}
	return "# Benchmarks\n\n`make bench` builds the service, runs it as its own process on PostgreSQL (and SQLite for the verify rows) and " +
		"prints figures as ratios to baselines measured in the same run. The section between the markers is rewritten by every run.\n\n" +
		generated + "\n## Reading\n\n(to be written)\n"
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, "; ")
}

// filterBench keeps go test's benchmark lines and package headers.
func filterBench(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "Benchmark") || strings.HasPrefix(l, "ok ") || strings.HasPrefix(l, "pkg:") ||
			strings.HasPrefix(l, "FAIL") || strings.HasPrefix(l, "---") || strings.Contains(l, "SKIP") || strings.HasPrefix(l, "cpu:") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[min(int(float64(len(d))*p), len(d)-1)]
}
