// Package server is the HTTP edge of the API-key service: the handlers behind the
// generated strict server, authentication and authorisation, request validation against
// openapi.yaml, and the one mapping from errors to problem+json responses.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
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
	// MaxBodyBytes bounds request bodies; 1 MiB when zero.
	MaxBodyBytes int64
}

// AdminSubjectID is the subject recorded for actions taken with the admin token.
const AdminSubjectID = "subject_admin"

// Server implements gen.StrictServerInterface.
type Server struct {
	store      Store
	adminToken []byte
	prefix     string
	hash       keys.Params
	spec       []byte
	now        func() time.Time
	log        *slog.Logger
	usage      *usageRecorder
	scopes     map[string]string // "METHOD /echo/path" -> required scope
	operations map[string]bool   // "METHOD /echo/path" of every operation in the spec
	echo       *echo.Echo
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
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	spec, err := gen.GetSwagger()
	if err != nil {
		return nil, fmt.Errorf("server: load embedded spec: %w", err)
	}
	// A servers block makes the validator match on Host and answer 400 to everything.
	spec.Servers = nil

	s := &Server{
		store:      cfg.Store,
		adminToken: []byte(cfg.AdminToken),
		prefix:     cfg.KeyPrefix,
		hash:       cfg.Hash,
		spec:       cfg.Spec,
		now:        func() time.Time { return cfg.Now().UTC().Truncate(time.Microsecond) },
		log:        cfg.Logger,
		scopes:     map[string]string{},
		operations: map[string]bool{},
	}
	for path, item := range spec.Paths.Map() {
		echoPath := strings.NewReplacer("{", ":", "}", "").Replace(path)
		for method, op := range item.Operations() {
			s.operations[method+" "+echoPath] = true
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
	e.Use(echomw.BodyLimit(fmt.Sprintf("%dB", cfg.MaxBodyBytes)))
	e.Use(rejectBadQuery)
	e.Use(s.authenticate)
	e.Use(oapimw.OapiRequestValidatorWithOptions(spec, &oapimw.Options{
		SilenceServersWarning: true,
		// Requests that match no operation are Echo's to answer (404, 405).
		Skipper: func(c echo.Context) bool { return !s.operations[c.Request().Method+" "+c.Path()] },
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

// rejectBadQuery answers 400 to a query string Go cannot parse: net/url drops the broken
// pairs silently, and a dropped filter or cursor would widen the result without a word.
func rejectBadQuery(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if _, err := url.ParseQuery(c.Request().URL.RawQuery); err != nil {
			return badRequest("the query string is not valid URL encoding", fieldError(gen.Query, "", "not valid URL encoding"))
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
