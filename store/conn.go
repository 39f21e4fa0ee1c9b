package store

import (
	"context"
	"net"
	"net/url"
	"runtime"
	"strconv"
	"time"
)

// DefaultTimeout bounds every database call of a Store when Options.Timeout is zero.
const DefaultTimeout = 3 * time.Second

// Options tune a Store.
type Options struct {
	// Timeout bounds every call to the database: waiting for a connection of the pool, each
	// statement (PostgreSQL's statement_timeout and lock_timeout end it on the server a
	// little before), and, on PostgreSQL, every read and write on the wire, so that a
	// database that hangs without refusing (a stopped process, a lost network) cannot hold
	// a caller longer, whatever the driver does with the context. Zero means DefaultTimeout.
	Timeout time.Duration
	// MaxConns bounds the PostgreSQL pool (default DefaultMaxConns; SQLite always uses 8).
	MaxConns int
}

// DefaultMaxConns is 4 connections per core the process may use (GOMAXPROCS), at least 8.
// A pool much larger than the cores that serve it queues point reads in the kernel's
// scheduler instead of the pool: at 32 connections on 2 cores a verification that reads its
// key had a p99 of 145 ms, at 8 16 ms, with more throughput (BENCHMARKS.md).
func DefaultMaxConns() int { return max(8, 4*runtime.GOMAXPROCS(0)) }

func (o Options) withDefaults() Options {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxConns <= 0 {
		o.MaxConns = DefaultMaxConns()
	}
	return o
}

// serverTimeouts adds to a PostgreSQL URL the session settings that make the server end
// what overruns the client's bound first, with an error the pool recovers from: statement
// and lock timeouts a little shorter than the wire deadline, and a bound on a transaction
// left idle. Settings the URL names itself are kept.
func serverTimeouts(q url.Values, timeout time.Duration) {
	ms := func(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }
	statement := timeout * 4 / 5
	set := map[string]string{
		"connect_timeout":                     strconv.Itoa(max(1, int(timeout.Round(time.Second)/time.Second))),
		"statement_timeout":                   ms(statement),
		"lock_timeout":                        ms(statement / 2),
		"idle_in_transaction_session_timeout": ms(4 * timeout),
	}
	for k, v := range set {
		if !q.Has(k) {
			q.Set(k, v)
		}
	}
}

// deadlineDialer dials PostgreSQL connections whose every read and write must finish within
// io. lib/pq does not interrupt a blocked read when a query's context ends (it sends a
// cancel request, which a frozen server never answers), so without this a hung server holds
// the caller, and its pooled connection, until the kernel gives up on TCP (minutes). A read
// that legitimately waits is a statement still running, which statement_timeout ends before
// io passes; the listening connection of the change feed reads its pings every 200 ms.
type deadlineDialer struct {
	dialer net.Dialer
	io     time.Duration
}

func newDeadlineDialer(io time.Duration) deadlineDialer {
	return deadlineDialer{dialer: net.Dialer{Timeout: io, KeepAlive: 15 * time.Second}, io: io}
}

func (d deadlineDialer) Dial(network, addr string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, addr)
}

func (d deadlineDialer) DialTimeout(network, addr string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), min(timeout, d.io))
	defer cancel()
	return d.DialContext(ctx, network, addr)
}

func (d deadlineDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := d.dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &deadlineConn{Conn: c, io: d.io}, nil
}

// deadlineConn gives each Read and Write its own deadline.
type deadlineConn struct {
	net.Conn
	io time.Duration
}

func (c *deadlineConn) Read(p []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.io)); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.io)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// The driver's own deadlines (lib/pq sets one for the start-up exchange, then clears it)
// are superseded by the per-call ones above.
func (c *deadlineConn) SetDeadline(time.Time) error      { return nil }
func (c *deadlineConn) SetReadDeadline(time.Time) error  { return nil }
func (c *deadlineConn) SetWriteDeadline(time.Time) error { return nil }
