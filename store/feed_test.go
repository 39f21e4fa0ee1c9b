package store_test

import (
	"context"
	"database/sql"
	"net"
	"net/url"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/qs/apikeys"
	"github.com/qs/apikeys/internal/testdb"
	"github.com/qs/apikeys/store"
	"github.com/qs/apikeys/store/storetest"
)

// The PostgreSQL half of the change feed: what one process hears of another's writes, and
// how the feed behaves when its LISTEN session is lost or the server stops answering. The
// behaviour every engine shares is in storetest.RunChangeFeed.

// postgresDB returns a fresh PostgreSQL database, or false (after logging why) when this run
// has none; under CI testdb.Engines has failed the test already.
func postgresDB(t *testing.T) (testdb.DB, bool) {
	t.Helper()
	if !slices.Contains(testdb.Engines(t), testdb.Postgres) {
		t.Log("PostgreSQL not available; nothing to check here")
		return testdb.DB{}, false
	}
	return testdb.New(t, testdb.Postgres), true
}

// openURL opens a store on url, closed when t ends.
func openURL(t *testing.T, url string) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), url)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// watching is one running Watch.
type watching struct {
	*storetest.Recorder
	cancel   context.CancelFunc
	returned chan error
}

// watch starts s.Watch with a Recorder and waits for the first FeedLive; the watch is
// stopped when t ends.
func watch(t *testing.T, s *store.Store) *watching {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &watching{Recorder: storetest.NewRecorder(), cancel: cancel, returned: make(chan error, 1)}
	go func() { w.returned <- s.Watch(ctx, w.Record) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-w.returned:
		case <-time.After(5 * time.Second):
			t.Error("Watch did not return within 5s of its context's end")
		}
	})
	if w.WaitFor(0, time.Second, storetest.LiveAfter(time.Time{})) < 0 {
		t.Fatalf("no FeedLive within 1s of Watch: %+v", w.Events(0))
	}
	return w
}

// waitKind waits up to d for an event of kind since mark and returns its index, failing the
// test when none comes.
func (w *watching) waitKind(t *testing.T, mark int, d time.Duration, kind apikeys.ChangeKind, what string) int {
	t.Helper()
	i := w.WaitFor(mark, d, func(ev apikeys.ChangeEvent) bool { return ev.Kind == kind })
	if i < 0 {
		t.Fatalf("%s: nothing within %s; events since: %+v", what, d, w.Events(mark))
	}
	return i
}

// waitChanged waits up to a second for KeyChanged of handle since mark.
func (w *watching) waitChanged(t *testing.T, mark int, handle, what string) int {
	t.Helper()
	i := w.WaitFor(mark, time.Second, func(ev apikeys.ChangeEvent) bool {
		return ev.Kind == apikeys.KeyChanged && ev.Handle == handle
	})
	if i < 0 {
		t.Fatalf("%s: KeyChanged %s did not arrive within 1s; events: %+v", what, handle, w.Events(mark))
	}
	return i
}

// TestFeedHearsOtherReplicas: a change committed through another Store on the database (an
// other process) reaches this Store's watcher within a second.
func TestFeedHearsOtherReplicas(t *testing.T) {
	db, ok := postgresDB(t)
	if !ok {
		return
	}
	ctx := context.Background()
	s1, s2 := openURL(t, db.URL), openURL(t, db.URL)
	w := watch(t, s1)

	a, b := newKey(), newKey()
	mark := w.Len()
	if err := s2.CreateKeys(ctx, []apikeys.NewKey{a, b}); err != nil {
		t.Fatal(err)
	}
	w.waitChanged(t, mark, a.Handle, "CreateKeys")
	w.waitChanged(t, mark, b.Handle, "CreateKeys")

	mark = w.Len()
	if _, err := s2.UpdateKey(ctx, a.ID, func(k *apikeys.Key) error { k.Name = "renamed"; return nil }); err != nil {
		t.Fatal(err)
	}
	w.waitChanged(t, mark, a.Handle, "UpdateKey")

	mark = w.Len()
	repl := newKey(func(k *apikeys.Key) { k.SubjectID, k.RotatedFromID = a.SubjectID, a.ID })
	if _, _, err := s2.RotateKey(ctx, a.ID, func(o *apikeys.Key) (apikeys.Key, error) {
		o.ReplacedByID = repl.ID
		return repl.Key, nil
	}); err != nil {
		t.Fatal(err)
	}
	w.waitChanged(t, mark, a.Handle, "RotateKey (old key)")
	w.waitChanged(t, mark, repl.Handle, "RotateKey (new key)")

	mark = w.Len()
	if set, err := s2.SetKeyHash(ctx, b.ID, b.Hash, b.Hash+"x"); err != nil || !set {
		t.Fatalf("SetKeyHash = %v, %v", set, err)
	}
	w.waitChanged(t, mark, b.Handle, "SetKeyHash")

	// A FeedLive vouching past a commit comes after the commit's KeyChanged.
	mark = w.Len()
	c := newKey()
	if err := s2.CreateKeys(ctx, []apikeys.NewKey{c}); err != nil {
		t.Fatal(err)
	}
	committed := time.Now()
	live := w.WaitFor(mark, time.Second, storetest.LiveAfter(committed))
	if live < 0 {
		t.Fatal("no FeedLive after the write within 1s")
	}
	if changed := w.waitChanged(t, mark, c.Handle, "CreateKeys"); changed > live {
		t.Errorf("FeedLive vouching past the commit (#%d) came before its KeyChanged (#%d)", live, changed)
	}
}

// listenerPIDs returns the backends of apikeys-listener sessions on the database of conn.
func listenerPIDs(t *testing.T, conn *sql.DB) []int {
	t.Helper()
	rows, err := conn.Query(`SELECT pid FROM pg_stat_activity
		WHERE application_name = 'apikeys-listener' AND datname = current_database() ORDER BY pid`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var pids []int
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			t.Fatal(err)
		}
		pids = append(pids, pid)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return pids
}

// TestFeedSurvivesTerminatedListener: when the server ends the LISTEN session, the feed
// reports FeedLost, dials a new session, reports FeedLive again, and hears the changes
// committed after that.
func TestFeedSurvivesTerminatedListener(t *testing.T) {
	db, ok := postgresDB(t)
	if !ok {
		return
	}
	ctx := context.Background()
	s1, s2 := openURL(t, db.URL), openURL(t, db.URL)
	admin, err := sql.Open("postgres", db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	w := watch(t, s1)

	pids := listenerPIDs(t, admin)
	if len(pids) != 1 {
		t.Fatalf("listener sessions %v, want one", pids)
	}
	mark := w.Len()
	var terminated bool
	if err := admin.QueryRow("SELECT pg_terminate_backend($1)", pids[0]).Scan(&terminated); err != nil || !terminated {
		t.Fatalf("pg_terminate_backend(%d) = %v, %v", pids[0], terminated, err)
	}
	lost := w.waitKind(t, mark, 2*time.Second, apikeys.FeedLost, "FeedLost after the session was terminated")
	live := w.waitKind(t, lost+1, 3*time.Second, apikeys.FeedLive, "FeedLive after the new session")
	evs := w.Events(lost)
	if n := len(slices.DeleteFunc(slices.Clone(evs[:live-lost]), func(ev apikeys.ChangeEvent) bool { return ev.Kind != apikeys.FeedLost })); n != 1 {
		t.Errorf("%d FeedLost in one outage, want 1: %+v", n, evs)
	}
	if now := listenerPIDs(t, admin); len(now) != 1 || now[0] == pids[0] {
		t.Errorf("listener sessions after reconnecting %v, want one other than %d", now, pids[0])
	}

	a := newKey()
	mark = w.Len()
	if err := s2.CreateKeys(ctx, []apikeys.NewKey{a}); err != nil {
		t.Fatal(err)
	}
	w.waitChanged(t, mark, a.Handle, "a change after the new session")
}

// TestFeedServerHangs: a server that stops answering (a frozen network path) makes the
// feed report FeedLost within a few heartbeats; when it answers again, the notifications it
// held arrive before the next FeedLive; and a Watch on a hung session still returns
// promptly when its context ends.
func TestFeedServerHangs(t *testing.T) {
	db, ok := postgresDB(t)
	if !ok {
		return
	}
	ctx := context.Background()
	p := newProxy(t, db.URL)
	s1 := openURL(t, p.url)  // through the proxy
	s2 := openURL(t, db.URL) // directly: writes while the proxy is frozen
	w := watch(t, s1)

	mark := w.Len()
	p.freeze()
	frozen := time.Now()
	a := newKey()
	if err := s2.CreateKeys(ctx, []apikeys.NewKey{a}); err != nil {
		t.Fatal(err)
	}
	committed := time.Now()
	lost := w.waitKind(t, mark, time.Second, apikeys.FeedLost, "FeedLost while the server hangs")
	t.Logf("FeedLost %s after the freeze", time.Since(frozen).Round(time.Millisecond))
	for _, ev := range w.Events(mark)[:lost-mark] {
		if ev.Kind == apikeys.FeedLive && ev.At.After(frozen) {
			t.Errorf("FeedLive at %s, after the freeze", ev.At.Format(time.StampMicro))
		}
	}

	p.thaw()
	changed := w.waitChanged(t, lost, a.Handle, "the change held by the hung path")
	live := w.WaitFor(lost, 2*time.Second, storetest.LiveAfter(committed))
	if live < 0 {
		t.Fatalf("no FeedLive after the thaw: %+v", w.Events(lost))
	}
	if live < changed {
		t.Errorf("FeedLive vouching past the commit (#%d) came before its KeyChanged (#%d)", live, changed)
	}

	// Frozen again, the Watch must still end when asked.
	p.freeze()
	mark = w.Len()
	w.waitKind(t, mark, time.Second, apikeys.FeedLost, "FeedLost on the second freeze")
	w.cancel()
	select {
	case err := <-w.returned:
		if err != nil {
			t.Errorf("Watch returned %v after its context ended, want nil", err)
		}
		w.returned <- err // for the cleanup
	case <-time.After(time.Second):
		t.Fatal("Watch on a hung session did not return within 1s of its context's end")
	}
	p.thaw()
}

// TestFeedReplacesHungSession: a LISTEN session that does not answer for 5s is closed and
// a new one dialed; the feed is live again once the server answers.
func TestFeedReplacesHungSession(t *testing.T) {
	if testing.Short() && os.Getenv("CI") == "" {
		t.Skip("waits out the 5s after which a hung session is replaced") // never under CI
	}
	db, ok := postgresDB(t)
	if !ok {
		return
	}
	admin, err := sql.Open("postgres", db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	p := newProxy(t, db.URL)
	s1 := openURL(t, p.url)
	w := watch(t, s1)
	before := listenerPIDs(t, admin)

	mark := w.Len()
	dialed := p.accepted()
	p.freeze()
	frozen := time.Now()
	lost := w.waitKind(t, mark, time.Second, apikeys.FeedLost, "FeedLost while the server hangs")
	// The hung session is closed after 5s and a new one dialed (its handshake hangs too,
	// until the thaw).
	deadline := time.Now().Add(7 * time.Second)
	for p.accepted() == dialed {
		if time.Now().After(deadline) {
			t.Fatal("no new session dialed within 7s of the freeze")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("new session dialed %s after the freeze", time.Since(frozen).Round(time.Millisecond))
	p.thaw()
	w.waitKind(t, lost+1, 3*time.Second, apikeys.FeedLive, "FeedLive after the thaw")
	if after := listenerPIDs(t, admin); len(after) != 1 || slices.Equal(after, before) {
		t.Errorf("listener sessions %v after replacing %v, want one new one", after, before)
	}
}

// TestWatchEndsWithClose: closing the Store ends its Watches, with an error since their
// contexts are still alive.
func TestWatchEndsWithClose(t *testing.T) {
	for _, engine := range testdb.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			s, err := store.Open(context.Background(), testdb.New(t, engine).URL)
			if err != nil {
				t.Fatal(err)
			}
			returned := make(chan error, 1)
			r := storetest.NewRecorder()
			go func() { returned <- s.Watch(t.Context(), r.Record) }()
			if r.WaitFor(0, time.Second, storetest.LiveAfter(time.Time{})) < 0 {
				t.Fatal("no FeedLive")
			}
			s.Close()
			select {
			case err := <-returned:
				if err == nil {
					t.Error("Watch returned nil after Close, want an error")
				}
			case <-time.After(2 * time.Second):
				t.Fatal("Watch did not return within 2s of Close")
			}
		})
	}
}

// proxy forwards TCP connections to a PostgreSQL server and can freeze them: while frozen,
// what either side sends is held, as if the server hung.
type proxy struct {
	url string
	ln  net.Listener

	mu     sync.Mutex
	thawed chan struct{} // nil when not frozen; closed by thaw
	all    []net.Conn
	n      int // connections accepted
	done   chan struct{}
}

// newProxy starts a proxy to the server of dbURL and returns it with url, dbURL through the
// proxy. It is shut down when t ends.
func newProxy(t *testing.T, dbURL string) *proxy {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	target := u.Host
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.Host = ln.Addr().String()
	p := &proxy{url: u.String(), ln: ln, done: make(chan struct{})}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		close(p.done)
		ln.Close()
		p.mu.Lock()
		for _, c := range p.all {
			c.Close()
		}
		p.mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := net.DialTimeout("tcp", target, 5*time.Second)
			if err != nil {
				client.Close()
				continue
			}
			p.mu.Lock()
			p.all = append(p.all, client, server)
			p.n++
			p.mu.Unlock()
			closeBoth := func() { client.Close(); server.Close() }
			wg.Add(2)
			go func() { defer wg.Done(); p.pipe(server, client); closeBoth() }()
			go func() { defer wg.Done(); p.pipe(client, server); closeBoth() }()
		}
	}()
	return p
}

// pipe copies src to dst, holding what it read while the proxy is frozen.
func (p *proxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			thawed := p.thawed
			p.mu.Unlock()
			if thawed != nil {
				select {
				case <-thawed:
				case <-p.done:
					return
				}
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return // EOF or a closed connection: newProxy closes both ends
		}
	}
}

func (p *proxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.thawed == nil {
		p.thawed = make(chan struct{})
	}
}

func (p *proxy) thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.thawed != nil {
		close(p.thawed)
		p.thawed = nil
	}
}

// accepted is the number of connections the proxy has accepted.
func (p *proxy) accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}
