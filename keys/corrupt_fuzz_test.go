package keys

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

// FuzzParseRefusesCorruption generates a token from the fuzzer's bytes (under one of a few
// prefixes) and holds Parse to: the token parses and re-renders (Secret) to the same string,
// without String showing its secret; and any one byte of it replaced by another character a
// token may hold ('_', a digit or a letter), and any two adjacent differing characters
// swapped, is refused with ErrMalformed. The CRC32 checksum catches every such change: each
// is a burst of at most 16 bits. (FuzzParse holds Parse to its properties on any string.)
func FuzzParseRefusesCorruption(f *testing.F) {
	f.Add(uint8(0), []byte("seed"), uint8(0), byte('A'))
	f.Add(uint8(1), []byte{0xff, 0x00, 0x7f}, uint8(47), byte('_'))
	f.Add(uint8(2), []byte("another seed, longer than thirty-two bytes"), uint8(9), byte('z'))
	f.Add(uint8(3), []byte{}, uint8(255), byte(0))
	prefixes := []string{DefaultPrefix, "acme_test_", "a_", "x_y_z_", "p" + strings.Repeat("0", 22) + "_"}
	const alphabet = "_" + base62Alphabet
	f.Fuzz(func(t *testing.T, p uint8, seed []byte, pos uint8, c byte) {
		var key [32]byte
		copy(key[:], seed)
		prefix := prefixes[int(p)%len(prefixes)]
		tok, err := generate(rand.NewChaCha8(key), prefix)
		if err != nil {
			t.Fatal(err)
		}
		secret := tok.Secret()
		back, err := Parse(secret)
		if err != nil || back.Secret() != secret || back.Prefix() != prefix {
			t.Fatalf("Parse(%q) = %q (prefix %q), %v", secret, back.Secret(), back.Prefix(), err)
		}
		if strings.Contains(back.String(), secret[len(prefix)+HandleLen:]) {
			t.Fatalf("String() = %q shows the secret", back.String())
		}

		i := int(pos) % len(secret)
		repl := alphabet[int(c)%len(alphabet)]
		if repl == secret[i] {
			repl = alphabet[(int(c)+1)%len(alphabet)]
		}
		changed := secret[:i] + string(repl) + secret[i+1:]
		if got, err := Parse(changed); !errors.Is(err, ErrMalformed) || got.Secret() != "" {
			t.Fatalf("Parse accepted %q: %q with byte %d replaced by %q", changed, secret, i, repl)
		}

		j := i % (len(secret) - 1)
		if secret[j] != secret[j+1] {
			swapped := secret[:j] + string(secret[j+1]) + string(secret[j]) + secret[j+2:]
			if _, err := Parse(swapped); !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse accepted %q: %q with bytes %d and %d swapped", swapped, secret, j, j+1)
			}
		}
	})
}
