package storetest

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/qs/apikeys"
)

// RunChangeFeed runs the conformance tests of apikeys.ChangeFeed as subtests of t, each
// against its own store from open, which must also be an apikeys.ChangeFeed (the test fails
// otherwise). What it checks holds on any engine: a write through the store is reported to
// every watcher before it returns, writes that change no key are not reported, FeedLive
// keeps coming, and nothing is reported once Watch has returned. (A feed may report a change
// more than once; the tests allow it.)
func RunChangeFeed(t *testing.T, open func(t *testing.T) apikeys.KeyStore) {
	t.Helper()
	for _, tt := range feedSuite {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			f, ok := s.(apikeys.ChangeFeed)
			if !ok {
				t.Fatalf("%T is not an apikeys.ChangeFeed", s)
			}
			tt.fn(t, s, f)
		})
	}
}

// feedSuite is the change feed's conformance tests, in the order RunChangeFeed runs them.
var feedSuite = []struct {
	name string
	fn   func(t *testing.T, s apikeys.KeyStore, f apikeys.ChangeFeed)
}{
	{"WritesReportedBeforeReturn", testFeedWritesReportedBeforeReturn},
	{"NoChangeNoReport", testFeedNoChangeNoReport},
	{"Heartbeat", testFeedHeartbeat},
	{"TwoWatchers", testFeedTwoWatchers},
	{"NothingAfterCancel", testFeedNothingAfterCancel},
}

// feedWait bounds the tests' waits for an event that is due (a FeedLive is due every
// HeartbeatInterval): generous, so that a loaded machine does not fail them.
const feedWait = 10 * apikeys.HeartbeatInterval

// Recorder is a watcher that keeps every event it is given, and when. Its Record method is
// the fn to pass to Watch.
type Recorder struct {
	mu     sync.Mutex
	events []recorded
	wake   chan struct{} // signalled after every event
}

type recorded struct {
	apikeys.ChangeEvent
	arrived time.Time
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder { return &Recorder{wake: make(chan struct{}, 1)} }

// Record keeps ev.
func (r *Recorder) Record(ev apikeys.ChangeEvent) {
	r.mu.Lock()
	r.events = append(r.events, recorded{ev, time.Now()})
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Len is the number of events recorded so far: a mark for Changed and Events.
func (r *Recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

// Events returns the events recorded since mark.
func (r *Recorder) Events(mark int) []apikeys.ChangeEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []apikeys.ChangeEvent
	for _, e := range r.events[mark:] {
		out = append(out, e.ChangeEvent)
	}
	return out
}

// Changed returns the handles of the KeyChanged events recorded since mark, in order.
func (r *Recorder) Changed(mark int) []string {
	var out []string
	for _, e := range r.Events(mark) {
		if e.Kind == apikeys.KeyChanged {
			out = append(out, e.Handle)
		}
	}
	return out
}

// WaitFor waits up to d for an event since mark that satisfies pred, and returns its index
// among all events, or -1 when none came.
func (r *Recorder) WaitFor(mark int, d time.Duration, pred func(apikeys.ChangeEvent) bool) int {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		for i := mark; i < len(r.events); i++ {
			if pred(r.events[i].ChangeEvent) {
				r.mu.Unlock()
				return i
			}
		}
		mark = len(r.events)
		r.mu.Unlock()
		select {
		case <-r.wake:
		case <-deadline.C:
			return -1
		}
	}
}

// LiveAfter returns a predicate of a FeedLive vouching for every change committed before t.
func LiveAfter(t time.Time) func(apikeys.ChangeEvent) bool {
	return func(ev apikeys.ChangeEvent) bool { return ev.Kind == apikeys.FeedLive && ev.At.After(t) }
}

// watch starts f.Watch with a new Recorder and waits for its first FeedLive. The returned
// stop cancels the watch and waits for Watch to return (it fails the test if Watch does
// not return promptly); it also runs when the test ends.
func watch(t *testing.T, f apikeys.ChangeFeed) (r *Recorder, stop func()) {
	t.Helper()
	r = NewRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		_ = f.Watch(ctx, r.Record)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-returned:
			case <-time.After(5 * time.Second):
				t.Errorf("Watch did not return within 5s of its context's end")
			}
		})
	}
	t.Cleanup(stop)
	if r.WaitFor(0, feedWait, LiveAfter(time.Time{})) < 0 {
		t.Fatalf("no FeedLive within %s of Watch; events: %+v", feedWait, r.Events(0))
	}
	return r, stop
}

// catchUp waits until r has heard every change committed before now: a feed may report a
// write more than once, late copies included, and a test that checks what a later write
// reports must not see them.
func catchUp(t *testing.T, r *Recorder) {
	t.Helper()
	now := time.Now()
	if r.WaitFor(0, feedWait, LiveAfter(now)) < 0 {
		t.Fatalf("no FeedLive vouching past %s within %s", now.Format(time.StampMicro), feedWait)
	}
}

// wantChanged fails the test unless every handle was reported since mark.
func wantChanged(t *testing.T, what string, r *Recorder, mark int, handles ...string) {
	t.Helper()
	got := r.Changed(mark)
	for _, h := range handles {
		if !slices.Contains(got, h) {
			t.Errorf("%s: KeyChanged %s not reported before the write returned; reported %v", what, h, got)
		}
	}
}

func testFeedWritesReportedBeforeReturn(t *testing.T, s apikeys.KeyStore, f apikeys.ChangeFeed) {
	ctx := t.Context()
	r, _ := watch(t, f)

	a, b := newKey(t0), newKey(t0)
	mark := r.Len()
	create(t, s, a, b)
	wantChanged(t, "CreateKeys", r, mark, a.Handle, b.Handle)

	mark = r.Len()
	if _, err := s.UpdateKey(ctx, a.ID, func(k *apikeys.Key) error { k.Name = "renamed"; return nil }); err != nil {
		t.Fatal(err)
	}
	wantChanged(t, "UpdateKey", r, mark, a.Handle)

	mark = r.Len()
	repl := newKey(t0.Add(time.Minute), func(k *apikeys.Key) { k.SubjectID, k.RotatedFromID = a.SubjectID, a.ID })
	if _, _, err := s.RotateKey(ctx, a.ID, func(o *apikeys.Key) (apikeys.Key, error) {
		o.ReplacedByID = repl.ID
		return repl.Key, nil
	}); err != nil {
		t.Fatal(err)
	}
	wantChanged(t, "RotateKey", r, mark, a.Handle, repl.Handle)

	mark = r.Len()
	if set, err := s.SetKeyHash(ctx, b.ID, b.Hash, b.Hash+"x"); err != nil || !set {
		t.Fatalf("SetKeyHash = %v, %v", set, err)
	}
	wantChanged(t, "SetKeyHash", r, mark, b.Handle)
}

func testFeedNoChangeNoReport(t *testing.T, s apikeys.KeyStore, f apikeys.ChangeFeed) {
	ctx := t.Context()
	r, _ := watch(t, f)
	a := newKey(t0)
	create(t, s, a)
	catchUp(t, r)
	mark := r.Len()

	if err := s.RecordUsage(ctx, []apikeys.Usage{{KeyID: a.ID, At: t0.Add(time.Second), IP: "10.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateKey(ctx, a.ID, func(k *apikeys.Key) error { k.Name = "no"; return fnErrors[0] }); err == nil {
		t.Fatal("UpdateKey whose fn failed succeeded")
	}
	repl := newKey(t0, func(k *apikeys.Key) { k.SubjectID = a.SubjectID })
	if _, _, err := s.RotateKey(ctx, a.ID, func(o *apikeys.Key) (apikeys.Key, error) {
		o.ReplacedByID = repl.ID
		return repl.Key, fnErrors[1]
	}); err == nil {
		t.Fatal("RotateKey whose fn failed succeeded")
	}
	if _, _, err := s.RotateKey(ctx, a.ID, func(o *apikeys.Key) (apikeys.Key, error) {
		o.ReplacedByID = repl.ID
		k := repl.Key
		k.Handle = a.Handle // taken: the rotation is rolled back
		return k, nil
	}); err == nil {
		t.Fatal("RotateKey to a taken handle succeeded")
	}
	dup := newKey(t0, func(k *apikeys.Key) { k.ID = a.ID })
	if err := s.CreateKeys(ctx, []apikeys.NewKey{newKey(t0), dup}); err == nil {
		t.Fatal("CreateKeys of a taken id succeeded")
	}
	if set, err := s.SetKeyHash(ctx, a.ID, "not the hash", "new"); err != nil || set {
		t.Fatalf("SetKeyHash from a wrong hash = %v, %v", set, err)
	}
	if set, err := s.SetKeyHash(ctx, missingKeyID, a.Hash, "new"); err != nil || set {
		t.Fatalf("SetKeyHash of a missing key = %v, %v", set, err)
	}
	// Anything these writes reported would have arrived by now.
	catchUp(t, r)
	if got := r.Changed(mark); len(got) > 0 {
		t.Errorf("writes that changed no key (usage, failed fn, conflicts, failed compare-and-set) reported %v", got)
	}
}

func testFeedHeartbeat(t *testing.T, s apikeys.KeyStore, f apikeys.ChangeFeed) {
	start := time.Now()
	r := NewRecorder()
	ctx, cancel := context.WithCancel(t.Context())
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		_ = f.Watch(ctx, r.Record)
	}()
	defer func() { cancel(); <-returned }()
	const beats = 6
	for r.liveCount() < beats {
		if time.Since(start) > feedWait+beats*3*apikeys.HeartbeatInterval {
			break
		}
		r.WaitFor(r.Len(), apikeys.HeartbeatInterval, func(apikeys.ChangeEvent) bool { return true })
	}
	r.mu.Lock()
	events := slices.Clone(r.events)
	r.mu.Unlock()
	bound := 3 * apikeys.HeartbeatInterval
	prev, prevAt, n := start, time.Time{}, 0
	for _, e := range events {
		switch e.Kind {
		case apikeys.FeedLost:
			t.Errorf("FeedLost from a healthy feed after %s", e.arrived.Sub(start))
		case apikeys.FeedLive:
			n++
			if gap := e.arrived.Sub(prev); gap > bound {
				t.Errorf("FeedLive #%d came %s after the previous one (or Watch), want at most %s", n, gap, bound)
			}
			if e.At.After(e.arrived) || e.At.Before(start) || e.At.Before(prevAt) {
				t.Errorf("FeedLive #%d At %s: want between Watch (%s) and its arrival (%s), not before the previous At %s",
					n, e.At.Format(time.StampMicro), start.Format(time.StampMicro), e.arrived.Format(time.StampMicro), prevAt.Format(time.StampMicro))
			}
			prev, prevAt = e.arrived, e.At
		}
	}
	if n < beats {
		t.Errorf("%d FeedLive in %s, want %d", n, time.Since(start), beats)
	}
}

// liveCount is the number of FeedLive recorded.
func (r *Recorder) liveCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.Kind == apikeys.FeedLive {
			n++
		}
	}
	return n
}

func testFeedTwoWatchers(t *testing.T, s apikeys.KeyStore, f apikeys.ChangeFeed) {
	r1, _ := watch(t, f)
	r2, _ := watch(t, f)
	m1, m2 := r1.Len(), r2.Len()
	a := newKey(t0)
	create(t, s, a)
	wantChanged(t, "watcher 1", r1, m1, a.Handle)
	wantChanged(t, "watcher 2", r2, m2, a.Handle)
	for i, r := range []*Recorder{r1, r2} {
		if r.WaitFor(0, feedWait, LiveAfter(time.Now())) < 0 {
			t.Errorf("watcher %d: FeedLive stopped", i+1)
		}
	}
}

func testFeedNothingAfterCancel(t *testing.T, s apikeys.KeyStore, f apikeys.ChangeFeed) {
	gone, stop := watch(t, f)
	other, _ := watch(t, f)
	stop() // fails the test unless Watch returned
	after := gone.Len()
	a := newKey(t0)
	create(t, s, a)
	wantChanged(t, "the remaining watcher", other, 0, a.Handle)
	catchUp(t, other)                     // a late copy of the change would be here by now
	time.Sleep(apikeys.HeartbeatInterval) // and a heartbeat
	if evs := gone.Events(after); len(evs) > 0 {
		t.Errorf("a Watch that returned reported %+v", evs)
	}
}
