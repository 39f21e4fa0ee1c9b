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
