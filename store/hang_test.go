package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/qs/apikeys"
	"github.com/qs/apikeys/internal/testdb"
	"github.com/qs/apikeys/store"
)

// TestHungDatabaseCallsEndWithinTheTimeout freezes the network between the store and
// PostgreSQL (a proxy that stops forwarding: the server neither answers nor refuses, as when
// its processes are stopped). Every call, including those queued for a pool whose every
// connection is stuck, must end within the timeout with EUNAVAILABLE, though its context
// has no deadline; lib/pq alone would wait for TCP to give up, minutes later. Once the
// database answers again the store recovers by itself.
func TestHungDatabaseCallsEndWithinTheTimeout(t *testing.T) {
	db := testdb.New(t, testdb.Postgres)
	p := newProxy(t, db.URL)
	const timeout = 500 * time.Millisecond
	s, err := store.OpenWith(context.Background(), p.url, store.Options{Timeout: timeout, MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	k := newKey()
	if err := s.CreateKeys(context.Background(), []apikeys.NewKey{k}); err != nil {
		t.Fatal(err)
	}

	p.freeze()
	calls := map[string]func(ctx context.Context) error{
		"GetKey":         func(ctx context.Context) error { _, err := s.GetKey(ctx, k.ID); return err },
		"GetKeyByHandle": func(ctx context.Context) error { _, err := s.GetKeyByHandle(ctx, k.Handle); return err },
		"ListKeys": func(ctx context.Context) error {
			_, _, err := s.ListKeys(ctx, apikeys.KeyFilter{Limit: 10, Now: time.Now()})
			return err
		},
		"UpdateKey": func(ctx context.Context) error {
			_, err := s.UpdateKey(ctx, k.ID, func(k *apikeys.Key) error { k.Name = "changed"; return nil })
			return err
		},
		"CreateKeys": func(ctx context.Context) error { return s.CreateKeys(ctx, []apikeys.NewKey{newKey()}) },
		"Ping":       func(ctx context.Context) error { return s.Ping(ctx) },
	}
	var wg sync.WaitGroup
	for name, call := range calls {
		for i := range 2 { // 12 calls on a pool of 4: some wait for a connection
			wg.Add(1)
			go func() {
				defer wg.Done()
				start := time.Now()
				err := call(context.Background())
				took := time.Since(start)
				if !apikeys.IsCode(err, apikeys.EUNAVAILABLE) {
					t.Errorf("%s #%d while frozen: %v (code %q), want EUNAVAILABLE", name, i, err, apikeys.ErrorCode(err))
				}
				if took > 2*timeout+500*time.Millisecond {
					t.Errorf("%s #%d while frozen took %v; the bound is %v", name, i, took, timeout)
				}
			}()
		}
	}
	wg.Wait()

	p.thaw()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := s.GetKey(context.Background(), k.ID)
		if err == nil {
			if got.Name == "changed" {
				t.Error("an update that answered EUNAVAILABLE was committed")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the store did not recover within 5 s of the database answering: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRefusedConnectionIsUnavailable: a database that refuses connections is EUNAVAILABLE
// (503 at the edge, with Retry-After), not an internal error.
func TestRefusedConnectionIsUnavailable(t *testing.T) {
	db := testdb.New(t, testdb.Postgres)
	p := newProxy(t, db.URL)
	s, err := store.OpenWith(context.Background(), p.url, store.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p.closeAll() // the listener closes and every connection through it is cut
	for _, call := range []func() error{
		func() error { _, err := s.GetKey(context.Background(), "apk_x"); return err },
		func() error { return s.CreateKeys(context.Background(), []apikeys.NewKey{newKey()}) },
	} {
		if err := call(); !apikeys.IsCode(err, apikeys.EUNAVAILABLE) {
			t.Errorf("with the database refusing connections: %v (code %q), want EUNAVAILABLE", err, apikeys.ErrorCode(err))
		}
	}
}

// closeAll stops the proxy accepting and cuts every connection through it.
func (p *proxy) closeAll() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.all {
		c.Close()
	}
}
