package main

import (
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestLogWriter: an INFO line is held at most logFlushInterval, a WARN line (and what was
// held before it) is written at once, lines are never split, and Close writes what is left.
func TestLogWriter(t *testing.T) {
	var out lockedBuffer
	lw := newLogWriter(&out)
	log := slog.New(flushingHandler{slog.NewJSONHandler(lw, nil), lw})
	log.Info("first")
	deadline := time.Now().Add(5 * logFlushInterval)
	for !strings.Contains(out.String(), `"msg":"first"`) {
		if time.Now().After(deadline) {
			t.Fatalf("an INFO line was not written within %v", 5*logFlushInterval)
		}
		time.Sleep(5 * time.Millisecond)
	}
	log.Info("second")
	log.Warn("third")
	if got := out.String(); !strings.Contains(got, `"msg":"second"`) || !strings.Contains(got, `"msg":"third"`) {
		t.Fatalf("after a WARN, the log holds %q: want both lines written at once", got)
	}
	big := strings.Repeat("x", 100<<10) // more than the buffer
	for range 3 {
		log.Info("big", "v", big)
	}
	log.Info("last")
	if err := lw.Close(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 7 || !strings.Contains(lines[6], `"msg":"last"`) {
		t.Fatalf("%d lines after Close, the last %.80q: want 7, ending with last", len(lines), lines[len(lines)-1])
	}
	for i, l := range lines {
		if !strings.HasPrefix(l, `{"time":`) || !strings.HasSuffix(l, "}") {
			t.Errorf("line %d is not one whole record: %.80q", i, l)
		}
	}
}
