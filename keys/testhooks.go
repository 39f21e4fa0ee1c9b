package keys

// HoldSlotsForTest takes every slot of h, as a flood of argon2id work would, and returns the
// function that gives them back. It exists for tests of what callers do when the hasher is
// saturated; production code never calls it.
func HoldSlotsForTest(h *Hasher) (release func()) {
	for range cap(h.slots) {
		h.slots <- struct{}{}
	}
	return func() {
		for range cap(h.slots) {
			<-h.slots
		}
	}
}
