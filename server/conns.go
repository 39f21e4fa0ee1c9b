package server

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"
)

// LimitConnections wraps a listener so that at most max connections are served in full.
// Beyond them, up to spare more are accepted and served one request each, within
// spareLifetime of being accepted: the health probes (/healthz, /readyz) as usual, anything
// else 503 with Retry-After; each is closed after its answer. Beyond those, a connection is closed as soon as it is accepted. So a flood of
// connections neither exhausts the process's file descriptors (accept would fail, and with
// it the probes) nor queues the probes behind it. The http.Server must use ConnContext.
func LimitConnections(ln net.Listener, max, spare int) net.Listener {
	return &limitedListener{Listener: ln, full: make(chan struct{}, max), spare: make(chan struct{}, spare)}
}

// ConnContext is the http.Server's ConnContext for a listener made by LimitConnections.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if lc, ok := c.(*limitedConn); ok && lc.spare {
		return context.WithValue(ctx, spareConnKey{}, true)
	}
	return ctx
}

type spareConnKey struct{}

// onSpareConn reports whether r came on a connection beyond the limit.
func onSpareConn(r *http.Request) bool {
	spare, _ := r.Context().Value(spareConnKey{}).(bool)
	return spare
}

type limitedListener struct {
	net.Listener
	full, spare chan struct{}
}

func (l *limitedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.full <- struct{}{}:
			return &limitedConn{Conn: c, slots: l.full}, nil
		default:
		}
		select {
		case l.spare <- struct{}{}:
			lc := &limitedConn{Conn: c, slots: l.spare, spare: true, end: time.Now().Add(spareLifetime)}
			_ = c.SetDeadline(lc.end)
			return lc, nil
		default:
			c.Close()
		}
	}
}

// spareLifetime bounds a connection beyond the limit, whatever deadlines the HTTP server
// sets on it, so that idle connections cannot hold the spare slots either.
const spareLifetime = 2 * time.Second

// limitedConn gives its slot back when closed.
type limitedConn struct {
	net.Conn
	slots chan struct{}
	spare bool
	end   time.Time // a spare connection's deadlines never pass this
	once  sync.Once
}

func (c *limitedConn) clamp(t time.Time) time.Time {
	if c.spare && (t.IsZero() || t.After(c.end)) {
		return c.end
	}
	return t
}

func (c *limitedConn) SetDeadline(t time.Time) error      { return c.Conn.SetDeadline(c.clamp(t)) }
func (c *limitedConn) SetReadDeadline(t time.Time) error  { return c.Conn.SetReadDeadline(c.clamp(t)) }
func (c *limitedConn) SetWriteDeadline(t time.Time) error { return c.Conn.SetWriteDeadline(c.clamp(t)) }

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { <-c.slots })
	return err
}
