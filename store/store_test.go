package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/qs/apikeys/internal/testdb"
	"github.com/qs/apikeys/store"
)

func TestMain(m *testing.M) { os.Exit(testdb.Main(m)) }

// eachEngine runs the conformance test fn against a fresh database of every engine.
func eachEngine(t *testing.T, fn func(t *testing.T, s *store.Store)) {
	t.Helper()
	for _, engine := range testdb.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			db := testdb.New(t, engine)
			s, err := store.Open(context.Background(), db.URL)
			if err != nil {
				t.Fatalf("Open(%s): %v", engine, err)
			}
			t.Cleanup(func() { s.Close() })
			fn(t, s)
		})
	}
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC)

// newKey returns a complete key created at 'at' with a fresh subject.
func newKey(at time.Time, mut ...func(k *store.Key)) store.NewKey {
	id := uuid.Must(uuid.NewV7()).String()
	k := store.Key{
		ID: "apk_" + id, SubjectID: "subject_" + uuid.Must(uuid.NewV7()).String(),
		Name: "key " + id[len(id)-6:], Handle: strings.ReplaceAll(id, "-", "")[20:], Prefix: "qs_live_abcd",
		LastFour: "wxyz", Hash: "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaA", HashAlgo: "argon2id",
		CreatedBySubjectID: "subject_admin", CreatedAt: at, UpdatedAt: at, Scopes: []string{},
	}
	for _, m := range mut {
		m(&k)
	}
	return store.NewKey{Key: k, NewSubject: true}
}

func ptr[T any](v T) *T { return &v }

func TestCreateGetRoundTrip(t *testing.T) {
	eachEngine(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		nk := newKey(t0, func(k *store.Key) {
			k.TenantID, k.EnvironmentID = "tenant_acme", "environment_prod"
			k.Description, k.IntendedUse = "Used for automated deployments", "ci-cd"
			k.ExpiresAt = ptr(t0.Add(24 * time.Hour))
			k.Metadata = []byte(`{"team":"platform"}`)
			k.Scopes = []string{"api_keys:read", "api_keys:verify"}
		})
		if err := s.CreateKeys(ctx, []store.NewKey{nk}); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetKey(ctx, nk.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Metadata == nil || !strings.Contains(string(got.Metadata), `"team"`) {
			t.Errorf("metadata = %s", got.Metadata)
		}
		got.Metadata, nk.Metadata = nil, nil
		if !reflect.DeepEqual(got, nk.Key) {
			t.Errorf("GetKey =\n%+v\nwant\n%+v", got, nk.Key)
		}
		byHandle, err := s.GetKeyByHandle(ctx, nk.Handle)
		if err != nil || byHandle.ID != nk.ID {
			t.Errorf("GetKeyByHandle = %v, %v", byHandle.ID, err)
		}
		subj, err := s.GetSubject(ctx, nk.SubjectID)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := subj, (store.Subject{ID: nk.SubjectID, Type: "service", TenantID: "tenant_acme", EnvironmentID: "environment_prod", CreatedAt: t0}); got != want {
			t.Errorf("GetSubject = %+v, want %+v", got, want)
		}
	})
}

func TestNotFound(t *testing.T) {
	eachEngine(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		if _, err := s.GetKey(ctx, "apk_00000000-0000-7000-8000-000000000000"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetKey: %v, want ErrNotFound", err)
		}
		if _, err := s.GetKeyByHandle(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetKeyByHandle: %v, want ErrNotFound", err)
		}
		if _, err := s.GetSubject(ctx, "subject_nope"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetSubject: %v, want ErrNotFound", err)
		}
		_, err := s.UpdateKey(ctx, "apk_00000000-0000-7000-8000-000000000000", func(*store.Key) error { return nil })
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("UpdateKey: %v, want ErrNotFound", err)
		}
	})
}

func TestCreateIsAllOrNothing(t *testing.T) {
	eachEngine(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		first := newKey(t0)
		if err := s.CreateKeys(ctx, []store.NewKey{first}); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name string
			dup  func(k *store.Key)
		}{
			{"taken id", func(k *store.Key) { k.ID = first.ID }},
			{"taken handle", func(k *store.Key) { k.Handle = first.Handle }},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				ok := newKey(t0.Add(time.Second))
				bad := newKey(t0.Add(2*time.Second), tt.dup)
				err := s.CreateKeys(ctx, []store.NewKey{ok, bad})
				if !errors.Is(err, store.ErrConflict) {
					t.Fatalf("CreateKeys = %v, want ErrConflict", err)
				}
				if _, err := s.GetKey(ctx, ok.ID); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("first key of a failed batch was stored: %v", err)
				}
				if _, err := s.GetSubject(ctx, ok.SubjectID); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("subject of a failed batch was stored: %v", err)
				}
			})
		}
	})
}

func TestListFiltersPaginationAndStatus(t *testing.T) {
	eachEngine(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		now := t0.Add(time.Hour)
		var all []store.NewKey
		for i := 0; i < 12; i++ {
			i := i
			all = append(all, newKey(t0.Add(time.Duration(i)*time.Minute), func(k *store.Key) {
				k.TenantID = []string{"tenant_a", "tenant_b"}[i%2]
				k.EnvironmentID = []string{"env_x", "env_y", "env_z"}[i%3]
				k.IntendedUse = []string{"ci-cd", "backup"}[i/6]
				k.CreatedBySubjectID = []string{"subject_jane", "subject_joe"}[i%2]
				switch i % 4 {
				case 1:
					k.RevokedAt = ptr(t0)
				case 2:
					k.ExpiresAt = ptr(now) // expired at exactly now
				case 3:
					k.ExpiresAt = ptr(now.Add(time.Second))
				}
			}))
		}
		// Two keys with the same created_at exercise the id tiebreak of the cursor.
		all[5].CreatedAt, all[5].UpdatedAt = all[4].CreatedAt, all[4].CreatedAt
		if err := s.CreateKeys(ctx, all); err != nil {
			t.Fatal(err)
		}
		want := func(pred func(k *store.Key) bool) []string {
			var ids []store.Key
			for _, nk := range all {
				if pred(&nk.Key) {
					ids = append(ids, nk.Key)
				}
			}
			// newest first, id descending on ties
			for i := range ids {
				for j := i + 1; j < len(ids); j++ {
					a, b := ids[i], ids[j]
					if b.CreatedAt.After(a.CreatedAt) || (b.CreatedAt.Equal(a.CreatedAt) && b.ID > a.ID) {
						ids[i], ids[j] = ids[j], ids[i]
					}
				}
			}
			out := []string{}
			for _, k := range ids {
				out = append(out, k.ID)
			}
			return out
		}
		tests := []struct {
			name string
			f    store.Filter
			pred func(k *store.Key) bool
		}{
			{"all", store.Filter{}, func(*store.Key) bool { return true }},
			{"tenant", store.Filter{TenantID: "tenant_a"}, func(k *store.Key) bool { return k.TenantID == "tenant_a" }},
			{"environment", store.Filter{EnvironmentID: "env_y"}, func(k *store.Key) bool { return k.EnvironmentID == "env_y" }},
			{"subject", store.Filter{SubjectID: all[7].SubjectID}, func(k *store.Key) bool { return k.SubjectID == all[7].SubjectID }},
			{"creator", store.Filter{CreatedBySubjectID: "subject_joe"}, func(k *store.Key) bool { return k.CreatedBySubjectID == "subject_joe" }},
			{"intended use", store.Filter{IntendedUse: "backup"}, func(k *store.Key) bool { return k.IntendedUse == "backup" }},
			{"active", store.Filter{Status: store.StatusActive}, func(k *store.Key) bool { return k.StatusAt(now) == store.StatusActive }},
			{"revoked", store.Filter{Status: store.StatusRevoked}, func(k *store.Key) bool { return k.StatusAt(now) == store.StatusRevoked }},
			{"expired", store.Filter{Status: store.StatusExpired}, func(k *store.Key) bool { return k.StatusAt(now) == store.StatusExpired }},
			{"combined", store.Filter{TenantID: "tenant_b", Status: store.StatusActive, IntendedUse: "ci-cd"}, func(k *store.Key) bool {
				return k.TenantID == "tenant_b" && k.IntendedUse == "ci-cd" && k.StatusAt(now) == store.StatusActive
			}},
		}
		for _, tt := range tests {
			for _, limit := range []int{1, 2, 5, 100} {
				t.Run(fmt.Sprintf("%s/limit=%d", tt.name, limit), func(t *testing.T) {
					f := tt.f
					f.Now, f.Limit = now, limit
					got := []string{}
					for page := 0; ; page++ {
						keys, next, err := s.ListKeys(ctx, f)
						if err != nil {
							t.Fatal(err)
						}
						if len(keys) > limit {
							t.Fatalf("page of %d keys, limit %d", len(keys), limit)
						}
						for _, k := range keys {
							got = append(got, k.ID)
						}
						if next == nil {
							break
						}
						c, err := store.ParseCursor(next.String())
						if err != nil || c.ID != next.ID || !c.CreatedAt.Equal(next.CreatedAt) {
							t.Fatalf("cursor round trip: %+v, %v", c, err)
						}
						f.After = &c
						if page > 20 {
							t.Fatal("pagination does not end")
						}
					}
					if w := want(tt.pred); !reflect.DeepEqual(got, w) {
						t.Errorf("ids =\n%v\nwant\n%v", got, w)
					}
				})
			}
		}
	})
}

func TestUpdateKey(t *testing.T) {
	eachEngine(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		nk := newKey(t0, func(k *store.Key) { k.Description = "old"; k.Metadata = []byte(`{"a":1}`) })
		if err := s.CreateKeys(ctx, []store.NewKey{nk}); err != nil {
			t.Fatal(err)
		}
		boom := errors.New("boom")
		if _, err := s.UpdateKey(ctx, nk.ID, func(k *store.Key) error { k.Name = "changed"; return boom }); !errors.Is(err, boom) {
			t.Fatalf("UpdateKey error = %v, want boom", err)
		}
		if k, _ := s.GetKey(ctx, nk.ID); k.Name != nk.Name {
			t.Errorf("a failed update wrote name %q", k.Name)
		}
		later := t0.Add(time.Minute)
		updated, err := s.UpdateKey(ctx, nk.ID, func(k *store.Key) error {
			k.Name, k.Description, k.Metadata, k.Scopes, k.UpdatedAt = "renamed", "", nil, []string{"api_keys:read"}, later
			k.RevokedAt, k.RevokedBySubjectID, k.RevokedReason = &later, "subject_admin", "leaked"
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.GetKey(ctx, nk.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, updated) {
			t.Errorf("GetKey after update =\n%+v\nwant\n%+v", got, updated)
		}
		if got.Description != "" || got.Metadata != nil || got.StatusAt(later) != store.StatusRevoked || got.RevokedReason != "leaked" {
			t.Errorf("update not stored: %+v", got)
		}
	})
}

func TestRotateKey(t *testing.T) {
	eachEngine(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		old := newKey(t0)
		if err := s.CreateKeys(ctx, []store.NewKey{old}); err != nil {
			t.Fatal(err)
		}
		repl := newKey(t0.Add(time.Minute), func(k *store.Key) { k.SubjectID, k.RotatedFromID = old.SubjectID, old.ID })
		gotOld, gotNew, err := s.RotateKey(ctx, old.ID, func(o *store.Key) (store.Key, error) {
			o.ReplacedByID = repl.ID
			o.ExpiresAt = ptr(t0.Add(2 * time.Minute))
			return repl.Key, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if gotOld.ReplacedByID != repl.ID || gotNew.ID != repl.ID {
			t.Errorf("RotateKey = %+v, %+v", gotOld, gotNew)
		}
		stored, _ := s.GetKey(ctx, old.ID)
		if stored.ReplacedByID != repl.ID || stored.ExpiresAt == nil {
			t.Errorf("old key not updated: %+v", stored)
		}
		nk, err := s.GetKey(ctx, repl.ID)
		if err != nil || nk.SubjectID != old.SubjectID || nk.RotatedFromID != old.ID {
			t.Errorf("new key = %+v, %v", nk, err)
		}
		keys, _, err := s.ListKeys(ctx, store.Filter{SubjectID: old.SubjectID, Limit: 10, Now: t0})
		if err != nil || len(keys) != 2 {
			t.Errorf("subject has %d keys (%v), want 2", len(keys), err)
		}
		// A failing rotation writes neither key.
		third := newKey(t0.Add(2*time.Minute), func(k *store.Key) { k.SubjectID = old.SubjectID })
		boom := errors.New("boom")
		if _, _, err := s.RotateKey(ctx, repl.ID, func(*store.Key) (store.Key, error) { return third.Key, boom }); !errors.Is(err, boom) {
			t.Fatalf("err = %v", err)
		}
		if _, err := s.GetKey(ctx, third.ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("failed rotation stored the new key: %v", err)
		}
	})
}

func TestRecordUsage(t *testing.T) {
	eachEngine(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		a, b := newKey(t0), newKey(t0)
		if err := s.CreateKeys(ctx, []store.NewKey{a, b}); err != nil {
			t.Fatal(err)
		}
		err := s.RecordUsage(ctx, []store.Usage{
			{KeyID: a.ID, At: t0.Add(2 * time.Second), IP: "192.168.1.1"},
			{KeyID: a.ID, At: t0.Add(time.Second), IP: "10.0.0.1"}, // older: ignored
			{KeyID: b.ID, At: t0.Add(time.Second), IP: "2001:db8::1"},
			{KeyID: "apk_00000000-0000-7000-8000-000000000000", At: t0}, // gone: ignored
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, tt := range []struct {
			id, ip string
			at     time.Time
		}{{a.ID, "192.168.1.1", t0.Add(2 * time.Second)}, {b.ID, "2001:db8::1", t0.Add(time.Second)}} {
			k, err := s.GetKey(ctx, tt.id)
			if err != nil {
				t.Fatal(err)
			}
			if k.LastUsedAt == nil || !k.LastUsedAt.Equal(tt.at) || k.LastUsedIP != tt.ip {
				t.Errorf("key %s used at %v from %q, want %v from %q", tt.id, k.LastUsedAt, k.LastUsedIP, tt.at, tt.ip)
			}
			if !k.UpdatedAt.Equal(t0) {
				t.Errorf("usage changed updatedAt to %v", k.UpdatedAt)
			}
		}
	})
}

func TestParseCursorRejectsJunk(t *testing.T) {
	for _, c := range []string{"", "!!!", "bm9waXBl", store.Cursor{ID: "x"}.String(), "LTF8YXBrX3g"} {
		if _, err := store.ParseCursor(c); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("ParseCursor(%q) = %v, want ErrInvalid", c, err)
		}
	}
}

func TestListRejectsBadFilter(t *testing.T) {
	eachEngine(t, func(t *testing.T, s *store.Store) {
		for _, f := range []store.Filter{{Limit: 0}, {Limit: 1, Status: "bogus"}} {
			if _, _, err := s.ListKeys(context.Background(), f); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("ListKeys(%+v) = %v, want ErrInvalid", f, err)
			}
		}
	})
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
