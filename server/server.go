// Package server is the HTTP edge of the API-key service: the handlers behind the
// generated strict server, authentication and authorisation, request validation against
// openapi.yaml, and the one mapping from errors to problem+json responses.
package server

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/labstack/echo/v4"
	echomw "github.com/labstack/echo/v4/middleware"
	oapimw "github.com/oapi-codegen/echo-middleware"

	"github.com/qs/apikeys/gen"
	"github.com/qs/apikeys/keys"
	"github.com/qs/apikeys/store"
)

// Store is what the server needs from persistence; *store.Store provides it.
type Store interface {
	CreateKeys(ctx context.Context, keys []store.NewKey) error
	GetKey(ctx context.Context, id string) (store.Key, error)
	GetKeyByHandle(ctx context.Context, handle string) (store.Key, error)
	ListKeys(ctx context.Context, f store.Filter) ([]store.Key, *store.Cursor, error)
	UpdateKey(ctx context.Context, id string, fn func(k *store.Key) error) (store.Key, error)
	RotateKey(ctx context.Context, id string, fn func(old *store.Key) (store.Key, error)) (store.Key, store.Key, error)
	RecordUsage(ctx context.Context, uses []store.Usage) error
	GetSubject(ctx context.Context, id string) (store.Subject, error)
	Ping(ctx context.Context) error
}

// Config is everything the server is built from. Store, AdminToken and Spec are required.
type Config struct {
	Store Store
	// AdminToken is the bearer token that may do everything, as subject "subject_admin".
	AdminToken string
	// KeyPrefix starts every new secret; keys.DefaultPrefix when empty.
	KeyPrefix string
	// Hash are the argon2id parameters for new keys; keys.DefaultParams() when zero.
	Hash keys.Params
	// Spec is the raw openapi.yaml served at /openapi.yaml.
	Spec []byte
	// Now is the clock; time.Now when nil. Tests move it to exercise expiry.
	Now func() time.Time
	// Logger receives request and error logs; it never receives a secret.
	Logger *slog.Logger
	// UsageFlushInterval is how often recorded key usage is written; 1s when zero.
	UsageFlushInterval time.Duration
	// HashWait is how long a request may wait for an argon2id slot before it answers
	// 503; 10s when zero.
	HashWait time.Duration
}

// AdminSubjectID is the subject recorded for actions taken with the admin token.
const AdminSubjectID = "subject_admin"

// Server implements gen.StrictServerInterface.
type Server struct {
	store     Store
	adminHash [sha256.Size]byte // of the admin token, compared with each bearer token's
	prefix    string
	hash      keys.Params
	spec      []byte
	now       func() time.Time
	log       *slog.Logger
	usage     *usageRecorder
	hashSlots chan struct{}              // argon2id runs, hashing or verifying, hold one
	hashWait  time.Duration              // how long a request may wait for a slot
	scopes    map[string]string          // "METHOD /echo/path" -> required scope
	query     map[string]map[string]bool // every operation ("METHOD /echo/path") and its query parameters
	echo      *echo.Echo
}

var _ gen.StrictServerInterface = (*Server)(nil)

// New builds the server and starts its usage recorder; Close stops it.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("server: a store is required")
	}
	if len(cfg.AdminToken) < 16 {
		return nil, errors.New("server: the admin token must be at least 16 characters")
	}
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = keys.DefaultPrefix
	}
	if err := keys.ValidatePrefix(cfg.KeyPrefix); err != nil {
		return nil, fmt.Errorf("server: key prefix: %w", err)
	}
	if cfg.Hash == (keys.Params{}) {
		cfg.Hash = keys.DefaultParams()
	}
	if err := cfg.Hash.Validate(); err != nil {
		return nil, fmt.Errorf("server: argon2id parameters: %w", err)
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
	if cfg.HashWait <= 0 {
		cfg.HashWait = 10 * time.Second
	}
	spec, err := gen.GetSwagger()
	if err != nil {
		return nil, fmt.Errorf("server: load embedded spec: %w", err)
	}
	// A servers block makes the validator match on Host and answer 400 to everything.
	spec.Servers = nil

	s := &Server{
		store:     cfg.Store,
		adminHash: sha256.Sum256([]byte(cfg.AdminToken)),
		prefix:    cfg.KeyPrefix,
		hash:      cfg.Hash,
		spec:      cfg.Spec,
		now:       func() time.Time { return cfg.Now().UTC().Truncate(time.Microsecond) },
		log:       cfg.Logger,
		hashSlots: make(chan struct{}, runtime.GOMAXPROCS(0)),
		hashWait:  cfg.HashWait,
		scopes:    map[string]string{},
		query:     map[string]map[string]bool{},
	}
	for path, item := range spec.Paths.Map() {
		echoPath := strings.NewReplacer("{", ":", "}", "").Replace(path)
		for method, op := range item.Operations() {
			s.query[method+" "+echoPath] = map[string]bool{}
			for _, p := range append(item.Parameters, op.Parameters...) {
				if p.Value != nil && p.Value.In == "query" {
					s.query[method+" "+echoPath][p.Value.Name] = true
				}
			}
			if op.Security != nil && len(*op.Security) == 0 {
				continue // public: health, readiness, the spec
			}
			scope, _ := op.Extensions["x-required-scope"].(string)
			if scope == "" {
				return nil, fmt.Errorf("server: %s %s has no x-required-scope", method, path)
			}
			s.scopes[method+" "+echoPath] = scope
		}
	}
	s.usage = newUsageRecorder(cfg.Store, cfg.UsageFlushInterval, cfg.Logger)

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.errorHandler
	// The peer's address, never a header a client can forge, unless a proxy is configured.
	e.IPExtractor = echo.ExtractIPDirect()
	e.Use(echomw.RecoverWithConfig(echomw.RecoverConfig{DisableStackAll: true, LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
		s.log.Error("panic", "method", c.Request().Method, "path", c.Request().URL.Path, "err", err, "stack", string(stack))
		return err
	}}))
	e.Use(s.logRequests)
	e.Use(bodyLimits)
	e.Use(s.checkQuery)
	e.Use(s.authenticate)
	e.Use(oapimw.OapiRequestValidatorWithOptions(spec, &oapimw.Options{
		SilenceServersWarning: true,
		// Requests that match no operation are Echo's to answer (404, 405).
		Skipper: func(c echo.Context) bool {
			_, operation := s.query[c.Request().Method+" "+c.Path()]
			return !operation
		},
		Options: openapi3filter.Options{
			// Authentication happened already, in s.authenticate.
			AuthenticationFunc: openapi3filter.NoopAuthenticationFunc,
			MultiError:         true,
		},
	}))
	gen.RegisterHandlers(e, gen.NewStrictHandler(s, nil))
	s.echo = e
	return s, nil
}

// ServeHTTP makes the server an http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.echo.ServeHTTP(w, r) }

// Flush writes the key usage recorded so far; tests and shutdown call it.
func (s *Server) Flush(ctx context.Context) error { return s.usage.flush(ctx) }

// Close stops the usage recorder after writing what it holds.
func (s *Server) Close(ctx context.Context) error { return s.usage.close(ctx) }

// acquireHashSlot waits for one of the argon2id slots, at most s.hashWait.
func (s *Server) acquireHashSlot(ctx context.Context) error {
	t := time.NewTimer(s.hashWait)
	defer t.Stop()
	select {
	case s.hashSlots <- struct{}{}:
		return nil
	case <-t.C:
		return &problem{status: http.StatusServiceUnavailable, detail: "the service is busy verifying keys; retry shortly", retryAfter: "1"}
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Server) releaseHashSlot() { <-s.hashSlots }

// Request bodies are small: a key is a few hundred bytes plus at most 4 KiB of metadata.
// Tight limits keep a client from making the validator chew on a megabyte of nesting.
const (
	maxBody      = 64 << 10
	maxBatchBody = 1 << 20
)

// bodyLimits answers 413 to a body over its operation's limit.
func bodyLimits(next echo.HandlerFunc) echo.HandlerFunc {
	small := echomw.BodyLimit(fmt.Sprintf("%dB", maxBody))(next)
	large := echomw.BodyLimit(fmt.Sprintf("%dB", maxBatchBody))(next)
	return func(c echo.Context) error {
		if c.Path() == "/api-keys/batch" {
			return large(c)
		}
		return small(c)
	}
}

// checkQuery answers 400 to a query string that could be silently misread: one Go
// cannot parse (net/url drops broken pairs), a parameter the operation does not declare
// (a misspelt filter would otherwise widen a list without a word), a parameter given
// twice, or one given empty.
func (s *Server) checkQuery(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		raw := c.Request().URL.RawQuery
		if raw == "" {
			return next(c)
		}
		q, err := url.ParseQuery(raw)
		if err != nil {
			return badRequest("the query string is not valid URL encoding", fieldError(gen.Query, "", "not valid URL encoding"))
		}
		declared, known := s.query[c.Request().Method+" "+c.Path()]
		if !known {
			return next(c) // not an operation: Echo answers 404 or 405
		}
		var fields []gen.FieldError
		for name, values := range q {
			switch {
			case !declared[name]:
				fields = append(fields, fieldError(gen.Query, name, "is not a parameter of this operation"))
			case len(values) > 1:
				fields = append(fields, fieldError(gen.Query, name, "may be given only once"))
			case values[0] == "":
				fields = append(fields, fieldError(gen.Query, name, "may not be empty; leave it out instead"))
			}
		}
		if len(fields) > 0 {
			slices.SortFunc(fields, func(a, b gen.FieldError) int { return strings.Compare(a.Field, b.Field) })
			return badRequest("the query string was rejected", fields...)
		}
		return next(c)
	}
}

// logRequests logs one line per request: method, route, status and duration. Headers,
// query strings and bodies are never logged, so a secret cannot reach the log.
func (s *Server) logRequests(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		route := c.Path()
		if route == "" {
			route = "(unmatched)"
		}
		s.log.Info("request", "method", c.Request().Method, "route", route,
			"status", c.Response().Status, "duration_ms", float64(time.Since(start).Microseconds())/1000)
		return nil
	}
}
