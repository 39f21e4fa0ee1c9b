package keys

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"testing/iotest"
)

var tokenRE = regexp.MustCompile(`^qs_live_[0-9A-Za-z]{40}$`)

func mustGenerate(t testing.TB, prefix string) Token {
	t.Helper()
	tok, err := Generate(prefix)
	if err != nil {
		t.Fatalf("Generate(%q): %v", prefix, err)
	}
	return tok
}

// secretPart returns the 22 secret characters between handle and checksum.
func secretPart(tok Token) string {
	s := tok.Secret()
	start := len(tok.Prefix()) + HandleLen
	return s[start : start+secretLen]
}

// decodeChecksum decodes the trailing 6 characters independently of
// appendChecksum.
func decodeChecksum(t *testing.T, s string) uint64 {
	t.Helper()
	var v uint64
	for _, c := range s[len(s)-checksumLen:] {
		i := strings.IndexRune(base62Alphabet, c)
		if i < 0 {
			t.Fatalf("checksum %q has non-base62 %q", s[len(s)-checksumLen:], c)
		}
		v = v*62 + uint64(i)
	}
	return v
}

func TestGenerateFormat(t *testing.T) {
	tok := mustGenerate(t, DefaultPrefix)
	s := tok.Secret()
	if !tokenRE.MatchString(s) {
		t.Errorf("Secret() = %q does not match %v", s, tokenRE)
	}
	if got, want := len(s), 48; got != want {
		t.Errorf("len(Secret()) = %d, want %d", got, want)
	}
	if got, want := tok.Prefix(), DefaultPrefix; got != want {
		t.Errorf("Prefix() = %q, want %q", got, want)
	}
	if got, want := tok.Handle(), s[8:20]; got != want {
		t.Errorf("Handle() = %q, want %q", got, want)
	}
	if got, want := len(tok.Handle()), HandleLen; got != want {
		t.Errorf("len(Handle()) = %d, want %d", got, want)
	}
	if got, want := len(tok.DisplayPrefix()), 12; got != want {
		t.Errorf("len(DisplayPrefix()) = %d, want %d", got, want)
	}
	if !strings.HasPrefix(s, tok.DisplayPrefix()) {
		t.Errorf("DisplayPrefix() = %q is not a prefix of %q", tok.DisplayPrefix(), s)
	}
	if got, want := tok.LastFour(), s[len(s)-4:]; got != want {
		t.Errorf("LastFour() = %q, want %q", got, want)
	}
	if got, want := decodeChecksum(t, s), uint64(crc32.ChecksumIEEE([]byte(s[:len(s)-6]))); got != want {
		t.Errorf("checksum = %d, want CRC32 %d", got, want)
	}
}

func TestGenerateCustomPrefix(t *testing.T) {
	for _, prefix := range []string{"acme_test_", "a_", "x1_", "a__", "abcdefghijklmnopqrstuvw_"} {
		tok := mustGenerate(t, prefix)
		s := tok.Secret()
		if got, want := len(s), len(prefix)+40; got != want {
			t.Errorf("%q: len = %d, want %d", prefix, got, want)
		}
		if got, want := tok.Prefix(), prefix; got != want {
			t.Errorf("Prefix() = %q, want %q", got, want)
		}
		if got, want := tok.DisplayPrefix(), s[:len(prefix)+4]; got != want {
			t.Errorf("DisplayPrefix() = %q, want %q", got, want)
		}
		back, err := Parse(s)
		if err != nil {
			t.Errorf("Parse(%q): %v", s, err)
			continue
		}
		if got, want := back.Handle(), tok.Handle(); got != want {
			t.Errorf("Parse(%q).Handle() = %q, want %q", s, got, want)
		}
	}
}

func TestParseRoundTrip(t *testing.T) {
	for range 50 {
		tok := mustGenerate(t, DefaultPrefix)
		back, err := Parse(tok.Secret())
		if err != nil {
			t.Fatalf("Parse(%q): %v", tok.Secret(), err)
		}
		if got, want := back.Secret(), tok.Secret(); got != want {
			t.Errorf("Secret() = %q, want %q", got, want)
		}
		if got, want := back.Handle(), tok.Handle(); got != want {
			t.Errorf("Handle() = %q, want %q", got, want)
		}
		if got, want := back.Prefix(), tok.Prefix(); got != want {
			t.Errorf("Prefix() = %q, want %q", got, want)
		}
		if got, want := secretPart(back), secretPart(tok); got != want {
			t.Errorf("secret part = %q, want %q", got, want)
		}
		if got, want := back.LastFour(), tok.LastFour(); got != want {
			t.Errorf("LastFour() = %q, want %q", got, want)
		}
	}
}

func TestGenerateUnique(t *testing.T) {
	seen := make(map[string]bool)
	handles := make(map[string]bool)
	for range 1000 {
		tok := mustGenerate(t, DefaultPrefix)
		if seen[tok.Secret()] {
			t.Fatalf("duplicate token %q", tok.Secret())
		}
		if handles[tok.Handle()] {
			t.Fatalf("duplicate handle %q", tok.Handle())
		}
		seen[tok.Secret()] = true
		handles[tok.Handle()] = true
	}
}

func TestValidatePrefix(t *testing.T) {
	tests := []struct {
		prefix string
		ok     bool
	}{
		{"qs_live_", true},
		{"qs_test_", true},
		{"acme_test_", true},
		{"a_", true},
		{"a1_", true},
		{"a__", true},
		{strings.Repeat("a", 23) + "_", true}, // 24 chars
		{"", false},
		{"_", false},
		{"QS_", false},
		{"Qs_live_", false},
		{"qs", false},
		{"qs_live", false},
		{"qs-live_", false},
		{"qs.live_", false},
		{"qs live_", false},
		{strings.Repeat("a", 24) + "_", false}, // 25 chars
		{strings.Repeat("a", 40) + "_", false},
		{"_x_", false},
		{"1ab_", false},
		{"qs_lïve_", false},
		{"qs_live_\x00", false},
	}
	for _, tt := range tests {
		err := ValidatePrefix(tt.prefix)
		if got, want := err == nil, tt.ok; got != want {
			t.Errorf("ValidatePrefix(%q) = %v, want ok=%v", tt.prefix, err, want)
		}
		_, err = Generate(tt.prefix)
		if got, want := err == nil, tt.ok; got != want {
			t.Errorf("Generate(%q) error = %v, want ok=%v", tt.prefix, err, want)
		}
	}
}

func TestGenerateRandFailure(t *testing.T) {
	boom := errors.New("entropy exhausted")
	_, err := generate(iotest.ErrReader(boom), DefaultPrefix)
	if !errors.Is(err, boom) {
		t.Errorf("generate with failing reader: err = %v, want wrapping %v", err, boom)
	}
	// A reader that runs dry part-way must fail, not return a short token.
	_, err = generate(bytes.NewReader(make([]byte, 20)), DefaultPrefix)
	if err == nil {
		t.Error("generate with short reader succeeded")
	}
}

// TestRandBase62Exact feeds every byte value exactly once: the 8 values
// >= 248 must be rejected and the other 248 must map to each of the 62
// symbols exactly 4 times. Modulo reduction would fail this.
func TestRandBase62Exact(t *testing.T) {
	in := make([]byte, 256)
	for i := range in {
		in[i] = byte(255 - i) // rejected values first, to exercise refills
	}
	out, err := randBase62(bytes.NewReader(in), 248)
	if err != nil {
		t.Fatalf("randBase62: %v", err)
	}
	counts := make(map[byte]int)
	for _, c := range out {
		counts[c]++
	}
	for i := 0; i < len(base62Alphabet); i++ {
		if got, want := counts[base62Alphabet[i]], 4; got != want {
			t.Errorf("symbol %q appears %d times, want %d", base62Alphabet[i], got, want)
		}
	}
	if got, want := len(counts), 62; got != want {
		t.Errorf("%d distinct symbols, want %d", got, want)
	}
}

// TestBase62Coverage is a cheap sanity check against a broken alphabet:
// over about 20000 generated characters every symbol must appear, and none
// wildly more often than the others (expected ~323 each).
func TestBase62Coverage(t *testing.T) {
	counts := make(map[rune]int)
	n := 0
	for n < 20000 {
		tok := mustGenerate(t, DefaultPrefix)
		for _, c := range tok.Handle() + secretPart(tok) {
			counts[c]++
			n++
		}
	}
	if got, want := len(counts), 62; got != want {
		t.Errorf("%d distinct symbols, want %d", got, want)
	}
	for _, c := range base62Alphabet {
		if got := counts[c]; got < 150 || got > 500 {
			t.Errorf("symbol %q appears %d times in %d, want about %d", c, got, n, n/62)
		}
	}
}

func TestParseRejects(t *testing.T) {
	valid := mustGenerate(t, DefaultPrefix).Secret()
	body := valid[len(DefaultPrefix):]
	tests := []struct {
		name, in string
	}{
		{"empty", ""},
		{"only prefix", DefaultPrefix},
		{"too long", DefaultPrefix + strings.Repeat("a", 300)},
		{"way too long", strings.Repeat("qs_live_", 10000)},
		{"one short", valid[:len(valid)-1]},
		{"one long", valid + "0"},
		{"missing underscore", "qslive" + body},
		{"no prefix", body},
		{"prefix only underscore", "_" + body},
		{"upper-case prefix", "QS_LIVE_" + body},
		{"hyphen", "qs-live-" + body},
		{"bad char", valid[:20] + "-" + valid[21:]},
		{"space", valid[:20] + " " + valid[21:]},
		{"non-ASCII", valid[:20] + "é" + valid[22:]},
		{"NUL", valid[:20] + "\x00" + valid[21:]},
		{"trailing newline", valid[:len(valid)-1] + "\n"},
		{"leading space", " " + valid[1:]},
		{"underscore in body", valid[:20] + "_" + valid[21:]},
		{"zero body", DefaultPrefix + strings.Repeat("0", 40)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := Parse(tt.in)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse(%q) = %v, %v; want error wrapping ErrMalformed", tt.in, tok, err)
			}
			if got, want := tok.Secret(), ""; got != want {
				t.Errorf("Parse error returned Secret() = %q, want %q", got, want)
			}
		})
	}
}

// TestParseErrorDoesNotQuoteInput guards the promise that errors are safe
// to log even when the input was a real (slightly garbled) key.
func TestParseErrorDoesNotQuoteInput(t *testing.T) {
	valid := mustGenerate(t, DefaultPrefix).Secret()
	secret := valid[20:42]
	inputs := []string{
		valid[:47] + "!",
		valid + "x",
		"Q" + valid[1:],
		"qs_" + valid[8:] + "_",
		strings.Repeat(valid, 6),
	}
	for _, in := range inputs {
		_, err := Parse(in)
		if err == nil {
			t.Fatalf("Parse(%q) succeeded", in)
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), secret[:8]) {
			t.Errorf("Parse error %q quotes the secret", err)
		}
	}
}

// TestParseSingleSubstitution changes every position of several tokens to
// every other plausible character. CRC32 detects all bursts of up to 32
// bits, so every substitution in the body must fail the checksum; one in
// the prefix must fail either the checksum or prefix validation.
func TestParseSingleSubstitution(t *testing.T) {
	replacements := base62Alphabet + "_-.+/= ~"
	toks := []Token{mustGenerate(t, "acme_test_")}
	for range 10 {
		toks = append(toks, mustGenerate(t, DefaultPrefix))
	}
	for _, tok := range toks {
		s := tok.Secret()
		for i := 0; i < len(s); i++ {
			for j := 0; j < len(replacements); j++ {
				c := replacements[j]
				if c == s[i] {
					continue
				}
				mut := s[:i] + string(c) + s[i+1:]
				if _, err := Parse(mut); !errors.Is(err, ErrMalformed) {
					t.Errorf("Parse(%q) (position %d of %q changed) = %v, want ErrMalformed", mut, i, s, err)
				}
			}
		}
	}
}

func TestParseTransposition(t *testing.T) {
	for range 20 {
		s := mustGenerate(t, DefaultPrefix).Secret()
		for i := 0; i+1 < len(s); i++ {
			if s[i] == s[i+1] {
				continue
			}
			mut := s[:i] + string(s[i+1]) + string(s[i]) + s[i+2:]
			if _, err := Parse(mut); !errors.Is(err, ErrMalformed) {
				t.Errorf("Parse(%q) (positions %d,%d of %q swapped) = %v, want ErrMalformed", mut, i, i+1, s, err)
			}
		}
	}
}

// TestParseOldPrefix checks that keys issued under another valid prefix
// still parse, since configuration may change after keys are issued.
func TestParseOldPrefix(t *testing.T) {
	old := mustGenerate(t, "legacy_key_")
	tok, err := Parse(old.Secret())
	if err != nil {
		t.Fatalf("Parse(%q): %v", old.Secret(), err)
	}
	if got, want := tok.Prefix(), "legacy_key_"; got != want {
		t.Errorf("Prefix() = %q, want %q", got, want)
	}
}

func TestZeroToken(t *testing.T) {
	var tok Token
	for name, got := range map[string]string{
		"Secret":        tok.Secret(),
		"Prefix":        tok.Prefix(),
		"Handle":        tok.Handle(),
		"DisplayPrefix": tok.DisplayPrefix(),
		"LastFour":      tok.LastFour(),
	} {
		if got != "" {
			t.Errorf("zero Token %s() = %q, want empty", name, got)
		}
	}
	// Must not panic.
	_ = fmt.Sprintf("%v %+v %#v %s", tok, tok, tok, tok)
	_ = tok.LogValue().Resolve().String()
}

func TestRedaction(t *testing.T) {
	tok := mustGenerate(t, DefaultPrefix)
	secret := secretPart(tok)
	full := tok.Secret()

	if got, want := tok.String(), tok.DisplayPrefix()+"…(redacted)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}

	type holder struct {
		Exported   Token
		unexported Token
	}
	h := holder{tok, tok}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "tok", tok, "holder", h)
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "tok", tok)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", slog.Any("tok", tok))

	outputs := map[string]string{
		"Sprintf":   fmt.Sprintf("%v %s %+v %#v %q %x %d %10s %-60v", tok, tok, tok, tok, tok, tok, tok, tok, tok),
		"Sprint":    fmt.Sprint(tok, &tok),
		"Println":   fmt.Sprintln(tok),
		"Errorf":    fmt.Errorf("failed for %v", tok).Error(),
		"slice":     fmt.Sprintf("%v %+v %#v", []Token{tok}, []Token{tok}, []Token{tok}),
		"map":       fmt.Sprintf("%v", map[string]Token{"k": tok}),
		"holder":    fmt.Sprintf("%v %+v %#v", h, h, h),
		"holderPtr": fmt.Sprintf("%v %+v %#v", &h, &h, &h),
		"slog":      buf.String(),
	}
	for name, out := range outputs {
		if strings.Contains(out, secret) || strings.Contains(out, full) {
			t.Errorf("%s output leaks the secret: %s", name, out)
		}
	}

	if got, want := fmt.Sprintf("%+v", tok), fmt.Sprintf("keys.Token{prefix:%q, handle:%q, secret:REDACTED}", DefaultPrefix, tok.Handle()); got != want {
		t.Errorf("%%+v = %s, want %s", got, want)
	}
	if got, want := fmt.Sprintf("%s", tok), tok.String(); got != want {
		t.Errorf("%%s = %s, want %s", got, want)
	}
	if !strings.Contains(buf.String(), "tok.handle="+tok.Handle()) {
		t.Errorf("slog output lacks the handle: %s", buf.String())
	}
	if !strings.Contains(buf.String(), "tok.secret=REDACTED") {
		t.Errorf("slog output lacks the redaction marker: %s", buf.String())
	}
}
