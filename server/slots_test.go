package server_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	apikeys "github.com/qs/apikeys"
	"github.com/qs/apikeys/internal/testdb"
	"github.com/qs/apikeys/keys"
	"github.com/qs/apikeys/server"
	"github.com/qs/apikeys/service"
	"github.com/qs/apikeys/store"
)

// saturable is a hasher that, while busy, answers as one whose every slot stayed taken.
type saturable struct {
	*keys.Hasher
	busy atomic.Bool
}

func (h *saturable) Hash(ctx context.Context, secret string) (string, error) {
	if h.busy.Load() {
		return "", keys.ErrBusy
	}
	return h.Hasher.Hash(ctx, secret)
}

func (h *saturable) Verify(ctx context.Context, secret, phc string) (bool, error) {
	if h.busy.Load() {
		return false, keys.ErrBusy
	}
	return h.Hasher.Verify(ctx, secret, phc)
}

// TestBusyHashSlotsAnswer503: when the hasher is saturated (keys.ErrBusy, tested in keys),
// requests needing argon2id answer 503 with Retry-After, others are served, and all work
// again once it frees up.
func TestBusyHashSlotsAnswer503(t *testing.T) {
	st, err := store.Open(context.Background(), testdb.New(t, testdb.SQLite).URL)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const admin = "slots-admin-token-0123456789"
	hasher := &saturable{Hasher: keys.NewHasher(fastHash, 1, 50*time.Millisecond)}
	svc := service.New(service.Config{Store: st, AdminToken: admin, Hasher: hasher})
	defer svc.Close(context.Background())
	s, err := server.New(server.Config{Service: svc, Spec: apikeys.OpenAPI})
	if err != nil {
		t.Fatal(err)
	}
	call := func(path, token, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		return w
	}
	created := call("/api-keys", admin, `{"name":"k","scopes":["api_keys:verify"]}`)
	if created.Code != 201 {
		t.Fatalf("create: %d %s", created.Code, created.Body)
	}
	secret := strings.Split(strings.Split(created.Body.String(), `"secretKey":"`)[1], `"`)[0]

	hasher.busy.Store(true)
	verify := `{"key":"` + secret + `"}`
	for name, w := range map[string]*httptest.ResponseRecorder{
		"verify":        call("/api-keys/verify", admin, verify),
		"create":        call("/api-keys", admin, `{"name":"k"}`),
		"bearer as key": call("/api-keys/verify", secret, verify),
	} {
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "1" ||
			w.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s with every slot busy: %d %v %s", name, w.Code, w.Header(), w.Body)
		}
	}
	// A malformed or unknown token needs no slot.
	if w := call("/api-keys/verify", admin, `{"key":"qs_live_nope"}`); w.Code != 200 {
		t.Errorf("malformed key with every slot busy: %d", w.Code)
	}
	hasher.busy.Store(false)
	if w := call("/api-keys/verify", secret, verify); w.Code != 200 || !strings.Contains(w.Body.String(), `"VALID"`) {
		t.Errorf("after the slots freed: %d %s", w.Code, w.Body)
	}
}
