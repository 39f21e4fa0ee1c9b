// Package keytest forges tokens for tests and benchmarks: well-formed tokens that carry a real
// key's lookup handle but not its secret, which is how an attacker who saw a handle would
// probe.
package keytest

import (
	"fmt"
	"hash/crc32"

	"github.com/qs/apikeys/keys"
)

// Forge returns a token that parses, with secret's prefix and handle and a different secret:
// its last secret character changed and the checksum recomputed.
func Forge(secret string) (string, error) {
	tok, err := keys.Parse(secret)
	if err != nil {
		return "", err
	}
	prefix := tok.Prefix()
	body := []byte(secret[len(prefix) : len(secret)-6])
	body[len(body)-1] = map[bool]byte{true: 'B', false: 'A'}[body[len(body)-1] == 'A']
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	sum := crc32.ChecksumIEEE([]byte(prefix + string(body)))
	var digits [6]byte
	for i := 5; i >= 0; i-- {
		digits[i] = alphabet[sum%62]
		sum /= 62
	}
	forged := prefix + string(body) + string(digits[:])
	if _, err := keys.Parse(forged); err != nil {
		return "", fmt.Errorf("forged token does not parse: %w", err)
	}
	return forged, nil
}

// TB is the part of testing.TB that WrongSecret needs.
type TB interface {
	Helper()
	Fatal(args ...any)
}

// WrongSecret is Forge for a test, which it fails on error.
func WrongSecret(t TB, secret string) string {
	t.Helper()
	forged, err := Forge(secret)
	if err != nil {
		t.Fatal(err)
	}
	return forged
}
