package keys

import (
	"context"
	"errors"
	"runtime"
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

// acquire waits for a slot: ErrBusy after the wait, ctx's error when it ends first.
func (h *Hasher) acquire(ctx context.Context) error {
	select {
	case h.slots <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(h.wait)
	defer t.Stop()
	select {
	case h.slots <- struct{}{}:
		return nil
	case <-t.C:
		return ErrBusy
	case <-ctx.Done():
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

// NeedsRehash reports whether phc was made with parameters weaker than the Hasher's (less
// memory, fewer iterations or lanes, a shorter salt or hash), so that a key verified against
// it should be hashed again. A phc that cannot be read needs no rehash: it cannot verify.
func (h *Hasher) NeedsRehash(phc string) bool {
	p, err := ParamsOf(phc)
	if err != nil {
		return false
	}
	return p.MemoryKiB < h.params.MemoryKiB || p.Iterations < h.params.Iterations ||
		p.Parallelism < h.params.Parallelism || p.SaltLen < h.params.SaltLen || p.KeyLen < h.params.KeyLen
}
