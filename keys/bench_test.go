package keys

import "testing"

// The benchmarks are read as ratios: BenchmarkParse is the baseline of the work that
// every verification does, BenchmarkVerifyDefault the argon2id cost that only a
// well-formed token with a known handle pays.

func BenchmarkParse(b *testing.B) {
	tok, err := Generate(DefaultPrefix)
	if err != nil {
		b.Fatal(err)
	}
	s := tok.Secret()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGenerate(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Generate(DefaultPrefix); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyDefault(b *testing.B) {
	tok, _ := Generate(DefaultPrefix)
	phc, err := Hash(tok.Secret(), DefaultParams())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if ok, err := Verify(tok.Secret(), phc); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}
