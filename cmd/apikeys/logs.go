package main

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// logFlushInterval bounds how long an INFO line waits in the buffer.
const logFlushInterval = 100 * time.Millisecond

// logWriter buffers the structured log: at INFO the service writes a line per request, and a
// write(2) per line cost more of a verification served from memory than the rest of the line
// (BENCHMARKS.md). Lines are written whole, at least every logFlushInterval, at once for a
// record at WARN or above (flushingHandler), and when the service stops; a crash loses at
// most the INFO lines of the last interval.
type logWriter struct {
	mu   sync.Mutex
	buf  *bufio.Writer
	stop chan struct{}
	done chan struct{}
}

func newLogWriter(w io.Writer) *logWriter {
	l := &logWriter{buf: bufio.NewWriterSize(w, 64<<10), stop: make(chan struct{}), done: make(chan struct{})}
	go l.flusher()
	return l
}

// Write buffers p, one whole log line (slog's handlers write each record with one call).
func (l *logWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(p) > l.buf.Available() && l.buf.Buffered() > 0 {
		if err := l.buf.Flush(); err != nil {
			return 0, err
		}
	}
	return l.buf.Write(p)
}

// Flush writes what is buffered.
func (l *logWriter) Flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Flush()
}

func (l *logWriter) flusher() {
	defer close(l.done)
	t := time.NewTicker(logFlushInterval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.Flush()
		}
	}
}

// Close stops the flusher and writes what is left.
func (l *logWriter) Close() error {
	close(l.stop)
	<-l.done
	return l.Flush()
}

// flushingHandler writes a record at WARN or above at once: what goes wrong is not held.
type flushingHandler struct {
	slog.Handler
	w *logWriter
}

func (h flushingHandler) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= slog.LevelWarn {
		h.w.Flush()
	}
	return err
}

func (h flushingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return flushingHandler{h.Handler.WithAttrs(attrs), h.w}
}

func (h flushingHandler) WithGroup(name string) slog.Handler {
	return flushingHandler{h.Handler.WithGroup(name), h.w}
}
