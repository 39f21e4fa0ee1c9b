package store_test

import (
	"context"
	"net/url"
	"os"
	"testing"

	"github.com/qs/apikeys"
	"github.com/qs/apikeys/internal/testdb"
	"github.com/qs/apikeys/store"
)

// BenchmarkGetKeyByHandle measures the verification read on PostgreSQL, the hot path of a
// cache miss: with binary_parameters=no (lib/pq prepares an unnamed statement, then executes
// it: two round trips) and as Open sets it by default (one round trip).
func BenchmarkGetKeyByHandle(b *testing.B) {
	if testdb.PostgresURL() == "" {
		if os.Getenv("CI") != "" {
			b.Fatal("PostgreSQL is required when CI is set, but it is not available")
		}
		b.Skip("PostgreSQL is not available")
	}
	for _, bc := range []struct{ name, binaryParameters string }{
		{"binary_parameters=no", "no"},
		{"default", ""},
	} {
		b.Run(bc.name, func(b *testing.B) {
			u, err := url.Parse(testdb.New(b, testdb.Postgres).URL)
			if err != nil {
				b.Fatal(err)
			}
			if bc.binaryParameters != "" {
				q := u.Query()
				q.Set("binary_parameters", bc.binaryParameters)
				u.RawQuery = q.Encode()
			}
			ctx := context.Background()
			s, err := store.Open(ctx, u.String())
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			nk := newKey()
			if err := s.CreateKeys(ctx, []apikeys.NewKey{nk}); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := s.GetKeyByHandle(ctx, nk.Handle); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
