package store

// The change feed (apikeys.ChangeFeed). Two paths report a write:
//
//   - local and synchronous: writeTx calls every watcher of this Store once the transaction
//     has committed, before the write returns to its caller (both engines);
//   - PostgreSQL only, between processes: the writing transaction runs pg_notify, which the
//     server delivers at commit to every session listening on changesChannel; Watch keeps
//     one such session and reports what it hears, and a heartbeat on it says when
//     everything committed up to an instant has been heard.
//
// On PostgreSQL a process therefore hears its own writes twice (once from each path); a
// second KeyChanged for a key is harmless.

import (
	"context"
	"errors"
	"net/url"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/qs/apikeys"
)

// changesChannel is the NOTIFY channel of key changes; a notification's payload is the
// changed key's lookup handle.
const changesChannel = "apikeys_changes"

// listenerAppName is the application_name of Watch's LISTEN session, by which operators (and
// the tests) find it in pg_stat_activity.
const listenerAppName = "apikeys-listener"

// Timing of the PostgreSQL listener.
const (
	// pingLostAfter: a heartbeat ping not answered within this long means FeedLost.
	pingLostAfter = 2 * apikeys.HeartbeatInterval
	// listenerDeadAfter: a ping or LISTEN not answered within this long closes the session,
	// and a new one is dialed.
	listenerDeadAfter = 5 * time.Second
	// listenerConnectTimeout bounds connecting (dial and handshake), in seconds as
	// connect_timeout takes it, unless the URL sets a positive connect_timeout itself.
	listenerConnectTimeout = "5"
	// minReconnect and maxReconnect bound the pause between attempts to connect the
	// listener: it doubles from min after each failure and is back at min once a
	// session has been established.
	minReconnect = 100 * time.Millisecond
	maxReconnect = time.Second
	// notifyBuffer is how many notifications pq may queue before its reader waits for
	// Watch.
	notifyBuffer = 256
)

// errClosed is Watch's error when the Store was closed while ctx was still alive.
var errClosed = errors.New("store: the store was closed")

// watcher is one Watch's registration. Its mutex serializes the calls of fn (the local path
// and the listener's goroutine both report) and makes sure none happens after stop.
type watcher struct {
	mu   sync.Mutex
	done bool
	fn   func(apikeys.ChangeEvent)
}

func (w *watcher) send(ev apikeys.ChangeEvent) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.fn(ev)
	}
}

func (w *watcher) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

// feed is a Store's set of watchers and the commits it is reporting.
type feed struct {
	mu       sync.Mutex
	watchers map[*watcher]struct{}
	// committing holds, for each write between the start of its commit and the end of its
	// report, when its commit started; liveAt never vouches past the earliest of them.
	committing map[uint64]time.Time
	nextID     uint64
}

func (f *feed) add(fn func(apikeys.ChangeEvent)) *watcher {
	w := &watcher{fn: fn}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.watchers == nil {
		f.watchers = make(map[*watcher]struct{})
	}
	f.watchers[w] = struct{}{}
	return w
}

func (f *feed) remove(w *watcher) {
	f.mu.Lock()
	delete(f.watchers, w)
	f.mu.Unlock()
	w.stop()
}

// beginCommit records that a write reporting changes is about to commit; endCommit(id) must
// follow once it has reported them (or failed).
func (f *feed) beginCommit() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.committing == nil {
		f.committing = make(map[uint64]time.Time)
	}
	f.nextID++
	f.committing[f.nextID] = time.Now()
	return f.nextID
}

func (f *feed) endCommit(id uint64) {
	f.mu.Lock()
	delete(f.committing, id)
	f.mu.Unlock()
}

// liveAt is the latest instant before which every write through this Store that committed
// has been reported to the watchers: now, or the start of the earliest commit still being
// reported. (A write that committed before the result was reported before its record was
// removed, or its record is still here and started before the result; one whose record is
// added later started its commit after now.)
func (f *feed) liveAt() time.Time {
	at := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, t := range f.committing {
		if t.Before(at) {
			at = t
		}
	}
	return at
}

// changed tells every watcher that the keys carrying handles were written.
func (f *feed) changed(handles []string) {
	f.mu.Lock()
	ws := make([]*watcher, 0, len(f.watchers))
	for w := range f.watchers {
		ws = append(ws, w)
	}
	f.mu.Unlock()
	for _, w := range ws {
		for _, h := range handles {
			w.send(apikeys.ChangeEvent{Kind: apikeys.KeyChanged, Handle: h})
		}
	}
}

// writeTx runs fn in a transaction, committing when it returns nil. fn returns the lookup
// handles of the keys it wrote: on PostgreSQL the transaction notifies them on
// changesChannel, and once it has committed every watcher of this Store hears of them before
// writeTx returns. A transaction that does not commit reports nothing.
func (s *Store) writeTx(ctx context.Context, fn func(tx *sqlx.Tx) ([]string, error)) (err error) {
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return s.translate(err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	handles, err := fn(tx)
	if err != nil {
		return err
	}
	if len(handles) == 0 {
		return s.translate(tx.Commit())
	}
	if s.dialect == postgres {
		// Delivered by the server when, and only if, the transaction commits.
		_, err = tx.ExecContext(ctx, "SELECT pg_notify('"+changesChannel+"', h) FROM unnest($1::text[]) AS h", pq.Array(handles))
		if err != nil {
			return s.translate(err)
		}
	}
	id := s.feed.beginCommit()
	defer s.feed.endCommit(id)
	if err = s.translate(tx.Commit()); err != nil {
		// A commit whose outcome is unknown (the connection dropped) may have happened: on
		// PostgreSQL its notification then reaches every listener, this process's too.
		return err
	}
	s.feed.changed(handles)
	return nil
}

// Watch implements apikeys.ChangeFeed: it calls fn for every key written through this Store
// (after the write has committed and before the write returns) and, on PostgreSQL, for
// every key written by any process over the database, and reports the feed's health, until
// ctx ends or the Store is closed. Nothing is reported after Watch has returned. fn must be
// safe for concurrent use and must not block; Watch calls fn for one event at a time.
//
// On SQLite, FeedLive is reported at once and then every apikeys.HeartbeatInterval: every
// write is made through this Store (the database has one process).
//
// On PostgreSQL, Watch keeps a session of its own (application_name apikeys-listener) that
// LISTENs on the change channel. Every apikeys.HeartbeatInterval it pings the server; the
// server sends a session every notification committed before a query started before its
// answer to the query, so once a ping started at t is answered and the notifications
// received are reported, FeedLive{At: t} is reported. A ping unanswered after twice the
// interval, or a session lost or not established, reports FeedLost (once until the next
// FeedLive); the session is dialed again after 100ms to 1s, and closed and dialed again when
// the server does not answer for 5s. The first FeedLive comes once LISTEN is in effect;
// before it, as after a FeedLost, changes may have been missed.
//
// Watch returns nil when ctx ends, and an error when the Store was closed before that.
func (s *Store) Watch(ctx context.Context, fn func(apikeys.ChangeEvent)) error {
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.life, cancel)
	defer stop()
	w := s.feed.add(fn)
	defer s.feed.remove(w)
	if s.dialect == postgres {
		s.listen(ctx, w)
	} else {
		s.heartbeat(ctx, w)
	}
	if parent.Err() == nil && s.life.Err() != nil {
		return errClosed
	}
	return nil
}

// heartbeat reports FeedLive every HeartbeatInterval until ctx ends: the feed of a SQLite
// Store, whose only writer is this Store.
func (s *Store) heartbeat(ctx context.Context, w *watcher) {
	tick := time.NewTicker(apikeys.HeartbeatInterval)
	defer tick.Stop()
	for {
		w.send(apikeys.ChangeEvent{Kind: apikeys.FeedLive, At: s.feed.liveAt()})
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// health reports FeedLost once per outage.
type health struct {
	w    *watcher
	lost bool
}

func (h *health) down() {
	if !h.lost {
		h.lost = true
		h.w.send(apikeys.ChangeEvent{Kind: apikeys.FeedLost})
	}
}

func (h *health) live(at time.Time) {
	h.lost = false
	h.w.send(apikeys.ChangeEvent{Kind: apikeys.FeedLive, At: at})
}

// listen keeps a LISTEN session on the database and reports what it hears until ctx ends,
// dialing a new session whenever one is lost.
//
// It uses pq's ListenerConn rather than its Listener: a Listener relays notifications from
// its connection to Notify through a goroutine of its own, so a ping's answer does not mean
// the notifications that preceded it are on Notify yet, and FeedLive could overtake them; a
// ListenerConn puts each notification on our channel before it reads the answer that
// follows it. A Listener also holds its lock across network waits that nothing bounds (Ping,
// Listen), so not even Close can end them when the server hangs.
func (s *Store) listen(ctx context.Context, w *watcher) {
	dsn, err := listenerDSN(s.dsn)
	h := &health{w: w}
	if err != nil {
		h.down()
		<-ctx.Done()
		return
	}
	pause := minReconnect
	for ctx.Err() == nil {
		lc, notes, err := dialListener(ctx, dsn)
		if err == nil {
			if s.serve(ctx, lc, notes, h) {
				pause = minReconnect
			}
		}
		if ctx.Err() != nil {
			return
		}
		h.down()
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		if pause *= 2; pause > maxReconnect {
			pause = maxReconnect
		}
	}
}

// listenerDSN is the pool's URL for the LISTEN session: named apikeys-listener, and with a
// bounded connect_timeout.
func listenerDSN(dsn string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", errors.New("postgres: the database URL cannot be parsed")
	}
	q := u.Query()
	q.Set("application_name", listenerAppName)
	if ct := q.Get("connect_timeout"); ct == "" || ct == "0" || ct[0] == '-' {
		q.Set("connect_timeout", listenerConnectTimeout)
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// dialListener connects a ListenerConn, or gives up when ctx ends (the connection, bounded
// by connect_timeout, is then closed when it completes).
func dialListener(ctx context.Context, dsn string) (*pq.ListenerConn, chan *pq.Notification, error) {
	notes := make(chan *pq.Notification, notifyBuffer)
	type dialed struct {
		lc  *pq.ListenerConn
		err error
	}
	res := make(chan dialed, 1)
	go func() {
		lc, err := pq.NewListenerConn(dsn, notes)
		res <- dialed{lc, err}
	}()
	select {
	case r := <-res:
		return r.lc, notes, r.err
	case <-ctx.Done():
		go func() {
			if r := <-res; r.err == nil {
				r.lc.Close()
				for range notes { // until pq's reader, woken by Close, closes it
				}
			}
		}()
		return nil, nil, ctx.Err()
	}
}

// beat is what the pinger tells serve: a ping started at At was answered (live), or a ping
// is late.
type beat struct {
	live bool
	at   time.Time
}

// serve reports the notifications of one LISTEN session, and its heartbeat, until the
// session ends or ctx does; it returns whether LISTEN took effect. It is the only reader of
// notes, so that once a ping's answer is in, every notification before it has been either
// reported or left on notes, where the drain before FeedLive finds it.
func (s *Store) serve(ctx context.Context, lc *pq.ListenerConn, notes <-chan *pq.Notification, h *health) (listened bool) {
	beats := make(chan beat)
	stop := make(chan struct{})
	pinger := make(chan struct{})
	go func() {
		defer close(pinger)
		ping(lc, beats, stop)
	}()
	defer func() {
		// Close wakes every wait on the session (pq's reader, a pending ping or LISTEN);
		// the reader may first need to hand over a notification, so someone must drain.
		lc.Close()
		close(stop)
		go func() {
			for range notes {
			}
		}()
		<-pinger
	}()
	deliver := func(n *pq.Notification) {
		if n != nil && n.Channel == changesChannel {
			h.w.send(apikeys.ChangeEvent{Kind: apikeys.KeyChanged, Handle: n.Extra})
		}
	}
	for {
		select {
		case <-ctx.Done():
			return listened
		case n, ok := <-notes:
			if !ok {
				return listened // the session is gone; listen reports FeedLost
			}
			deliver(n)
		case b := <-beats:
			if !b.live {
				h.down()
				continue
			}
			for drained := false; !drained; {
				select {
				case n, ok := <-notes:
					if !ok {
						return listened
					}
					deliver(n)
				default:
					drained = true
				}
			}
			listened = true
			h.live(b.at)
		}
	}
}

// errSessionOver is await's report that the session was closed while it waited.
var errSessionOver = errors.New("the LISTEN session is over")

// ping runs LISTEN on lc and then pings it every HeartbeatInterval, telling serve the outcome
// on beats, until stop is closed or the session fails (it then closes lc, which ends serve's
// notes). Every wait is bounded: a session that does not answer within listenerDeadAfter is
// closed.
func ping(lc *pq.ListenerConn, beats chan<- beat, stop <-chan struct{}) {
	tell := func(b beat) bool {
		select {
		case beats <- b:
			return true
		case <-stop:
			return false
		}
	}
	// run runs query on lc and waits for its answer, telling serve the feed is lost once
	// pingLostAfter has passed, and closing lc after listenerDeadAfter. It returns
	// errSessionOver when the session was closed meanwhile.
	run := func(query string) error {
		done := make(chan error, 1)
		go func() {
			// Executed or not, an error means the session must go: LISTEN and an empty
			// query do not fail on a healthy one.
			_, err := lc.ExecSimpleQuery(query)
			done <- err
		}()
		lost := time.NewTimer(pingLostAfter)
		defer lost.Stop()
		dead := time.NewTimer(listenerDeadAfter)
		defer dead.Stop()
		for {
			select {
			case err := <-done:
				return err
			case <-lost.C:
				if !tell(beat{live: false}) {
					<-done // serve closed lc, which ends the query
					return errSessionOver
				}
			case <-dead.C:
				lc.Close()
				<-done
				return errSessionOver
			case <-stop:
				<-done
				return errSessionOver
			}
		}
	}

	if err := run("LISTEN " + pq.QuoteIdentifier(changesChannel)); err != nil {
		lc.Close()
		return
	}
	tick := time.NewTicker(apikeys.HeartbeatInterval)
	defer tick.Stop()
	for {
		start := time.Now()
		if err := run(""); err != nil {
			lc.Close()
			return
		}
		if !tell(beat{live: true, at: start}) {
			return
		}
		select {
		case <-tick.C:
		case <-stop:
			return
		}
	}
}
