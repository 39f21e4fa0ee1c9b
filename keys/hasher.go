package keys

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"time"
)

// ErrBusy is returned by a Hasher whose every slot stayed busy for the whole wait: the
// service is saturated with argon2id work and the caller should answer "retry later".
var ErrBusy = errors.New("keys: every argon2id slot stayed busy")

// Hasher runs argon2id, hashing or verifying, in a fixed number of slots, so that a flood of
// requests costs bounded memory and CPU: argon2id takes MemoryKiB per run, and more runs than
// cores only make every one of them slower. A caller waits at most Wait for a slot.
type Hasher struct {
	params Params
	slots  chan struct{}
	wait   time.Duration

	waiting atomic.Int64                        // callers waiting for a slot now
	busy    atomic.Int64                        // calls refused with ErrBusy so far
	onWait  atomic.Pointer[func(time.Duration)] // see OnWait
}

// HasherStats is a snapshot of a Hasher's work, for metrics.
type HasherStats struct {
	Slots   int   // how many argon2id computations may run at once
	Running int   // argon2id computations running now
	Waiting int   // callers waiting for a slot now
	Busy    int64 // calls refused with ErrBusy since the Hasher was made
}

// NewHasher returns a Hasher that makes new hashes with params (which the caller has
// validated), runs at most slots argon2id computations at once (GOMAXPROCS when slots < 1)
// and lets a caller wait at most wait for a slot (10 s when wait <= 0).
func NewHasher(params Params, slots int, wait time.Duration) *Hasher {
	if slots < 1 {
		slots = runtime.GOMAXPROCS(0)
	}
	if wait <= 0 {
		wait = 10 * time.Second
	}
	return &Hasher{params: params, slots: make(chan struct{}, slots), wait: wait}
}

// Slots returns how many argon2id computations may run at once.
func (h *Hasher) Slots() int { return cap(h.slots) }

// Stats returns what the Hasher is doing now and how often it has refused work.
func (h *Hasher) Stats() HasherStats {
	return HasherStats{Slots: cap(h.slots), Running: len(h.slots), Waiting: int(h.waiting.Load()), Busy: h.busy.Load()}
}

// OnWait makes fn hear, for every Hash and Verify, how long it waited for a slot (0 when one
// was free), whether it then got one or gave up (ErrBusy, or its context ended): the queue
// that argon2id's bound builds is what a metric of it must show. fn replaces any earlier
// one (nil removes it); it is called on the caller's goroutine and must be quick.
func (h *Hasher) OnWait(fn func(time.Duration)) {
	if fn == nil {
		h.onWait.Store(nil)
		return
	}
	h.onWait.Store(&fn)
}

func (h *Hasher) waited(d time.Duration) {
	if fn := h.onWait.Load(); fn != nil {
		(*fn)(d)
	}
}

// acquire waits for a slot: ErrBusy after the wait, ctx's error when it ends first. A
// context that has ended gets no slot even when one is free: the work it would start (a
// batch's next key) is work nobody waits for any more.
func (h *Hasher) acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case h.slots <- struct{}{}:
		h.waited(0)
		return nil
	default:
	}
	start := time.Now()
	h.waiting.Add(1)
	defer h.waiting.Add(-1)
	t := time.NewTimer(h.wait)
	defer t.Stop()
	select {
	case h.slots <- struct{}{}:
		h.waited(time.Since(start))
		return nil
	case <-t.C:
		h.busy.Add(1)
		h.waited(time.Since(start))
		return ErrBusy
	case <-ctx.Done():
		h.waited(time.Since(start))
		return ctx.Err()
	}
}

func (h *Hasher) release() { <-h.slots }

// Hash is Hash with the Hasher's parameters, in a slot. ErrBusy.
func (h *Hasher) Hash(ctx context.Context, secret string) (string, error) {
	if err := h.acquire(ctx); err != nil {
		return "", err
	}
	defer h.release()
	return Hash(secret, h.params)
}

// Verify is Verify in a slot. ErrBusy.
func (h *Hasher) Verify(ctx context.Context, secret, phc string) (bool, error) {
	if err := h.acquire(ctx); err != nil {
		return false, err
	}
	defer h.release()
	return Verify(secret, phc)
}

// NeedsRehash reports whether phc was made with parameters other than the Hasher's (memory,
// iterations, lanes, salt or hash length), so that a key verified against it should be hashed
// again: weaker ones are strengthened, and stronger ones that the secret does not need (the
// OWASP parameters of earlier versions, see DefaultParams) are brought down to the configured
// cost. A phc that cannot be read needs no rehash: it cannot verify.
func (h *Hasher) NeedsRehash(phc string) bool {
	p, err := ParamsOf(phc)
	if err != nil {
		return false
	}
	return p != h.params
}
