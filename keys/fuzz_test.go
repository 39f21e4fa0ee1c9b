package keys

import (
	"errors"
	"hash/crc32"
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	for _, prefix := range []string{DefaultPrefix, "acme_test_", "a_"} {
		tok, err := Generate(prefix)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tok.Secret())
		f.Add(tok.Secret()[1:])
		f.Add(tok.Secret() + "_")
	}
	for _, junk := range []string{
		"", "_", "__", "qs_live_", "qs_live_" + strings.Repeat("0", 40),
		"Bearer qs_live_abc", "\x00\xff", "ä_" + strings.Repeat("a", 40),
		strings.Repeat("_", 300),
	} {
		f.Add(junk)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse(%q) error %v does not wrap ErrMalformed", s, err)
			}
			if tok.Secret() != "" {
				t.Fatalf("Parse(%q) failed but returned a token", s)
			}
			return
		}
		prefix, handle, last := tok.Prefix(), tok.Handle(), tok.LastFour()
		if err := ValidatePrefix(prefix); err != nil {
			t.Fatalf("Parse(%q) accepted prefix %q: %v", s, prefix, err)
		}
		if len(handle) != HandleLen {
			t.Fatalf("Parse(%q).Handle() = %q", s, handle)
		}
		rest := s[len(prefix)+HandleLen:]
		if got := prefix + handle + rest; got != s || tok.Secret() != s {
			t.Fatalf("reassembled %q, Secret() %q, want %q", got, tok.Secret(), s)
		}
		if !strings.HasSuffix(s, last) || len(last) != 4 {
			t.Fatalf("LastFour() = %q for %q", last, s)
		}
		if !strings.HasPrefix(s, tok.DisplayPrefix()) || len(tok.DisplayPrefix()) != len(prefix)+4 {
			t.Fatalf("DisplayPrefix() = %q for %q", tok.DisplayPrefix(), s)
		}
		if strings.Contains(tok.String(), rest) {
			t.Fatalf("String() = %q leaks the secret", tok.String())
		}
		payload := s[:len(s)-checksumLen]
		if got, want := string(appendChecksum(nil, crc32.ChecksumIEEE([]byte(payload)))), s[len(payload):]; got != want {
			t.Fatalf("checksum recomputes to %q, token has %q", got, want)
		}
	})
}

// fuzzMaxMemKiB keeps each fuzz execution cheap; Verify's own cap is 4 GiB.
const fuzzMaxMemKiB = 1024

func FuzzVerifyPHC(f *testing.F) {
	const secret = "qs_live_fuzz"
	for _, p := range []Params{
		{MemoryKiB: 64, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32},
		{MemoryKiB: 32, Iterations: 2, Parallelism: 4, SaltLen: 8, KeyLen: 16},
	} {
		phc, err := Hash(secret, p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(phc)
	}
	for _, junk := range []string{
		"",
		"$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHQ$ZVrRXqxlLcWfcXCnMyv0m4Rpvh/bnCi7",
		"$argon2id$v=19$m=4194304,t=1,p=1$c29tZXNhbHQ$ZVrRXqxlLcWfcXCnMyv0m4Rpvh/bnCi7",
		"$argon2id$v=19$m=99999999999,t=1,p=1$c29tZXNhbHQ$ZVrRXqxlLcWfcXCnMyv0m4Rpvh/bnCi7",
		"$argon2i$v=19$m=65536,t=2,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG",
		"$argon2id$v=18$m=64,t=1,p=1$$",
		"$$$$$",
	} {
		f.Add(junk)
	}
	f.Fuzz(func(t *testing.T, phc string) {
		p, perr := ParamsOf(phc)
		if perr == nil && p.MemoryKiB <= fuzzMaxMemKiB && uint64(p.MemoryKiB)*uint64(p.Iterations) > 16*1024 {
			// Within the cap but slow; not interesting for the parser.
			return
		}
		ok, err := verifyWithLimit(secret, phc, fuzzMaxMemKiB)
		if err != nil {
			if ok {
				t.Fatalf("verifyWithLimit(%q) = true with error %v", phc, err)
			}
			if !errors.Is(err, ErrBadHash) {
				t.Fatalf("verifyWithLimit(%q) error %v does not wrap ErrBadHash", phc, err)
			}
			if perr == nil && p.MemoryKiB <= fuzzMaxMemKiB {
				t.Fatalf("ParamsOf accepted %q but verify failed: %v", phc, err)
			}
			return
		}
		if perr != nil {
			t.Fatalf("verify accepted %q but ParamsOf failed: %v", phc, perr)
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("accepted %q with invalid params: %v", phc, err)
		}
		// The parser is canonical: what it accepts re-encodes to itself.
		gotP, salt, key, err := decodePHC(phc)
		if err != nil || gotP != p {
			t.Fatalf("decodePHC(%q) = %+v, %v; ParamsOf gave %+v", phc, gotP, err, p)
		}
		if enc := encodePHC(p, salt, key); enc != phc {
			t.Fatalf("re-encoded %q as %q", phc, enc)
		}
	})
}
