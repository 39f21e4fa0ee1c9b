// Package keys creates, parses and hashes API keys.
//
// A key looks like GitHub or Stripe tokens:
//
//	qs_live_ + <12-char handle> + <22-char secret> + <6-char checksum>
//
// The prefix makes a leaked key recognisable to people and to secret
// scanners, the handle lets the database find the key's row without a hash
// per row, the secret carries about 131 bits of entropy, and the CRC32
// checksum lets Parse reject typos and random strings without touching the
// database. The characters after the prefix are base62, so a key survives
// double-click selection, URLs and shells without quoting.
//
// The package is pure apart from reading crypto/rand: it never logs, and
// its errors never contain the input, because that input may be a secret.
package keys

import (
	"crypto/rand"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
)

// ErrMalformed is wrapped by every error Parse returns, so callers can
// answer "401 invalid key" with errors.Is without looking at the details.
// The wrapping errors describe what was wrong but never quote the input.
var ErrMalformed = errors.New("keys: malformed token")

// DefaultPrefix is the prefix used for newly issued production keys when the
// service is not configured otherwise.
const DefaultPrefix = "qs_live_"

// HandleLen is the length of the lookup handle in characters, for sizing the
// database column that stores it.
const HandleLen = 12

const (
	secretLen   = 22
	checksumLen = 6
	bodyLen     = HandleLen + secretLen + checksumLen // 40
	minPrefix   = 2
	maxPrefix   = 24
	// maxTokenLen bounds the work Parse does on hostile input.
	maxTokenLen = 256
)

const base62Alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// base62Index maps a byte to its base62 digit value, or -1.
var base62Index = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for i := 0; i < len(base62Alphabet); i++ {
		t[base62Alphabet[i]] = int8(i)
	}
	return t
}()

// ValidatePrefix reports whether prefix can start a key: 2 to 24 characters,
// a lower-case letter first, then lower-case letters, digits or
// underscores, and an underscore last. The trailing underscore is what lets
// Parse split a key into prefix and body, since the body never contains one.
// Call it when loading configuration so a bad prefix fails at start-up
// rather than on the first key issued.
func ValidatePrefix(prefix string) error {
	if len(prefix) < minPrefix || len(prefix) > maxPrefix {
		return fmt.Errorf("keys: invalid prefix %q: length must be %d..%d", prefix, minPrefix, maxPrefix)
	}
	if c := prefix[0]; c < 'a' || c > 'z' {
		return fmt.Errorf("keys: invalid prefix %q: must start with a lower-case letter", prefix)
	}
	for i := 1; i < len(prefix); i++ {
		c := prefix[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return fmt.Errorf("keys: invalid prefix %q: only a-z, 0-9 and '_' are allowed", prefix)
		}
	}
	if prefix[len(prefix)-1] != '_' {
		return fmt.Errorf("keys: invalid prefix %q: must end with '_'", prefix)
	}
	return nil
}

// Token is an API key, either freshly generated or parsed from a client.
//
// Secret is the only way to read the full key. String, every fmt verb and
// log/slog all print a redacted form, so a Token that ends up in a log line
// or an error message does not leak. The key is kept behind a pointer so
// that even printing a struct that holds a Token in an unexported field
// (which fmt does by reflection, bypassing the methods) shows only an
// address. As a consequence, compare Tokens with Secret, not with ==.
//
// The zero Token is not a valid key; its accessors return empty strings.
type Token struct {
	p *tokenData
}

type tokenData struct {
	raw  string // prefix + body
	plen int    // len(prefix)
}

// Generate issues a new key under prefix, drawing the handle and the secret
// uniformly from crypto/rand. It fails if the prefix is invalid (see
// ValidatePrefix) or the random source fails.
func Generate(prefix string) (Token, error) {
	return generate(rand.Reader, prefix)
}

func generate(r io.Reader, prefix string) (Token, error) {
	if err := ValidatePrefix(prefix); err != nil {
		return Token{}, err
	}
	random, err := randBase62(r, HandleLen+secretLen)
	if err != nil {
		return Token{}, fmt.Errorf("keys: generating token: %w", err)
	}
	buf := make([]byte, 0, len(prefix)+bodyLen)
	buf = append(buf, prefix...)
	buf = append(buf, random...)
	buf = appendChecksum(buf, crc32.ChecksumIEEE(buf))
	return Token{&tokenData{raw: string(buf), plen: len(prefix)}}, nil
}

// randBase62 returns n characters drawn uniformly from the base62 alphabet.
// Bytes of 248 and above are rejected rather than reduced modulo 62, since
// 256 is not a multiple of 62 and the first eight symbols would otherwise
// be 25% more likely.
func randBase62(r io.Reader, n int) ([]byte, error) {
	const limit = 256 - 256%len(base62Alphabet) // 248
	out := make([]byte, 0, n)
	buf := make([]byte, n)
	for len(out) < n {
		chunk := buf[:n-len(out)]
		if _, err := io.ReadFull(r, chunk); err != nil {
			return nil, err
		}
		for _, b := range chunk {
			if int(b) < limit {
				out = append(out, base62Alphabet[int(b)%len(base62Alphabet)])
			}
		}
	}
	return out, nil
}

// appendChecksum appends sum in base62, left-padded with '0' to
// checksumLen characters. 62^6 > 2^32, so every CRC32 fits.
func appendChecksum(dst []byte, sum uint32) []byte {
	var digits [checksumLen]byte
	v := sum
	for i := checksumLen - 1; i >= 0; i-- {
		digits[i] = base62Alphabet[v%62]
		v /= 62
	}
	return append(dst, digits[:]...)
}

// Parse checks that s is a syntactically valid key and splits it into its
// parts. It accepts any prefix that ValidatePrefix allows, not only the one
// currently configured, so keys issued under an older prefix keep working;
// callers that want to restrict prefixes can compare Prefix themselves.
//
// Parse does not authenticate anything: a key that parses may still be
// unknown or revoked. Its value is rejecting typos and junk cheaply,
// before any database lookup or password hashing. Every error wraps
// ErrMalformed.
func Parse(s string) (Token, error) {
	if len(s) > maxTokenLen {
		return Token{}, fmt.Errorf("%w: longer than %d bytes", ErrMalformed, maxTokenLen)
	}
	// The body is base62, so the prefix ends at the last underscore.
	cut := -1
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '_' {
			cut = i
			break
		}
	}
	if cut < 0 {
		return Token{}, fmt.Errorf("%w: no prefix", ErrMalformed)
	}
	prefix, body := s[:cut+1], s[cut+1:]
	// Not ValidatePrefix's error: it quotes the prefix, and in a garbled
	// key the "prefix" can hold most of the secret.
	if ValidatePrefix(prefix) != nil {
		return Token{}, fmt.Errorf("%w: invalid prefix", ErrMalformed)
	}
	if len(body) != bodyLen {
		return Token{}, fmt.Errorf("%w: body must be %d characters, got %d", ErrMalformed, bodyLen, len(body))
	}
	for i := 0; i < len(body); i++ {
		if base62Index[body[i]] < 0 {
			return Token{}, fmt.Errorf("%w: invalid character at offset %d", ErrMalformed, len(prefix)+i)
		}
	}
	payload := s[:len(s)-checksumLen]
	var want [checksumLen]byte
	if string(appendChecksum(want[:0], crc32.ChecksumIEEE([]byte(payload)))) != s[len(payload):] {
		return Token{}, fmt.Errorf("%w: checksum mismatch", ErrMalformed)
	}
	return Token{&tokenData{raw: s, plen: len(prefix)}}, nil
}

// Secret returns the whole key, prefix included, exactly as the client
// sends it. It is the only method that reveals the secret: show it to the
// user once at creation, hash it with Hash, and never log it.
func (t Token) Secret() string {
	if t.p == nil {
		return ""
	}
	return t.p.raw
}

// Prefix returns the key's prefix including the trailing underscore, for
// callers that accept only some prefixes or report which environment a key
// belongs to.
func (t Token) Prefix() string {
	if t.p == nil {
		return ""
	}
	return t.p.raw[:t.p.plen]
}

// Handle returns the HandleLen-character lookup handle that identifies the
// key's database row. It is not secret on its own, so it may be logged, but
// it is also not proof of anything: always verify the whole key.
func (t Token) Handle() string {
	if t.p == nil {
		return ""
	}
	return t.p.raw[t.p.plen : t.p.plen+HandleLen]
}

// DisplayPrefix returns the prefix plus the first four characters after it
// (12 characters with DefaultPrefix), enough for a user to tell their keys
// apart in a listing without the listing revealing them.
func (t Token) DisplayPrefix() string {
	if t.p == nil {
		return ""
	}
	return t.p.raw[:t.p.plen+4]
}

// LastFour returns the last four characters of the key, which listings show
// next to DisplayPrefix. They are checksum characters, not secret ones;
// as part of a CRC over the secret they give away about 24 bits of it,
// which still leaves more than 100 bits of entropy.
func (t Token) LastFour() string {
	if t.p == nil {
		return ""
	}
	return t.p.raw[len(t.p.raw)-4:]
}

// String returns a redacted form such as "qs_live_AbC1…(redacted)" so that
// printing a Token by accident is harmless. Use Secret for the key itself.
func (t Token) String() string {
	if t.p == nil {
		return "keys.Token(zero)"
	}
	return t.DisplayPrefix() + "…(redacted)"
}

// Format makes every fmt verb print a redacted Token. %+v and %#v give
// keys.Token{prefix:"…", handle:"…", secret:REDACTED} for debugging;
// all other verbs format String as a string would be.
func (t Token) Format(f fmt.State, verb rune) {
	if verb == 'v' && (f.Flag('+') || f.Flag('#')) {
		fmt.Fprintf(f, "keys.Token{prefix:%q, handle:%q, secret:REDACTED}", t.Prefix(), t.Handle())
		return
	}
	fmt.Fprintf(f, fmt.FormatString(f, verb), t.String())
}

// LogValue implements slog.LogValuer so that structured logging records the
// prefix and handle, which identify the key, but not its secret.
func (t Token) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("prefix", t.Prefix()),
		slog.String("handle", t.Handle()),
		slog.String("secret", "REDACTED"),
	)
}

var (
	_ fmt.Stringer   = Token{}
	_ fmt.Formatter  = Token{}
	_ slog.LogValuer = Token{}
)
