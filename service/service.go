// Package service holds the use cases of the API-key service: authenticate a caller, create,
// batch-create, list, get, update, revoke, rotate and verify keys, get subjects. Every rule of
// "who may call what" and the order of verification is written here once, on domain values
// (package apikeys), and tested without HTTP. The HTTP edge (package server) parses requests
// into the inputs declared here and renders what comes back; it decides nothing.
package service

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	apikeys "github.com/qs/apikeys"
	"github.com/qs/apikeys/keys"
)

// Op names an operation of the API, as openapi.yaml's operationId does.
type Op string

// The operations that need a caller, and the scope each requires of a key.
const (
	OpCreateKey   Op = "createApiKey"
	OpBatchCreate Op = "batchCreateApiKeys"
	OpListKeys    Op = "listApiKeys"
	OpGetKey      Op = "getApiKey"
	OpUpdateKey   Op = "updateApiKey"
	OpRevokeKey   Op = "revokeApiKey"
	OpRotateKey   Op = "rotateApiKey"
	OpVerifyKey   Op = "verifyApiKey"
	OpGetSubject  Op = "getSubject"
)

// requiredScope is who may call what: the scope a key needs for each operation. The admin
// may call every operation. openapi.yaml repeats it as x-required-scope, and server.New
// refuses to start when the two disagree.
var requiredScope = map[Op]apikeys.Scope{
	OpCreateKey:   apikeys.ScopeWrite,
	OpBatchCreate: apikeys.ScopeWrite,
	OpUpdateKey:   apikeys.ScopeWrite,
	OpRevokeKey:   apikeys.ScopeWrite,
	OpRotateKey:   apikeys.ScopeWrite,
	OpListKeys:    apikeys.ScopeRead,
	OpGetKey:      apikeys.ScopeRead,
	OpGetSubject:  apikeys.ScopeRead,
	OpVerifyKey:   apikeys.ScopeVerify,
}

// Operations lists the operations that need a caller.
func Operations() []Op {
	out := make([]Op, 0, len(requiredScope))
	for op := range requiredScope {
		out = append(out, op)
	}
	return out
}

// RequiredScope returns the scope op requires, and false for an operation that needs no
// caller (health, readiness, the spec).
func RequiredScope(op Op) (apikeys.Scope, bool) {
	s, ok := requiredScope[op]
	return s, ok
}

// Hasher runs argon2id within bounds: at most Slots at once, and keys.ErrBusy when none
// frees up in time. *keys.Hasher is the one the service runs with.
type Hasher interface {
	Hash(ctx context.Context, secret string) (string, error)
	Verify(ctx context.Context, secret, phc string) (bool, error)
	Slots() int
	// NeedsRehash reports whether phc was made with other parameters than new hashes.
	NeedsRehash(phc string) bool
}

// Config is what a Service is built from. Its values are validated where they are parsed
// (cmd/apikeys); New only fills in defaults for the optional ones.
type Config struct {
	// Store keeps keys and subjects. Required.
	Store apikeys.KeyStore
	// AdminToken is the bearer token that may do everything. Required.
	AdminToken string
	// KeyPrefix starts every new secret; keys.DefaultPrefix when empty.
	KeyPrefix string
	// Hasher runs argon2id; keys.NewHasher(keys.DefaultParams(), 0, 0) when nil.
	Hasher Hasher
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Logger receives what the service cannot report to a caller (failed usage writes).
	Logger *slog.Logger
	// UsageFlushInterval is how often recorded key usage is written; 1s when zero.
	UsageFlushInterval time.Duration
	// Feed reports every write to a key, on every replica; the key cache is used only while
	// it vouches for it. nil: the cache is never used (every verification reads its key;
	// the proof memo still spares argon2id).
	Feed apikeys.ChangeFeed
	// CacheEntries bounds the key cache; 50,000 when zero.
	CacheEntries int
}

// Service runs the use cases. It is safe for concurrent use.
type Service struct {
	store     apikeys.KeyStore
	adminHash [sha256.Size]byte
	prefix    string
	hasher    Hasher
	clock     func() time.Time
	log       *slog.Logger
	usage     *usageRecorder
	verifier  *verifier
	verdicts  verdictCounts
	stop      context.CancelFunc
	watching  sync.WaitGroup
	pings     singleflight.Group
}

// New builds a Service and starts its usage recorder; Close stops it.
func New(cfg Config) *Service {
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = keys.DefaultPrefix
	}
	if cfg.Hasher == nil {
		cfg.Hasher = keys.NewHasher(keys.DefaultParams(), 0, 0)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.UsageFlushInterval <= 0 {
		cfg.UsageFlushInterval = time.Second
	}
	s := &Service{
		store:     cfg.Store,
		adminHash: sha256.Sum256([]byte(cfg.AdminToken)),
		prefix:    cfg.KeyPrefix,
		hasher:    cfg.Hasher,
		clock:     cfg.Now,
		log:       cfg.Logger,
		usage:     newUsageRecorder(cfg.Store, cfg.UsageFlushInterval, cfg.Logger),
		verifier:  newVerifier(cfg.Store, cfg.Hasher, cfg.Logger, cfg.CacheEntries),
		verdicts:  newVerdictCounts(),
	}
	ctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	if cfg.Feed != nil {
		s.watching.Add(1)
		go func() {
			defer s.watching.Done()
			s.verifier.watch(ctx, cfg.Feed)
		}()
	}
	return s
}

// Stats returns the verifier's counters.
func (s *Service) Stats() *VerifierStats { return s.verifier.stats }

// now is the clock at the databases' precision, so that what is answered is what is stored.
func (s *Service) now() time.Time { return s.clock().UTC().Truncate(time.Microsecond) }

// Now is the service's clock, at which the edge renders a key's status.
func (s *Service) Now() time.Time { return s.now() }

// Flush writes the key usage recorded so far; tests and shutdown call it.
func (s *Service) Flush(ctx context.Context) error { return s.usage.flush(ctx) }

// Close stops watching the change feed and stops the usage recorder after writing what it
// holds.
func (s *Service) Close(ctx context.Context) error {
	s.stop()
	s.watching.Wait()
	return s.usage.close(ctx)
}

// Ready reports whether the database answers, within 2 s, even when the database hangs:
// the answer does not wait for the ping beyond that (the store bounds the ping itself), and
// probes that come while one ping is out share it. EUNAVAILABLE.
func (s *Service) Ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	res := s.pings.DoChan("ping", func() (any, error) {
		return nil, s.store.Ping(context.WithoutCancel(ctx))
	})
	var err error
	select {
	case r := <-res:
		err = r.Err
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		s.log.Warn("readiness: database does not answer", "err", err)
		return apikeys.Errorf(apikeys.EUNAVAILABLE, "the database does not answer")
	}
	return nil
}

// authorize checks that p may call op at all. EFORBIDDEN.
func authorize(p *apikeys.Principal, op Op) error {
	scope, ok := requiredScope[op]
	if !ok || p == nil {
		return apikeys.Errorf(apikeys.EFORBIDDEN, "this operation cannot be called")
	}
	if !p.Has(scope) {
		return apikeys.Errorf(apikeys.EFORBIDDEN, "this key lacks the %s scope", scope)
	}
	return nil
}

// fresh returns the caller as it is now, for a write that follows slow work (hashing) or
// that must not act on a stale view: a bearer key revoked, expired, narrowed or rotated since
// the request was authenticated acts no more. The rules are then applied, under the row lock
// where there is one, to this principal. EUNAUTHENTICATED, EFORBIDDEN.
func (s *Service) fresh(ctx context.Context, p *apikeys.Principal, op Op) (*apikeys.Principal, error) {
	if p == nil || p.Admin {
		return p, authorize(p, op)
	}
	k, err := s.store.GetKey(ctx, p.KeyID)
	if apikeys.IsCode(err, apikeys.ENOTFOUND) || (err == nil && k.StatusAt(s.now()) != apikeys.StatusActive) {
		return nil, apikeys.Errorf(apikeys.EUNAUTHENTICATED, "the bearer key was revoked or expired while the request ran")
	}
	if err != nil {
		return nil, err
	}
	current := apikeys.PrincipalOf(&k)
	return current, authorize(current, op)
}

// errBadBearer is the one answer to every bearer token that does not authenticate, whatever
// the reason, so that it tells nothing about a key to someone without its secret.
var errBadBearer = apikeys.Errorf(apikeys.EUNAUTHENTICATED, "the bearer token is not a valid, active key")

// Authenticate establishes who presents token, checks that the caller may call op, and
// records the use of a bearer key (from ip). The admin token is compared in constant time;
// any other token must be an active key of this service whose secret matches.
// EUNAUTHENTICATED, EFORBIDDEN, EUNAVAILABLE. With EFORBIDDEN the caller is returned too:
// it is known, only not allowed this operation.
func (s *Service) Authenticate(ctx context.Context, token, ip string, op Op) (*apikeys.Principal, error) {
	digest := sha256.Sum256([]byte(token))
	if subtle.ConstantTimeCompare(digest[:], s.adminHash[:]) == 1 {
		p := apikeys.AdminPrincipal()
		return p, authorize(p, op)
	}
	k, code, err := s.verifier.check(ctx, token)
	if err != nil {
		return nil, err
	}
	now := s.now()
	if code == "" {
		if code = run(ViaBearer, &input{k: &k, now: now, ip: ip}); code == apikeys.CodeValid {
			code = ""
		}
	}
	if code != "" {
		s.verdicts.add(ViaBearer, code)
		return nil, errBadBearer
	}
	p := apikeys.PrincipalOf(&k)
	if err := authorize(p, op); err != nil {
		s.verdicts.add(ViaBearer, apikeys.CodeInsufficientScopes)
		return p, err // who was refused, for the edge's log; the error decides
	}
	s.verdicts.add(ViaBearer, apikeys.CodeValid)
	s.usage.record(k.ID, now, ip)
	return p, nil
}

// hashError turns the hasher's saturation into EUNAVAILABLE; a stored hash it cannot read
// stays an internal error.
func hashError(err error) error {
	if errors.Is(err, keys.ErrBusy) {
		return apikeys.Errorf(apikeys.EUNAVAILABLE, "the service is busy hashing keys; retry shortly")
	}
	return err
}
