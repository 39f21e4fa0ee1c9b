package keys

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// ErrBadHash is wrapped by the errors of Verify and ParamsOf when a stored
// hash cannot be used: it is not a well-formed argon2id PHC string, has a
// version other than 19, or asks for parameters outside Params.Validate's
// bounds. Such a row is corrupt or was written by something else; it is
// distinct from a wrong secret, which Verify reports as (false, nil).
var ErrBadHash = errors.New("keys: malformed argon2id hash")

// Params are the argon2id cost parameters and output sizes. Hash writes
// them into the PHC string and Verify reads them back from there, so
// changing the parameters used for new hashes never breaks old ones.
type Params struct {
	// MemoryKiB is the memory cost in KiB.
	MemoryKiB uint32
	// Iterations is the number of passes over the memory.
	Iterations uint32
	// Parallelism is the number of lanes (and goroutines) used.
	Parallelism uint8
	// SaltLen is the length of the random salt in bytes.
	SaltLen uint32
	// KeyLen is the length of the derived hash in bytes.
	KeyLen uint32
}

// Bounds enforced by Params.Validate.
const (
	maxMemoryKiB   = 4 << 20 // 4 GiB
	maxIterations  = 100
	maxParallelism = 64
	minSaltLen     = 8
	maxSaltLen     = 64
	minKeyLen      = 16
	maxKeyLen      = 64
	// maxPHCLen comfortably exceeds the longest string within the bounds
	// (about 230 bytes) and keeps hostile input from costing much.
	maxPHCLen = 512
)

// DefaultParams returns the parameters for secrets this service generates: argon2id with
// 64 KiB, 1 iteration and 1 lane (about 0.1 ms of a core), a 16-byte salt and a 32-byte hash.
//
// The cost of a hash protects a secret in proportion to how guessable the secret is. OWASP's
// argon2id minimum (19 MiB, 2 iterations, 30 ms) is sized for passwords, a few tens of bits
// that a dictionary finds; a generated key holds 131 random bits, for which NIST SP 800-63B
// (look-up secrets of at least 112 bits) asks only an approved one-way function. Someone
// holding a dump of the database cannot test guesses against it to any effect: finding one
// secret takes about 2^130 tries whatever each costs (at a trillion tries a second, about
// 10^19 years). The hash stays argon2id so that a dump is as opaque as with the OWASP
// parameters, while a key's first verification on a replica costs 0.1 ms instead of 30.
// Secrets that did not come from this service (a password-like token brought from
// elsewhere) deserve OWASPParams.
func DefaultParams() Params {
	return Params{
		MemoryKiB:   64,
		Iterations:  1,
		Parallelism: 1,
		SaltLen:     16,
		KeyLen:      32,
	}
}

// OWASPParams returns OWASP's argon2id minimum for passwords (19 MiB, 2 iterations, 1 lane)
// with a 16-byte salt and a 32-byte hash: for secrets whose entropy this service did not
// choose. DefaultParams explains why generated keys do not need them.
func OWASPParams() Params {
	return Params{
		MemoryKiB:   19456,
		Iterations:  2,
		Parallelism: 1,
		SaltLen:     16,
		KeyLen:      32,
	}
}

// Validate reports whether p is within sane bounds: Parallelism 1..64,
// MemoryKiB 8*Parallelism..4194304 (argon2 needs 8 KiB per lane; the cap is
// 4 GiB), Iterations 1..100, SaltLen 8..64 and KeyLen 16..64. Hash refuses
// parameters outside them, and Verify refuses stored hashes that claim
// them, so a corrupted row cannot make the server allocate a terabyte.
func (p Params) Validate() error {
	if why := p.outOfBounds(); why != "" {
		return errors.New("keys: invalid argon2 params: " + why)
	}
	return nil
}

// outOfBounds describes the first bound p violates, or returns "".
func (p Params) outOfBounds() string {
	switch {
	case p.Parallelism < 1 || p.Parallelism > maxParallelism:
		return fmt.Sprintf("parallelism %d outside 1..%d", p.Parallelism, maxParallelism)
	case p.MemoryKiB < 8*uint32(p.Parallelism) || p.MemoryKiB > maxMemoryKiB:
		return fmt.Sprintf("memory %d KiB outside %d..%d", p.MemoryKiB, 8*uint32(p.Parallelism), maxMemoryKiB)
	case p.Iterations < 1 || p.Iterations > maxIterations:
		return fmt.Sprintf("iterations %d outside 1..%d", p.Iterations, maxIterations)
	case p.SaltLen < minSaltLen || p.SaltLen > maxSaltLen:
		return fmt.Sprintf("salt length %d outside %d..%d", p.SaltLen, minSaltLen, maxSaltLen)
	case p.KeyLen < minKeyLen || p.KeyLen > maxKeyLen:
		return fmt.Sprintf("key length %d outside %d..%d", p.KeyLen, minKeyLen, maxKeyLen)
	}
	return ""
}

// Hash derives an argon2id hash of secret with a fresh random salt and
// returns it as a PHC string, for example
//
//	$argon2id$v=19$m=64,t=1,p=1$<salt>$<hash>
//
// with salt and hash in unpadded standard base64. The string is
// self-describing: store it as is and check keys against it with Verify.
// It fails if p does not Validate or the random source fails.
func Hash(secret string, p Params) (string, error) {
	return hashWithReader(rand.Reader, secret, p)
}

func hashWithReader(r io.Reader, secret string, p Params) (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	salt := make([]byte, p.SaltLen)
	if _, err := io.ReadFull(r, salt); err != nil {
		return "", fmt.Errorf("keys: generating salt: %w", err)
	}
	key := argon2.IDKey([]byte(secret), salt, p.Iterations, p.MemoryKiB, p.Parallelism, p.KeyLen)
	return encodePHC(p, salt, key), nil
}

// Verify reports whether secret matches the PHC string phc made by Hash.
// The parameters, salt and hash length come from phc itself, so hashes
// made under older Params keep verifying. The comparison is constant-time.
//
// A wrong secret gives (false, nil). A phc that is malformed, is not
// argon2id version 19, or claims parameters outside Params.Validate's
// bounds gives (false, err) with err wrapping ErrBadHash; nothing
// expensive is computed in that case.
func Verify(secret, phc string) (bool, error) {
	return verifyWithLimit(secret, phc, maxMemoryKiB)
}

// verifyWithLimit is Verify with a tighter memory ceiling, so the fuzzer
// can exercise the whole path without allocating gigabytes.
func verifyWithLimit(secret, phc string, maxMemKiB uint32) (bool, error) {
	p, salt, want, err := decodePHC(phc)
	if err != nil {
		return false, err
	}
	if p.MemoryKiB > maxMemKiB {
		return false, fmt.Errorf("%w: memory %d KiB exceeds limit %d", ErrBadHash, p.MemoryKiB, maxMemKiB)
	}
	got := argon2.IDKey([]byte(secret), salt, p.Iterations, p.MemoryKiB, p.Parallelism, p.KeyLen)
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// ParamsOf returns the parameters recorded in a PHC string made by Hash,
// with SaltLen and KeyLen taken from the decoded salt and hash. Compare the
// result with the current Params after a successful Verify to decide
// whether to rehash. Errors wrap ErrBadHash, as in Verify.
func ParamsOf(phc string) (Params, error) {
	p, _, _, err := decodePHC(phc)
	return p, err
}

func encodePHC(p Params, salt, key []byte) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.MemoryKiB, p.Iterations, p.Parallelism,
		base64.RawStdEncoding.EncodeToString(salt),
		base64.RawStdEncoding.EncodeToString(key))
}

// decodePHC parses the exact format encodePHC writes and nothing looser:
// fixed field order, decimal numbers without signs or leading zeros, and
// canonical unpadded base64. Every accepted string therefore re-encodes to
// itself, which FuzzVerifyPHC checks.
func decodePHC(phc string) (Params, []byte, []byte, error) {
	bad := func(why string) (Params, []byte, []byte, error) {
		return Params{}, nil, nil, fmt.Errorf("%w: %s", ErrBadHash, why)
	}
	if len(phc) > maxPHCLen {
		return bad("too long")
	}
	fields := strings.Split(phc, "$")
	if len(fields) != 6 || fields[0] != "" {
		return bad("want $argon2id$v=19$m=…,t=…,p=…$salt$hash")
	}
	if fields[1] != "argon2id" {
		return bad("algorithm is not argon2id")
	}
	v, ok := strings.CutPrefix(fields[2], "v=")
	if !ok {
		return bad("missing version")
	}
	if version, err := parseDecimal(v, 32); err != nil || version != argon2.Version {
		return bad("unsupported version")
	}
	kv := strings.Split(fields[3], ",")
	if len(kv) != 3 {
		return bad("want parameters m=…,t=…,p=…")
	}
	var nums [3]uint64
	for i, name := range [3]string{"m=", "t=", "p="} {
		s, ok := strings.CutPrefix(kv[i], name)
		if !ok {
			return bad("want parameters m=…,t=…,p=…")
		}
		bits := 32
		if i == 2 {
			bits = 8
		}
		n, err := parseDecimal(s, bits)
		if err != nil {
			return bad("parameter " + name[:1] + " is not a valid number")
		}
		nums[i] = n
	}
	salt, err := decodeBase64(fields[4])
	if err != nil {
		return bad("salt is not unpadded base64")
	}
	key, err := decodeBase64(fields[5])
	if err != nil {
		return bad("hash is not unpadded base64")
	}
	p := Params{
		MemoryKiB:   uint32(nums[0]),
		Iterations:  uint32(nums[1]),
		Parallelism: uint8(nums[2]),
		SaltLen:     uint32(len(salt)),
		KeyLen:      uint32(len(key)),
	}
	if why := p.outOfBounds(); why != "" {
		return bad(why)
	}
	return p, salt, key, nil
}

// parseDecimal accepts only canonical unsigned decimals that fit in bits.
func parseDecimal(s string, bits int) (uint64, error) {
	if s == "" || (len(s) > 1 && s[0] == '0') {
		return 0, errors.New("not a canonical decimal")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errors.New("not a canonical decimal")
		}
	}
	return strconv.ParseUint(s, 10, bits)
}

// decodeBase64 decodes canonical unpadded standard base64. The alphabet is
// checked by hand because encoding/base64 silently skips '\r' and '\n'.
func decodeBase64(s string) ([]byte, error) {
	if s == "" {
		return nil, errors.New("empty")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'A' || c > 'Z') && (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '+' && c != '/' {
			return nil, errors.New("invalid base64 character")
		}
	}
	return base64.RawStdEncoding.Strict().DecodeString(s)
}
