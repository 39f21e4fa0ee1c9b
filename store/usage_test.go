package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	apikeys "github.com/qs/apikeys"
	"github.com/qs/apikeys/internal/testdb"
	"github.com/qs/apikeys/store"
)

// TestUsageFlushesDoNotBlockWrites: replicas flush the last uses of the same keys at once
// (each in its own order) while a key is revoked; no flush fails (a deadlock between two
// flushes, or a wait past the lock timeout) and no revoke waits long for a flush's locks.
// Before usage was written in one ordered statement, each flush held its rows' locks over
// one round trip per key, in map order, and flushes deadlocked or made a revoke time out.
// SQLite serves one process (its "replicas" here are four flushers on one Store), and has one
// writer at a time: a revoke may wait for the flushes queued before it.
func TestUsageFlushesDoNotBlockWrites(t *testing.T) {
	for _, engine := range testdb.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			db := testdb.New(t, engine)
			const replicas, rounds = 4, 6
			keys, bound, processes := 300, 500*time.Millisecond, replicas
			if engine == testdb.SQLite {
				// modernc's SQLite under the race detector writes 300 rows in about 0.1 s.
				keys, bound, processes = 100, 3*time.Second, 1
			}
			stores := make([]*store.Store, replicas)
			for i := range stores {
				if i >= processes {
					stores[i] = stores[0]
					continue
				}
				s, err := store.OpenWith(context.Background(), db.URL, store.Options{Timeout: 2 * time.Second})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				stores[i] = s
			}
			t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
			var batch []apikeys.NewKey
			for i := range keys {
				id := apikeys.NewKeyID()
				batch = append(batch, apikeys.NewKey{NewSubject: true, Key: apikeys.Key{
					ID: id, SubjectID: apikeys.NewSubjectID(), Name: fmt.Sprint("k", i), Handle: fmt.Sprintf("usage%07d", i),
					Prefix: "qs_live_abcd", LastFour: "wxyz", Hash: "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
					HashAlgo: apikeys.HashAlgo, CreatedBySubjectID: apikeys.AdminSubjectID, CreatedAt: t0, UpdatedAt: t0,
					Scopes: []apikeys.Scope{}}})
			}
			if err := stores[0].CreateKeys(context.Background(), batch); err != nil {
				t.Fatal(err)
			}
			var (
				wg       sync.WaitGroup
				mu       sync.Mutex
				failures []error
				slowest  time.Duration
			)
			fail := func(err error) {
				mu.Lock()
				failures = append(failures, err)
				mu.Unlock()
			}
			for r, s := range stores {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for round := range rounds {
						uses := make([]apikeys.Usage, keys)
						for i, k := range batch {
							uses[i] = apikeys.Usage{KeyID: k.ID, At: t0.Add(time.Duration(round*replicas+r+1) * time.Second), IP: "192.0.2.1"}
						}
						rand.Shuffle(len(uses), func(i, j int) { uses[i], uses[j] = uses[j], uses[i] })
						if err := s.RecordUsage(context.Background(), uses); err != nil {
							fail(fmt.Errorf("replica %d, flush %d: %w", r, round, err))
						}
					}
				}()
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 30; i++ {
					start := time.Now()
					_, err := stores[0].UpdateKey(context.Background(), batch[(i*7)%keys].ID, func(k *apikeys.Key) error {
						k.RevokedAt = &t0
						return nil
					})
					took := time.Since(start)
					if err != nil {
						fail(fmt.Errorf("revoke %d: %w", i, err))
					}
					mu.Lock()
					slowest = max(slowest, took)
					mu.Unlock()
				}
			}()
			wg.Wait()
			for _, err := range failures {
				t.Error(err)
			}
			if slowest > bound {
				t.Errorf("the slowest revoke took %v while usage was flushed: want at most %v", slowest, bound)
			}
			t.Logf("%s: %d replicas × %d flushes of %d keys, 30 revokes meanwhile: %d failures, slowest revoke %v", engine, replicas, rounds, keys, len(failures), slowest)
			// The latest use won everywhere.
			k, err := stores[0].GetKey(context.Background(), batch[1].ID)
			if err != nil {
				t.Fatal(err)
			}
			if want := t0.Add(time.Duration(rounds*replicas) * time.Second); k.LastUsedAt == nil || !k.LastUsedAt.Equal(want) {
				t.Errorf("lastUsedAt %v, want the latest use %v", k.LastUsedAt, want)
			}
		})
	}
}
