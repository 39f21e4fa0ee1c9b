package store_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/qs/apikeys"
	"github.com/qs/apikeys/internal/testdb"
	"github.com/qs/apikeys/store"
	"github.com/qs/apikeys/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(testdb.Main(m)) }

// open opens a store on a fresh database of engine, closed when t ends.
func open(t *testing.T, engine string) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), testdb.New(t, engine).URL)
	if err != nil {
		t.Fatalf("Open(%s): %v", engine, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestConformance runs the KeyStore and ChangeFeed conformance suites on every engine, each
// test on a fresh database.
func TestConformance(t *testing.T) {
	for _, engine := range testdb.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			open := func(t *testing.T) apikeys.KeyStore { return open(t, engine) }
			storetest.Run(t, open)
			t.Run("ChangeFeed", func(t *testing.T) { storetest.RunChangeFeed(t, open) })
		})
	}
}

func TestMigrationsAreIdempotent(t *testing.T) {
	for _, engine := range testdb.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			db := testdb.New(t, engine)
			for i := 0; i < 2; i++ {
				s, err := store.Open(context.Background(), db.URL)
				if err != nil {
					t.Fatalf("Open #%d: %v", i+1, err)
				}
				if err := s.Ping(context.Background()); err != nil {
					t.Fatal(err)
				}
				s.Close()
			}
		})
	}
}

// newKey returns a complete key with a fresh subject, changed by mut.
func newKey(mut ...func(k *apikeys.Key)) apikeys.NewKey {
	id := apikeys.NewKeyID()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	k := apikeys.Key{
		ID: id, SubjectID: apikeys.NewSubjectID(), Name: "key",
		Handle: strings.ReplaceAll(id[len(apikeys.KeyIDPrefix):], "-", "")[20:], Prefix: "qs_live_abcd",
		LastFour: "wxyz", Hash: "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaA", HashAlgo: apikeys.HashAlgo,
		CreatedBySubjectID: apikeys.AdminSubjectID, CreatedAt: at, UpdatedAt: at,
	}
	for _, m := range mut {
		m(&k)
	}
	return apikeys.NewKey{Key: k, NewSubject: true}
}

// TestErrorSentences checks the sentences this store gives its domain errors, which the
// conformance suite leaves to each implementation.
func TestErrorSentences(t *testing.T) {
	for _, engine := range testdb.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			s := open(t, engine)
			first := newKey()
			if err := s.CreateKeys(ctx, []apikeys.NewKey{first}); err != nil {
				t.Fatal(err)
			}
			check := func(what string, err error, code, detail string) {
				t.Helper()
				var e *apikeys.Error
				if !errors.As(err, &e) || e.Code != code || e.Detail != detail {
					t.Errorf("%s: %#v, want %s %q", what, err, code, detail)
				}
			}
			for _, tt := range []struct {
				name, detail string
				dup          func(k *apikeys.Key)
			}{
				{"taken id", "a key with this id already exists", func(k *apikeys.Key) { k.ID = first.ID }},
				{"taken handle", "a key with this lookup handle already exists", func(k *apikeys.Key) { k.Handle = first.Handle }},
				{"taken subject", "a subject with this id already exists", func(k *apikeys.Key) { k.SubjectID = first.SubjectID }},
			} {
				err := s.CreateKeys(ctx, []apikeys.NewKey{newKey(tt.dup)})
				check(tt.name, err, apikeys.ECONFLICT, tt.detail)
			}
			_, err := s.GetKey(ctx, "apk_00000000-0000-7000-8000-000000000000")
			check("GetKey", err, apikeys.ENOTFOUND, "no API key has this id")
			_, err = s.GetKeyByHandle(ctx, "nope")
			check("GetKeyByHandle", err, apikeys.ENOTFOUND, "no API key has this lookup handle")
			_, err = s.GetSubject(ctx, "subject_nope")
			check("GetSubject", err, apikeys.ENOTFOUND, "no subject has this id")
			if engine == testdb.Postgres {
				// PostgreSQL refuses NUL in text with a data exception (class 22): the
				// client's input, not an internal failure.
				err := s.CreateKeys(ctx, []apikeys.NewKey{newKey(func(k *apikeys.Key) { k.Name = "a\x00b" })})
				check("NUL in a name", err, apikeys.EINVALID, "a value in the request cannot be stored")
			}
		})
	}
}
