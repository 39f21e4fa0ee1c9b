package service

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	apikeys "github.com/qs/apikeys"
)

// usageRecorder keeps the latest use of each key in memory and writes them in one
// transaction per interval, so that verification, the hot path, never writes to the
// database. A key used a thousand times in an interval costs one row update.
type usageRecorder struct {
	store usageStore
	log   *slog.Logger

	mu      sync.Mutex
	pending map[string]apikeys.Usage

	stop chan struct{}
	done chan struct{}
	once sync.Once

	// What flush did, for metrics: batches written, the uses they held, batches that failed.
	flushes, rows, failures atomic.Int64
}

// usageStore is the part of Store the recorder writes to.
type usageStore interface {
	RecordUsage(ctx context.Context, uses []apikeys.Usage) error
}

func newUsageRecorder(st usageStore, every time.Duration, log *slog.Logger) *usageRecorder {
	u := &usageRecorder{store: st, log: log, pending: map[string]apikeys.Usage{},
		stop: make(chan struct{}), done: make(chan struct{})}
	go u.run(every)
	return u
}

func (u *usageRecorder) record(keyID string, at time.Time, ip string) {
	u.mu.Lock()
	if prev, ok := u.pending[keyID]; !ok || !at.Before(prev.At) {
		u.pending[keyID] = apikeys.Usage{KeyID: keyID, At: at, IP: ip}
	}
	u.mu.Unlock()
}

func (u *usageRecorder) run(every time.Duration) {
	defer close(u.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-u.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := u.flush(ctx); err != nil {
				u.log.Error("record key usage", "err", err)
			}
			cancel()
		}
	}
}

// flush writes what is pending. On failure the uses are put back, unless a newer use of
// the same key arrived meanwhile, so that the next interval tries again.
func (u *usageRecorder) flush(ctx context.Context) error {
	u.mu.Lock()
	batch := make([]apikeys.Usage, 0, len(u.pending))
	for _, use := range u.pending {
		batch = append(batch, use)
	}
	u.pending = map[string]apikeys.Usage{}
	u.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	err := u.store.RecordUsage(ctx, batch)
	if err != nil {
		u.failures.Add(1)
		for _, use := range batch {
			u.record(use.KeyID, use.At, use.IP)
		}
		return err
	}
	u.flushes.Add(1)
	u.rows.Add(int64(len(batch)))
	return nil
}

func (u *usageRecorder) close(ctx context.Context) error {
	u.once.Do(func() { close(u.stop) })
	<-u.done
	return u.flush(ctx)
}
