// Package storetest is the conformance suite of apikeys.KeyStore. The use cases rely on
// what the interface documents (error codes, all-or-nothing writes, the order and paging of
// lists, fn's error coming back unchanged), not on what one implementation happens to do;
// every implementation, and every decorator wrapped around one (a cache, metrics, a fault
// injector), proves it by passing the same tests. It is an ordinary package rather than a
// _test file so that implementations outside store can import it, in the manner of
// spicedb's pkg/datastore/test:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) apikeys.KeyStore {
//			s := openAFreshEmptyStore(t)
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// A store that is also an apikeys.ChangeFeed passes RunChangeFeed as well. The suite uses
// nothing but the interfaces.
package storetest

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/qs/apikeys"
)

// Run runs every conformance test as a subtest of t, each against its own store from open,
// so that no test sees another's keys and any one of them can be selected with -run. open
// must return a fresh, empty store and register its cleanup on the t it is given.
func Run(t *testing.T, open func(t *testing.T) apikeys.KeyStore) {
	t.Helper()
	for _, tt := range suite {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

// suite is the conformance tests, in the order Run runs them.
var suite = []struct {
	name string
	fn   func(t *testing.T, s apikeys.KeyStore)
}{
	{"Ping", testPing},
	{"ListHandles", testListHandles},
	{"CreateGetRoundTrip", testCreateGetRoundTrip},
	{"NotFound", testNotFound},
	{"CreateIsAllOrNothing", testCreateIsAllOrNothing},
	{"ListFiltersPaginationAndStatus", testListFiltersPaginationAndStatus},
	{"ListRejectsBadFilter", testListRejectsBadFilter},
	{"UpdateKey", testUpdateKey},
	{"UpdateKeyFnError", testUpdateKeyFnError},
	{"RotateKey", testRotateKey},
	{"RotateKeyFnError", testRotateKeyFnError},
	{"RotateKeyConflict", testRotateKeyConflict},
	{"RecordUsage", testRecordUsage},
	{"SetKeyHash", testSetKeyHash},
}

// t0 is the creation time of the suite's keys: in the past, with microseconds, the
// precision every store must keep.
var t0 = time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC)

// missingKeyID is a well-formed key id no test creates.
const missingKeyID = "apk_00000000-0000-7000-8000-000000000000"

// newKey returns a complete key created at 'at' with a fresh subject, changed by mut.
func newKey(at time.Time, mut ...func(k *apikeys.Key)) apikeys.NewKey {
	id := apikeys.NewKeyID()
	hex := strings.ReplaceAll(strings.TrimPrefix(id, apikeys.KeyIDPrefix), "-", "")
	k := apikeys.Key{
		ID: id, SubjectID: apikeys.NewSubjectID(),
		Name: "key " + id[len(id)-6:], Handle: hex[20:], Prefix: "qs_live_abcd",
		LastFour: "wxyz", Hash: "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaA", HashAlgo: apikeys.HashAlgo,
		CreatedBySubjectID: apikeys.AdminSubjectID, CreatedAt: at, UpdatedAt: at, Scopes: []apikeys.Scope{},
	}
	for _, m := range mut {
		m(&k)
	}
	return apikeys.NewKey{Key: k, NewSubject: true}
}

func ptr[T any](v T) *T { return &v }

// wantCode fails the test unless err carries code.
func wantCode(t *testing.T, what string, err error, code string) {
	t.Helper()
	if got := apikeys.ErrorCode(err); got != code {
		t.Errorf("%s: error %v has code %q, want %q", what, err, got, code)
	}
}

// create stores keys or fails the test.
func create(t *testing.T, s apikeys.KeyStore, keys ...apikeys.NewKey) {
	t.Helper()
	if err := s.CreateKeys(t.Context(), keys); err != nil {
		t.Fatalf("CreateKeys: %v", err)
	}
}

// getKey loads the key with id or fails the test.
func getKey(t *testing.T, s apikeys.KeyStore, id string) apikeys.Key {
	t.Helper()
	k, err := s.GetKey(t.Context(), id)
	if err != nil {
		t.Fatalf("GetKey(%s): %v", id, err)
	}
	return k
}

func testPing(t *testing.T, s apikeys.KeyStore) {
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

// testListHandles: paging with the last handle of each page lists every key's handle once,
// revoked keys included, in pages of at most the limit, and ends with an empty page.
func testListHandles(t *testing.T, s apikeys.KeyStore) {
	ctx := t.Context()
	want := map[string]bool{}
	var batch []apikeys.NewKey
	for i := range 23 {
		nk := newKey(t0.Add(time.Duration(i) * time.Second))
		want[nk.Handle] = true
		batch = append(batch, nk)
	}
	create(t, s, batch...)
	if _, err := s.UpdateKey(ctx, batch[3].ID, func(k *apikeys.Key) error { k.RevokedAt = ptr(t0); return nil }); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	after := ""
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatalf("more than 10 pages of 5 for 23 handles: the list does not end (after %q)", after)
		}
		hs, err := s.ListHandles(ctx, after, 5)
		if err != nil {
			t.Fatalf("ListHandles(%q, 5): %v", after, err)
		}
		if len(hs) > 5 {
			t.Fatalf("ListHandles(%q, 5) returned %d", after, len(hs))
		}
		if len(hs) == 0 {
			break
		}
		for _, h := range hs {
			if got[h] {
				t.Errorf("handle %q listed twice", h)
			}
			got[h] = true
		}
		after = hs[len(hs)-1]
	}
	if !maps.Equal(got, want) {
		t.Errorf("listed %d handles, want the %d created: %v", len(got), len(want), got)
	}
}

func testCreateGetRoundTrip(t *testing.T, s apikeys.KeyStore) {
	ctx := t.Context()
	nk := newKey(t0, func(k *apikeys.Key) {
		k.TenantID, k.EnvironmentID = "tenant_acme", "environment_prod"
		k.Description, k.IntendedUse = "Used for automated deployments", "ci-cd"
		k.ExpiresAt = ptr(t0.Add(24 * time.Hour))
		k.Metadata = apikeys.Metadata(`{"team":"platform","n":1.50}`)
		k.Scopes = []apikeys.Scope{apikeys.ScopeRead, apikeys.ScopeVerify}
		k.Controls = apikeys.Controls{Disabled: true, Permissions: []string{"documents.read", "billing:*"},
			IPAllowlist: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")}}
	})
	create(t, s, nk)
	got := getKey(t, s, nk.ID)
	// Metadata is kept as sent, key order and number spelling included.
	if string(got.Metadata) != string(nk.Metadata) {
		t.Errorf("metadata = %s, want %s", got.Metadata, nk.Metadata)
	}
	if !reflect.DeepEqual(got, nk.Key) {
		t.Errorf("GetKey =\n%+v\nwant\n%+v", got, nk.Key)
	}
	byHandle, err := s.GetKeyByHandle(ctx, nk.Handle)
	if err != nil || !reflect.DeepEqual(byHandle, got) {
		t.Errorf("GetKeyByHandle = %+v, %v; want %+v", byHandle, err, got)
	}
	subj, err := s.GetSubject(ctx, nk.SubjectID)
	if err != nil {
		t.Fatal(err)
	}
	want := apikeys.Subject{ID: nk.SubjectID, Type: apikeys.SubjectType, TenantID: "tenant_acme", EnvironmentID: "environment_prod", CreatedAt: t0}
	if subj != want {
		t.Errorf("GetSubject = %+v, want %+v", subj, want)
	}
}

func testNotFound(t *testing.T, s apikeys.KeyStore) {
	ctx := t.Context()
	_, err := s.GetKey(ctx, missingKeyID)
	wantCode(t, "GetKey", err, apikeys.ENOTFOUND)
	_, err = s.GetKeyByHandle(ctx, "nope")
	wantCode(t, "GetKeyByHandle", err, apikeys.ENOTFOUND)
	_, err = s.GetSubject(ctx, "subject_nope")
	wantCode(t, "GetSubject", err, apikeys.ENOTFOUND)
	called := false
	_, err = s.UpdateKey(ctx, missingKeyID, func(*apikeys.Key) error { called = true; return nil })
	wantCode(t, "UpdateKey", err, apikeys.ENOTFOUND)
	_, _, err = s.RotateKey(ctx, missingKeyID, func(*apikeys.Key) (apikeys.Key, error) {
		called = true
		return newKey(t0).Key, nil
	})
	wantCode(t, "RotateKey", err, apikeys.ENOTFOUND)
	if called {
		t.Error("fn was called for a key that does not exist")
	}
}

func testCreateIsAllOrNothing(t *testing.T, s apikeys.KeyStore) {
	ctx := t.Context()
	first := newKey(t0)
	create(t, s, first)
	tests := []struct {
		name string
		dup  func(k *apikeys.Key)
	}{
		{"taken id", func(k *apikeys.Key) { k.ID = first.ID }},
		{"taken handle", func(k *apikeys.Key) { k.Handle = first.Handle }},
		{"taken subject", func(k *apikeys.Key) { k.SubjectID = first.SubjectID }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok := newKey(t0.Add(time.Second))
			bad := newKey(t0.Add(2*time.Second), tt.dup)
			err := s.CreateKeys(ctx, []apikeys.NewKey{ok, bad})
			wantCode(t, "CreateKeys", err, apikeys.ECONFLICT)
			var e *apikeys.Error
			if errors.As(err, &e) && e.Detail == "" {
				t.Error("ECONFLICT without a sentence saying what collided")
			}
			_, err = s.GetKey(ctx, ok.ID)
			wantCode(t, "first key of a failed batch", err, apikeys.ENOTFOUND)
			_, err = s.GetSubject(ctx, ok.SubjectID)
			wantCode(t, "subject of a failed batch", err, apikeys.ENOTFOUND)
		})
	}
	if got := getKey(t, s, first.ID); !reflect.DeepEqual(got, first.Key) {
		t.Errorf("failed batches changed the existing key:\n%+v\nwant\n%+v", got, first.Key)
	}
}

func testListFiltersPaginationAndStatus(t *testing.T, s apikeys.KeyStore) {
	ctx := t.Context()
	now := t0.Add(time.Hour)
	var all []apikeys.NewKey
	for i := 0; i < 12; i++ {
		all = append(all, newKey(t0.Add(time.Duration(i)*time.Minute), func(k *apikeys.Key) {
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
	create(t, s, all...)
	want := func(pred func(k *apikeys.Key) bool) []string {
		var ids []apikeys.Key
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
	status := func(st apikeys.Status) func(k *apikeys.Key) bool {
		return func(k *apikeys.Key) bool { return k.StatusAt(now) == st }
	}
	tests := []struct {
		name string
		f    apikeys.KeyFilter
		pred func(k *apikeys.Key) bool
	}{
		{"all", apikeys.KeyFilter{}, func(*apikeys.Key) bool { return true }},
		{"tenant", apikeys.KeyFilter{TenantID: "tenant_a"}, func(k *apikeys.Key) bool { return k.TenantID == "tenant_a" }},
		{"environment", apikeys.KeyFilter{EnvironmentID: "env_y"}, func(k *apikeys.Key) bool { return k.EnvironmentID == "env_y" }},
		{"subject", apikeys.KeyFilter{SubjectID: all[7].SubjectID}, func(k *apikeys.Key) bool { return k.SubjectID == all[7].SubjectID }},
		{"creator", apikeys.KeyFilter{CreatedBySubjectID: "subject_joe"}, func(k *apikeys.Key) bool { return k.CreatedBySubjectID == "subject_joe" }},
		{"intended use", apikeys.KeyFilter{IntendedUse: "backup"}, func(k *apikeys.Key) bool { return k.IntendedUse == "backup" }},
		{"active", apikeys.KeyFilter{Status: apikeys.StatusActive}, status(apikeys.StatusActive)},
		{"revoked", apikeys.KeyFilter{Status: apikeys.StatusRevoked}, status(apikeys.StatusRevoked)},
		{"expired", apikeys.KeyFilter{Status: apikeys.StatusExpired}, status(apikeys.StatusExpired)},
		{"combined", apikeys.KeyFilter{TenantID: "tenant_b", Status: apikeys.StatusActive, IntendedUse: "ci-cd"}, func(k *apikeys.Key) bool {
			return k.TenantID == "tenant_b" && k.IntendedUse == "ci-cd" && k.StatusAt(now) == apikeys.StatusActive
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
					c, err := apikeys.ParseCursor(next.String())
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
}

func testListRejectsBadFilter(t *testing.T, s apikeys.KeyStore) {
	for _, f := range []apikeys.KeyFilter{{Limit: 0}, {Limit: -1}, {Limit: 1, Status: "bogus"}} {
		_, _, err := s.ListKeys(t.Context(), f)
		wantCode(t, fmt.Sprintf("ListKeys(%+v)", f), err, apikeys.EINVALID)
	}
}

func testUpdateKey(t *testing.T, s apikeys.KeyStore) {
	ctx := t.Context()
	nk := newKey(t0, func(k *apikeys.Key) { k.Description = "old"; k.Metadata = apikeys.Metadata(`{"a":1}`) })
	create(t, s, nk)
	later := t0.Add(time.Minute)
	updated, err := s.UpdateKey(ctx, nk.ID, func(k *apikeys.Key) error {
		k.Name, k.Description, k.Metadata, k.Scopes, k.UpdatedAt = "renamed", "", nil, []apikeys.Scope{apikeys.ScopeRead}, later
		k.RevokedAt, k.RevokedBySubjectID, k.RevokedReason = &later, apikeys.AdminSubjectID, "leaked"
		k.Controls = apikeys.Controls{Disabled: true, Permissions: []string{"admin"}, IPAllowlist: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got := getKey(t, s, nk.ID)
	if !reflect.DeepEqual(got, updated) {
		t.Errorf("GetKey after update =\n%+v\nwant\n%+v", got, updated)
	}
	if got.Name != "renamed" || got.Description != "" || got.Metadata != nil || got.StatusAt(later) != apikeys.StatusRevoked ||
		got.RevokedReason != "leaked" || !reflect.DeepEqual(got.Scopes, []apikeys.Scope{apikeys.ScopeRead}) ||
		got.Enabled() || !reflect.DeepEqual(got.Permissions, []string{"admin"}) || len(got.IPAllowlist) != 1 {
		t.Errorf("update not stored: %+v", got)
	}
}

// fnErrors are errors a use case's fn may return: the store must hand each back unchanged.
var fnErrors = []error{
	errors.New("boom"),
	apikeys.Errorf(apikeys.EFORBIDDEN, "a key cannot manage a key that holds scopes it does not hold itself"),
	apikeys.Invalid("the request is not valid", apikeys.FieldError{Field: "/name", Detail: "must be at most 200 characters"}),
}

func testUpdateKeyFnError(t *testing.T, s apikeys.KeyStore) {
	ctx := t.Context()
	nk := newKey(t0, func(k *apikeys.Key) { k.Description = "old"; k.Metadata = apikeys.Metadata(`{"a":1}`) })
	create(t, s, nk)
	before := getKey(t, s, nk.ID)
	for _, fnErr := range fnErrors {
		later := t0.Add(time.Minute)
		_, err := s.UpdateKey(ctx, nk.ID, func(k *apikeys.Key) error {
			k.Name, k.Description, k.Metadata, k.UpdatedAt = "changed", "", nil, later
			k.RevokedAt, k.RevokedBySubjectID, k.RevokedReason = &later, apikeys.AdminSubjectID, "leaked"
			return fnErr
		})
		if !errors.Is(err, fnErr) || apikeys.ErrorCode(err) != apikeys.ErrorCode(fnErr) {
			t.Errorf("UpdateKey returned %v (code %q), want fn's error %v unchanged", err, apikeys.ErrorCode(err), fnErr)
		}
		if got := getKey(t, s, nk.ID); !reflect.DeepEqual(got, before) {
			t.Errorf("an update whose fn failed with %v wrote:\n%+v\nwant\n%+v", fnErr, got, before)
		}
	}
}

func testRotateKey(t *testing.T, s apikeys.KeyStore) {
	ctx := t.Context()
	old := newKey(t0)
	create(t, s, old)
	repl := newKey(t0.Add(time.Minute), func(k *apikeys.Key) { k.SubjectID, k.RotatedFromID = old.SubjectID, old.ID })
	gotOld, gotNew, err := s.RotateKey(ctx, old.ID, func(o *apikeys.Key) (apikeys.Key, error) {
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
	if stored := getKey(t, s, old.ID); !reflect.DeepEqual(stored, gotOld) {
		t.Errorf("old key as stored =\n%+v\nwant\n%+v", stored, gotOld)
	}
	if stored := getKey(t, s, repl.ID); !reflect.DeepEqual(stored, gotNew) || stored.SubjectID != old.SubjectID || stored.RotatedFromID != old.ID {
		t.Errorf("new key as stored =\n%+v\nwant\n%+v", stored, gotNew)
	}
	keys, _, err := s.ListKeys(ctx, apikeys.KeyFilter{SubjectID: old.SubjectID, Limit: 10, Now: t0})
	if err != nil || len(keys) != 2 {
		t.Errorf("subject has %d keys (%v), want 2", len(keys), err)
	}
}

func testRotateKeyFnError(t *testing.T, s apikeys.KeyStore) {
	ctx := t.Context()
	old := newKey(t0)
	create(t, s, old)
	before := getKey(t, s, old.ID)
	for _, fnErr := range fnErrors {
		third := newKey(t0.Add(2*time.Minute), func(k *apikeys.Key) { k.SubjectID = old.SubjectID })
		_, _, err := s.RotateKey(ctx, old.ID, func(o *apikeys.Key) (apikeys.Key, error) {
			o.ReplacedByID = third.ID
			o.ExpiresAt = ptr(t0.Add(3 * time.Minute))
			return third.Key, fnErr
		})
		if !errors.Is(err, fnErr) || apikeys.ErrorCode(err) != apikeys.ErrorCode(fnErr) {
			t.Errorf("RotateKey returned %v (code %q), want fn's error %v unchanged", err, apikeys.ErrorCode(err), fnErr)
		}
		_, err = s.GetKey(ctx, third.ID)
		wantCode(t, "replacement of a failed rotation", err, apikeys.ENOTFOUND)
		if got := getKey(t, s, old.ID); !reflect.DeepEqual(got, before) {
			t.Errorf("a rotation whose fn failed with %v wrote:\n%+v\nwant\n%+v", fnErr, got, before)
		}
	}
}

func testRotateKeyConflict(t *testing.T, s apikeys.KeyStore) {
	ctx := t.Context()
	old, other := newKey(t0), newKey(t0)
	create(t, s, old, other)
	before := getKey(t, s, old.ID)
	tests := []struct {
		name string
		dup  func(k *apikeys.Key)
	}{
		{"taken id", func(k *apikeys.Key) { k.ID = other.ID }},
		{"taken handle", func(k *apikeys.Key) { k.Handle = other.Handle }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repl := newKey(t0.Add(time.Minute), func(k *apikeys.Key) { k.SubjectID, k.RotatedFromID = old.SubjectID, old.ID }, tt.dup)
			_, _, err := s.RotateKey(ctx, old.ID, func(o *apikeys.Key) (apikeys.Key, error) {
				o.ReplacedByID = repl.ID
				return repl.Key, nil
			})
			wantCode(t, "RotateKey", err, apikeys.ECONFLICT)
			if got := getKey(t, s, old.ID); !reflect.DeepEqual(got, before) {
				t.Errorf("a rotation that collided wrote:\n%+v\nwant\n%+v", got, before)
			}
		})
	}
}

func testRecordUsage(t *testing.T, s apikeys.KeyStore) {
	ctx := t.Context()
	a, b := newKey(t0), newKey(t0)
	create(t, s, a, b)
	err := s.RecordUsage(ctx, []apikeys.Usage{
		{KeyID: a.ID, At: t0.Add(2 * time.Second), IP: "192.168.1.1"},
		{KeyID: a.ID, At: t0.Add(time.Second), IP: "10.0.0.1"}, // older: ignored
		{KeyID: b.ID, At: t0.Add(time.Second), IP: "2001:db8::1"},
		{KeyID: missingKeyID, At: t0}, // gone: ignored
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RecordUsage(ctx, nil); err != nil {
		t.Errorf("RecordUsage(nil): %v", err)
	}
	for _, tt := range []struct {
		id, ip string
		at     time.Time
	}{{a.ID, "192.168.1.1", t0.Add(2 * time.Second)}, {b.ID, "2001:db8::1", t0.Add(time.Second)}} {
		k := getKey(t, s, tt.id)
		if k.LastUsedAt == nil || !k.LastUsedAt.Equal(tt.at) || k.LastUsedIP != tt.ip {
			t.Errorf("key %s used at %v from %q, want %v from %q", tt.id, k.LastUsedAt, k.LastUsedIP, tt.at, tt.ip)
		}
		if !k.UpdatedAt.Equal(t0) {
			t.Errorf("usage changed updatedAt to %v", k.UpdatedAt)
		}
	}
}

func testSetKeyHash(t *testing.T, s apikeys.KeyStore) {
	ctx := t.Context()
	nk, other := newKey(t0), newKey(t0)
	create(t, s, nk, other)
	const rehashed = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaA"
	for _, tt := range []struct {
		name, id, old string
	}{
		{"another hash", nk.ID, rehashed},
		{"missing key", missingKeyID, nk.Hash},
	} {
		set, err := s.SetKeyHash(ctx, tt.id, tt.old, rehashed)
		if err != nil || set {
			t.Errorf("SetKeyHash(%s) = %v, %v; want false, nil", tt.name, set, err)
		}
	}
	if got := getKey(t, s, nk.ID); got.Hash != nk.Hash {
		t.Fatalf("a compare-and-set that failed wrote hash %q", got.Hash)
	}
	set, err := s.SetKeyHash(ctx, nk.ID, nk.Hash, rehashed)
	if err != nil || !set {
		t.Fatalf("SetKeyHash = %v, %v; want true, nil", set, err)
	}
	want := nk.Key
	want.Hash = rehashed
	if got := getKey(t, s, nk.ID); !reflect.DeepEqual(got, want) {
		t.Errorf("after SetKeyHash:\n%+v\nwant\n%+v", got, want)
	}
	// The loser of a race holds the old hash: it writes nothing.
	if set, err := s.SetKeyHash(ctx, nk.ID, nk.Hash, "$argon2id$other"); err != nil || set {
		t.Errorf("second SetKeyHash from the old hash = %v, %v; want false, nil", set, err)
	}
	if got := getKey(t, s, other.ID); !reflect.DeepEqual(got, other.Key) {
		t.Errorf("SetKeyHash changed another key:\n%+v\nwant\n%+v", got, other.Key)
	}
}
