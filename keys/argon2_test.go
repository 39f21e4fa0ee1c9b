package keys

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"regexp"
	"strings"
	"testing"
	"testing/iotest"
)

var phcRE = regexp.MustCompile(`^\$argon2id\$v=19\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$`)

// fastParams keeps tests quick; real hashes use DefaultParams.
var fastParams = Params{MemoryKiB: 64, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}

func mustHash(t testing.TB, secret string, p Params) string {
	t.Helper()
	phc, err := Hash(secret, p)
	if err != nil {
		t.Fatalf("Hash(%+v): %v", p, err)
	}
	return phc
}

func TestHashVerifyRoundTrip(t *testing.T) {
	secret := mustGenerate(t, DefaultPrefix).Secret()
	tests := []struct {
		name string
		p    Params
	}{
		{"fast", fastParams},
		{"two lanes", Params{MemoryKiB: 128, Iterations: 2, Parallelism: 2, SaltLen: 8, KeyLen: 16}},
		{"max lengths", Params{MemoryKiB: 64, Iterations: 1, Parallelism: 1, SaltLen: 64, KeyLen: 64}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			phc := mustHash(t, secret, tt.p)
			if !phcRE.MatchString(phc) {
				t.Errorf("Hash = %q does not match %v", phc, phcRE)
			}
			ok, err := Verify(secret, phc)
			if got, want := ok, true; got != want || err != nil {
				t.Errorf("Verify(right secret) = %v, %v; want %v, nil", got, err, want)
			}
			ok, err = Verify(secret+"x", phc)
			if got, want := ok, false; got != want || err != nil {
				t.Errorf("Verify(wrong secret) = %v, %v; want %v, nil", got, err, want)
			}
			ok, err = Verify("", phc)
			if got, want := ok, false; got != want || err != nil {
				t.Errorf("Verify(empty secret) = %v, %v; want %v, nil", got, err, want)
			}
			got, err := ParamsOf(phc)
			if err != nil {
				t.Fatalf("ParamsOf(%q): %v", phc, err)
			}
			if want := tt.p; got != want {
				t.Errorf("ParamsOf = %+v, want %+v", got, want)
			}
		})
	}
}

func TestHashDefaultParams(t *testing.T) {
	secret := mustGenerate(t, DefaultPrefix).Secret()
	phc := mustHash(t, secret, DefaultParams())
	if got, want := strings.HasPrefix(phc, "$argon2id$v=19$m=64,t=1,p=1$"), true; got != want {
		t.Errorf("Hash(DefaultParams) = %q, want m=64,t=1,p=1 header", phc)
	}
	if !phcRE.MatchString(phc) {
		t.Errorf("Hash = %q does not match %v", phc, phcRE)
	}
	if ok, err := Verify(secret, phc); !ok || err != nil {
		t.Errorf("Verify = %v, %v; want true, nil", ok, err)
	}
	// Change the last character to one it is not (a fixed "0" equals it once in 62 runs).
	wrong := secret[:len(secret)-1] + map[bool]string{true: "1", false: "0"}[secret[len(secret)-1] == '0']
	if ok, err := Verify(wrong, phc); ok || err != nil {
		t.Errorf("Verify(wrong) = %v, %v; want false, nil", ok, err)
	}
	p, err := ParamsOf(phc)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p, DefaultParams(); got != want {
		t.Errorf("ParamsOf = %+v, want %+v", got, want)
	}
}

// TestVerifyKnownAnswer checks interoperability with the argon2 reference
// implementation, using the argon2id vectors for password "password" and
// salt "somesalt" from golang.org/x/crypto/argon2's tests.
func TestVerifyKnownAnswer(t *testing.T) {
	salt := base64.RawStdEncoding.EncodeToString([]byte("somesalt"))
	tests := []struct {
		params, hexHash string
	}{
		{"m=64,t=1,p=1", "655ad15eac652dc59f7170a7332bf49b8469be1fdb9c28bb"},
		{"m=64,t=2,p=1", "068d62b26455936aa6ebe60060b0a65870dbfa3ddf8d41f7"},
		{"m=64,t=2,p=2", "350ac37222f436ccb5c0972f1ebd3bf6b958bf2071841362"},
		{"m=256,t=3,p=2", "4668d30ac4187e6878eedeacf0fd83c5a0a30db2cc16ef0b"},
	}
	for _, tt := range tests {
		raw, err := hex.DecodeString(tt.hexHash)
		if err != nil {
			t.Fatal(err)
		}
		phc := "$argon2id$v=19$" + tt.params + "$" + salt + "$" + base64.RawStdEncoding.EncodeToString(raw)
		if ok, err := Verify("password", phc); !ok || err != nil {
			t.Errorf("Verify(password, %q) = %v, %v; want true, nil", phc, ok, err)
		}
		if ok, err := Verify("Password", phc); ok || err != nil {
			t.Errorf("Verify(Password, %q) = %v, %v; want false, nil", phc, ok, err)
		}
	}
}

// TestVerifyOldParams checks that Verify takes the parameters from the
// stored string, not from DefaultParams.
func TestVerifyOldParams(t *testing.T) {
	secret := "qs_live_whatever"
	old := Params{MemoryKiB: 128, Iterations: 2, Parallelism: 1, SaltLen: 16, KeyLen: 32}
	phc := mustHash(t, secret, old)
	if !strings.Contains(phc, "$m=128,t=2,p=1$") {
		t.Fatalf("Hash = %q, want m=128,t=2,p=1", phc)
	}
	if ok, err := Verify(secret, phc); !ok || err != nil {
		t.Errorf("Verify = %v, %v; want true, nil", ok, err)
	}
	p, err := ParamsOf(phc)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p == DefaultParams(), false; got != want {
		t.Errorf("ParamsOf(old) == DefaultParams() = %v, want %v (rehash signal)", got, want)
	}
}

func TestHashSalted(t *testing.T) {
	a := mustHash(t, "same", fastParams)
	b := mustHash(t, "same", fastParams)
	if a == b {
		t.Errorf("two hashes of the same secret are equal: %q", a)
	}
}

func TestHashErrors(t *testing.T) {
	if _, err := Hash("x", Params{}); err == nil {
		t.Error("Hash with zero Params succeeded")
	}
	boom := errors.New("no entropy")
	if _, err := hashWithReader(iotest.ErrReader(boom), "x", fastParams); !errors.Is(err, boom) {
		t.Errorf("hashWithReader with failing reader: err = %v, want wrapping %v", err, boom)
	}
}

func TestParamsValidate(t *testing.T) {
	ok := fastParams
	with := func(f func(*Params)) Params {
		p := ok
		f(&p)
		return p
	}
	tests := []struct {
		name string
		p    Params
		ok   bool
	}{
		{"fast", ok, true},
		{"default", DefaultParams(), true},
		{"zero", Params{}, false},
		{"memory 7", with(func(p *Params) { p.MemoryKiB = 7 }), false},
		{"memory 8", with(func(p *Params) { p.MemoryKiB = 8 }), true},
		{"memory 15 for 2 lanes", with(func(p *Params) { p.MemoryKiB = 15; p.Parallelism = 2 }), false},
		{"memory 16 for 2 lanes", with(func(p *Params) { p.MemoryKiB = 16; p.Parallelism = 2 }), true},
		{"memory 4 GiB", with(func(p *Params) { p.MemoryKiB = 4194304 }), true},
		{"memory 4 GiB + 1", with(func(p *Params) { p.MemoryKiB = 4194305 }), false},
		{"memory max uint32", with(func(p *Params) { p.MemoryKiB = 1<<32 - 1 }), false},
		{"iterations 0", with(func(p *Params) { p.Iterations = 0 }), false},
		{"iterations 100", with(func(p *Params) { p.Iterations = 100 }), true},
		{"iterations 101", with(func(p *Params) { p.Iterations = 101 }), false},
		{"parallelism 0", with(func(p *Params) { p.Parallelism = 0 }), false},
		{"parallelism 64", with(func(p *Params) { p.Parallelism = 64; p.MemoryKiB = 512 }), true},
		{"parallelism 65", with(func(p *Params) { p.Parallelism = 65; p.MemoryKiB = 1024 }), false},
		{"parallelism 255", with(func(p *Params) { p.Parallelism = 255; p.MemoryKiB = 4096 }), false},
		{"salt 7", with(func(p *Params) { p.SaltLen = 7 }), false},
		{"salt 8", with(func(p *Params) { p.SaltLen = 8 }), true},
		{"salt 64", with(func(p *Params) { p.SaltLen = 64 }), true},
		{"salt 65", with(func(p *Params) { p.SaltLen = 65 }), false},
		{"key 15", with(func(p *Params) { p.KeyLen = 15 }), false},
		{"key 16", with(func(p *Params) { p.KeyLen = 16 }), true},
		{"key 64", with(func(p *Params) { p.KeyLen = 64 }), true},
		{"key 65", with(func(p *Params) { p.KeyLen = 65 }), false},
	}
	for _, tt := range tests {
		err := tt.p.Validate()
		if got, want := err == nil, tt.ok; got != want {
			t.Errorf("%s: %+v.Validate() = %v, want ok=%v", tt.name, tt.p, err, want)
		}
	}
}

func TestVerifyMalformed(t *testing.T) {
	good := mustHash(t, "s", fastParams)
	parts := strings.Split(good, "$") // "", argon2id, v=19, m=..., salt, hash
	salt, hash := parts[4], parts[5]
	join := func(fields ...string) string { return strings.Join(fields, "$") }

	tests := []struct {
		name, phc string
	}{
		{"empty", ""},
		{"dollar", "$"},
		{"garbage", "not a hash"},
		{"bcrypt", "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"},
		{"argon2i", join("", "argon2i", "v=19", "m=64,t=1,p=1", salt, hash)},
		{"argon2d", join("", "argon2d", "v=19", "m=64,t=1,p=1", salt, hash)},
		{"upper-case algorithm", join("", "ARGON2ID", "v=19", "m=64,t=1,p=1", salt, hash)},
		{"v=18", join("", "argon2id", "v=18", "m=64,t=1,p=1", salt, hash)},
		{"v=16", join("", "argon2id", "v=16", "m=64,t=1,p=1", salt, hash)},
		{"v=019", join("", "argon2id", "v=019", "m=64,t=1,p=1", salt, hash)},
		{"no version", join("", "argon2id", "m=64,t=1,p=1", salt, hash)},
		{"no leading dollar", join("argon2id", "v=19", "m=64,t=1,p=1", salt, hash)},
		{"missing hash", join("", "argon2id", "v=19", "m=64,t=1,p=1", salt)},
		{"missing salt and hash", join("", "argon2id", "v=19", "m=64,t=1,p=1")},
		{"empty hash", join("", "argon2id", "v=19", "m=64,t=1,p=1", salt, "")},
		{"empty salt", join("", "argon2id", "v=19", "m=64,t=1,p=1", "", hash)},
		{"extra segment", join("", "argon2id", "v=19", "m=64,t=1,p=1", salt, hash, "x")},
		{"trailing dollar", good + "$"},
		{"missing param", join("", "argon2id", "v=19", "m=64,t=1", salt, hash)},
		{"extra param", join("", "argon2id", "v=19", "m=64,t=1,p=1,k=2", salt, hash)},
		{"reordered params", join("", "argon2id", "v=19", "t=1,m=64,p=1", salt, hash)},
		{"spaces", join("", "argon2id", "v=19", "m=64, t=1, p=1", salt, hash)},
		{"m=0", join("", "argon2id", "v=19", "m=0,t=1,p=1", salt, hash)},
		{"m=7", join("", "argon2id", "v=19", "m=7,t=1,p=1", salt, hash)},
		{"m=99999999999", join("", "argon2id", "v=19", "m=99999999999,t=1,p=1", salt, hash)},
		{"m=1 TiB", join("", "argon2id", "v=19", "m=1073741824,t=1,p=1", salt, hash)},
		{"m=4 GiB + 1", join("", "argon2id", "v=19", "m=4194305,t=1,p=1", salt, hash)},
		{"m negative", join("", "argon2id", "v=19", "m=-64,t=1,p=1", salt, hash)},
		{"m plus", join("", "argon2id", "v=19", "m=+64,t=1,p=1", salt, hash)},
		{"m leading zero", join("", "argon2id", "v=19", "m=064,t=1,p=1", salt, hash)},
		{"m hex", join("", "argon2id", "v=19", "m=0x40,t=1,p=1", salt, hash)},
		{"m empty", join("", "argon2id", "v=19", "m=,t=1,p=1", salt, hash)},
		{"t=0", join("", "argon2id", "v=19", "m=64,t=0,p=1", salt, hash)},
		{"t=101", join("", "argon2id", "v=19", "m=64,t=101,p=1", salt, hash)},
		{"t huge", join("", "argon2id", "v=19", "m=64,t=4294967296,p=1", salt, hash)},
		{"p=0", join("", "argon2id", "v=19", "m=64,t=1,p=0", salt, hash)},
		{"p=65", join("", "argon2id", "v=19", "m=1024,t=1,p=65", salt, hash)},
		{"p=256", join("", "argon2id", "v=19", "m=4096,t=1,p=256", salt, hash)},
		{"p=9 with m=64", join("", "argon2id", "v=19", "m=64,t=1,p=9", salt, hash)},
		{"bad base64 salt", join("", "argon2id", "v=19", "m=64,t=1,p=1", "!!!!", hash)},
		{"bad base64 hash", join("", "argon2id", "v=19", "m=64,t=1,p=1", salt, "***")},
		{"padded salt", join("", "argon2id", "v=19", "m=64,t=1,p=1", salt+"==", hash)},
		{"url-safe base64", join("", "argon2id", "v=19", "m=64,t=1,p=1", "____-___-___-___-___A", hash)},
		{"newline in hash", join("", "argon2id", "v=19", "m=64,t=1,p=1", salt, hash[:10]+"\n"+hash[10:])},
		{"impossible base64 length", join("", "argon2id", "v=19", "m=64,t=1,p=1", salt, hash+"AA")}, // 45 chars: 45 % 4 == 1
		{"non-canonical base64 bits", join("", "argon2id", "v=19", "m=64,t=1,p=1", salt, hash[:len(hash)-1]+"B")},
		{"short salt", join("", "argon2id", "v=19", "m=64,t=1,p=1", "c2FsdA", hash)},
		{"short hash", join("", "argon2id", "v=19", "m=64,t=1,p=1", salt, "c2hvcnRoYXNo")},
		{"long hash", join("", "argon2id", "v=19", "m=64,t=1,p=1", salt, strings.Repeat("A", 88))},
		{"huge", good + strings.Repeat("A", 100000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, err := Verify("s", tt.phc)
			if ok || !errors.Is(err, ErrBadHash) {
				t.Errorf("Verify(%q) = %v, %v; want false, ErrBadHash", tt.phc, ok, err)
			}
			p, err := ParamsOf(tt.phc)
			if !errors.Is(err, ErrBadHash) {
				t.Errorf("ParamsOf(%q) = %+v, %v; want ErrBadHash", tt.phc, p, err)
			}
		})
	}
	// The fixture itself must be fine, or the table proves nothing.
	if ok, err := Verify("s", good); !ok || err != nil {
		t.Fatalf("Verify(good) = %v, %v", ok, err)
	}
}

func TestVerifyWithLimit(t *testing.T) {
	phc := mustHash(t, "s", Params{MemoryKiB: 256, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32})
	if ok, err := verifyWithLimit("s", phc, 256); !ok || err != nil {
		t.Errorf("verifyWithLimit(at limit) = %v, %v; want true, nil", ok, err)
	}
	if ok, err := verifyWithLimit("s", phc, 255); ok || !errors.Is(err, ErrBadHash) {
		t.Errorf("verifyWithLimit(over limit) = %v, %v; want false, ErrBadHash", ok, err)
	}
}
