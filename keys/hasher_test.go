package keys

import (
	"context"
	"errors"
	"testing"
	"time"
)

// holdSlots takes every slot of h, as a flood of argon2id work would, and returns the
// function that gives them back.
func holdSlots(h *Hasher) (release func()) {
	for range cap(h.slots) {
		h.slots <- struct{}{}
	}
	return func() {
		for range cap(h.slots) {
			<-h.slots
		}
	}
}

var cheap = Params{MemoryKiB: 64, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}

func TestHasherBoundsConcurrentWork(t *testing.T) {
	h := NewHasher(cheap, 2, 20*time.Millisecond)
	ctx := context.Background()
	phc, err := h.Hash(ctx, "secret")
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := h.Verify(ctx, "secret", phc); !ok || err != nil {
		t.Fatalf("Verify = %v, %v", ok, err)
	}
	release := holdSlots(h)
	start := time.Now()
	if _, err := h.Hash(ctx, "secret"); !errors.Is(err, ErrBusy) {
		t.Errorf("Hash with every slot busy: %v, want ErrBusy", err)
	}
	if waited := time.Since(start); waited < 20*time.Millisecond {
		t.Errorf("gave up after %v, before the 20ms wait", waited)
	}
	if _, err := h.Verify(ctx, "secret", phc); !errors.Is(err, ErrBusy) {
		t.Errorf("Verify with every slot busy: %v, want ErrBusy", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := h.Hash(cancelled, "secret"); !errors.Is(err, context.Canceled) {
		t.Errorf("Hash with a cancelled context: %v", err)
	}
	release()
	if ok, err := h.Verify(ctx, "secret", phc); !ok || err != nil {
		t.Errorf("after release: %v, %v", ok, err)
	}
	if got := h.Slots(); got != 2 {
		t.Errorf("Slots = %d", got)
	}
}

// TestHasherReportsItsQueue checks what metrics read of the hasher: every call's wait is
// heard once, whatever its outcome, and the snapshot counts the running, the waiting and
// the refused.
func TestHasherReportsItsQueue(t *testing.T) {
	h := NewHasher(cheap, 1, 50*time.Millisecond)
	ctx := context.Background()
	waits := make(chan time.Duration, 10)
	h.OnWait(func(d time.Duration) { waits <- d })

	if _, err := h.Hash(ctx, "secret"); err != nil {
		t.Fatal(err)
	}
	if d := <-waits; d != 0 {
		t.Errorf("a call that found a free slot waited %v, want 0", d)
	}
	if got, want := h.Stats(), (HasherStats{Slots: 1}); got != want {
		t.Errorf("idle: Stats = %+v, want %+v", got, want)
	}

	release := holdSlots(h)
	done := make(chan error)
	go func() {
		_, err := h.Hash(ctx, "secret")
		done <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for h.Stats().Waiting != 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got, want := h.Stats(), (HasherStats{Slots: 1, Running: 1, Waiting: 1}); got != want {
		t.Errorf("queued: Stats = %+v, want %+v", got, want)
	}
	if err := <-done; !errors.Is(err, ErrBusy) {
		t.Fatalf("Hash with the slot held: %v, want ErrBusy", err)
	}
	if d := <-waits; d < 50*time.Millisecond {
		t.Errorf("a refused call reported a wait of %v, want at least the 50ms it waited", d)
	}
	if got, want := h.Stats(), (HasherStats{Slots: 1, Running: 1, Busy: 1}); got != want {
		t.Errorf("after a refusal: Stats = %+v, want %+v", got, want)
	}

	go func() {
		_, err := h.Hash(ctx, "secret")
		done <- err
	}()
	for h.Stats().Waiting != 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(5 * time.Millisecond)
	release()
	if err := <-done; err != nil {
		t.Fatalf("Hash once the slot was given back: %v", err)
	}
	if d := <-waits; d < 5*time.Millisecond {
		t.Errorf("a call that queued reported a wait of %v, want at least 5ms", d)
	}

	h.OnWait(nil)
	if _, err := h.Hash(ctx, "secret"); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-waits:
		t.Errorf("a removed observer heard a wait of %v", d)
	default:
	}
	if got, want := h.Stats(), (HasherStats{Slots: 1, Busy: 1}); got != want {
		t.Errorf("at the end: Stats = %+v, want %+v", got, want)
	}
}

// TestHasherRefusesAnEndedContext: with slots free, a caller whose deadline has passed gets
// its context's error and no argon2id run (a batch's later keys are not hashed for nobody).
func TestHasherRefusesAnEndedContext(t *testing.T) {
	h := NewHasher(cheap, 2, time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	<-ctx.Done()
	var waits int
	h.OnWait(func(time.Duration) { waits++ })
	if _, err := h.Hash(ctx, "secret"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Hash after the deadline: %v, want context.DeadlineExceeded", err)
	}
	if _, err := h.Verify(ctx, "secret", "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Verify after the deadline: %v, want context.DeadlineExceeded", err)
	}
	if waits != 0 || h.Stats().Running != 0 {
		t.Errorf("an ended context took a slot: %d waits heard, %d running", waits, h.Stats().Running)
	}
}

// TestNeedsRehash: a hash made with any parameters other than the Hasher's is redone on the
// next successful verification, weaker and stronger alike (the OWASP parameters of earlier
// versions come down to DefaultParams); one made with them, or unreadable, is left alone.
func TestNeedsRehash(t *testing.T) {
	h := NewHasher(DefaultParams(), 1, time.Second)
	with := func(f func(*Params)) string {
		p := DefaultParams()
		f(&p)
		phc, err := Hash("secret", p)
		if err != nil {
			t.Fatal(err)
		}
		return phc
	}
	for _, tt := range []struct {
		name string
		phc  string
		want bool
	}{
		{"the Hasher's parameters", with(func(*Params) {}), false},
		{"OWASP's (earlier versions' default)", with(func(p *Params) { *p = OWASPParams() }), true},
		{"more memory", with(func(p *Params) { p.MemoryKiB = 128 }), true},
		{"more iterations", with(func(p *Params) { p.Iterations = 2 }), true},
		{"less memory", with(func(p *Params) { p.MemoryKiB = 32 }), true},
		{"a shorter salt", with(func(p *Params) { p.SaltLen = 8 }), true},
		{"a longer hash", with(func(p *Params) { p.KeyLen = 64 }), true},
		{"unreadable", "$argon2id$v=19$garbage", false},
	} {
		if got := h.NeedsRehash(tt.phc); got != tt.want {
			t.Errorf("%s: NeedsRehash = %v, want %v", tt.name, got, tt.want)
		}
	}
}
