// Package server is the HTTP edge of the API-key service: it decodes requests (the generated
// strict server in gen), parses them into the use cases' inputs (package service), calls the
// use case and renders the answer. Authentication reads the bearer header and asks the
// service who the caller is; one table maps the domain's error codes to statuses and
// problem+json. No rule of the product is decided here.
package server

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/labstack/echo/v4"
	echomw "github.com/labstack/echo/v4/middleware"
	oapimw "github.com/oapi-codegen/echo-middleware"
	"golang.org/x/sync/semaphore"

	"github.com/qs/apikeys/gen"
	"github.com/qs/apikeys/service"
)

// Config is what the server is built from.
type Config struct {
	// Service runs the use cases. Required.
	Service *service.Service
	// Spec is the raw openapi.yaml served at /openapi.yaml.
	Spec []byte
	// Logger receives request and error logs; it never receives a secret.
	Logger *slog.Logger
	// RequestTimeout is the deadline of each request's work (default DefaultRequestTimeout).
	// The HTTP server's WriteTimeout must exceed it.
	RequestTimeout time.Duration
	// BodyBudget bounds the request body bytes being read and checked at once, across
	// requests (default DefaultBodyBudget).
	BodyBudget int64
	// DB is the store's connection pool, whose statistics GET /metrics reports (go_sql_*);
	// nil leaves them out.
	DB *sql.DB
}

// Defaults of Config.
const (
	DefaultRequestTimeout = 10 * time.Second
	DefaultBodyBudget     = 8 << 20
)

// Server implements gen.StrictServerInterface and http.Handler.
type Server struct {
	svc  *service.Service
	spec []byte
	log  *slog.Logger
	ops  map[[2]string]operation // by method and Echo path; an array key needs no concatenation
	echo *echo.Echo

	templates map[string]string // openapi.yaml's path templates by Echo path, for metrics and logs
	metrics   *metrics

	requestTimeout time.Duration
	bodyBudget     *semaphore.Weighted
	bodyBudgetSize int64
}

// operation is what the edge knows of one operation of openapi.yaml.
type operation struct {
	id        service.Op
	protected bool            // needs a caller
	query     map[string]bool // its declared query parameters
	body      bool            // it takes a JSON body
}

var _ gen.StrictServerInterface = (*Server)(nil)

// New builds the server. It refuses a spec whose x-required-scope disagrees with the
// service's own table of who may call what, so the document cannot drift from the rules.
func New(cfg Config) (*Server, error) {
	if cfg.Service == nil {
		return nil, errors.New("server: a service is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	spec, err := gen.GetSwagger()
	if err != nil {
		return nil, fmt.Errorf("server: load embedded spec: %w", err)
	}
	// A servers block makes the validator match on Host and answer 400 to everything.
	spec.Servers = nil

	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.BodyBudget <= 0 {
		cfg.BodyBudget = DefaultBodyBudget
	}
	log := slog.New(logHandler{cfg.Logger.Handler()}) // lines about a request carry its id
	s := &Server{svc: cfg.Service, spec: cfg.Spec, log: log, ops: map[[2]string]operation{},
		requestTimeout: cfg.RequestTimeout, bodyBudget: semaphore.NewWeighted(cfg.BodyBudget), bodyBudgetSize: cfg.BodyBudget,
		templates: map[string]string{}, metrics: newMetrics(cfg.Service, cfg.DB, log)}
	// The generated spec capitalises operationIds; match them without regard to case.
	byName := map[string]service.Op{}
	for _, op := range service.Operations() {
		byName[strings.ToLower(string(op))] = op
	}
	for path, item := range spec.Paths.Map() {
		echoPath := strings.NewReplacer("{", ":", "}", "").Replace(path)
		s.templates[echoPath] = path
		for method, op := range item.Operations() {
			o := operation{id: byName[strings.ToLower(op.OperationID)], query: map[string]bool{}, body: op.RequestBody != nil}
			for _, p := range append(item.Parameters, op.Parameters...) {
				if p.Value != nil && p.Value.In == "query" {
					o.query[p.Value.Name] = true
				}
			}
			declared, _ := op.Extensions["x-required-scope"].(string)
			scope, protected := service.RequiredScope(o.id)
			public := op.Security != nil && len(*op.Security) == 0
			if protected == public || string(scope) != declared {
				return nil, fmt.Errorf("server: %s %s: openapi.yaml says scope %q, public %v; the service requires %q",
					method, path, declared, public, scope)
			}
			o.protected = protected
			s.ops[[2]string{method, echoPath}] = o
		}
	}

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.errorHandler
	// The peer's address, never a header a client can forge, unless a proxy is configured.
	e.IPExtractor = echo.ExtractIPDirect()
	e.Use(s.logRequests)
	e.Use(echomw.RecoverWithConfig(echomw.RecoverConfig{DisableStackAll: true, LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
		s.log.ErrorContext(c.Request().Context(), "panic", "method", c.Request().Method, "route", c.Path(), "err", err, "stack", string(stack))
		return err
	}}))
	e.Use(s.deadline)
	e.Use(s.bodyLimits)
	e.Use(s.checkQuery)
	e.Use(s.authenticate)
	e.Use(s.checkBody)
	e.Use(oapimw.OapiRequestValidatorWithOptions(spec, &oapimw.Options{
		SilenceServersWarning: true,
		// Requests that match no operation are Echo's to answer (404, 405).
		// Verify holds its body to the schema itself (verifyRoute).
		Skipper: func(c echo.Context) bool {
			op, known := s.operation(c)
			return !known || op.id == service.OpVerifyKey
		},
		Options: openapi3filter.Options{
			// Authentication happened already, in s.authenticate.
			AuthenticationFunc: openapi3filter.NoopAuthenticationFunc,
			MultiError:         true,
			// A schema error's text would quote the offending value, pretty-printed: for a
			// deeply nested body that costs time and memory quadratic in its depth.
			SchemaValidationOptions: []openapi3.SchemaValidationOption{openapi3.DisableSchemaErrorDetails()},
		},
		// The default handler renders every error to a string; errors.go reads them instead.
		MultiErrorHandler: func(me openapi3.MultiError) *echo.HTTPError {
			return &echo.HTTPError{Code: http.StatusBadRequest, Message: "the request does not match the API's schema", Internal: me}
		},
	}))
	gen.RegisterHandlers(e, gen.NewStrictHandler(s, nil))
	// Registered again, the route keeps its place and its middleware and takes this handler.
	e.POST("/api-keys/verify", s.verifyRoute)
	e.GET("/docs/*", s.docsAsset) // the reference page's assets (docs.go): no operation of the spec
	// /docs/ answers as /docs (GET and HEAD), as a person typing the address or a link
	// checker expects; net/http sends no body to a HEAD.
	e.GET("/docs/", docsPageRoute)
	e.HEAD("/docs/", docsPageRoute)
	e.GET("/metrics", s.metricsRoute)
	s.echo = e
	return s, nil
}

// ServeHTTP makes the server an http.Handler. A request on a connection beyond the limit
// (LimitConnections) is answered, and its connection closed: the health probes as usual,
// anything else 503.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if onSpareConn(r) {
		w.Header().Set("Connection", "close")
		if r.URL.Path != "/healthz" && r.URL.Path != "/readyz" {
			start, id := time.Now(), requestID(r.Header)
			w.Header().Set(headerRequestID, id)
			writeProblem(w, &problem{status: http.StatusServiceUnavailable, retryAfter: "1",
				detail: "the service has as many connections as it serves; retry shortly"})
			s.finish(context.WithValue(r.Context(), requestIDKey{}, id), methodLabel(r.Method), routeRefused,
				http.StatusServiceUnavailable, time.Since(start), nil)
			return
		}
	}
	s.echo.ServeHTTP(w, r)
}

// operation returns the operation a request was routed to.
func (s *Server) operation(c echo.Context) (operation, bool) {
	o, ok := s.ops[[2]string{c.Request().Method, c.Path()}]
	return o, ok
}
