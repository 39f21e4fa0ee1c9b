package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	echomw "github.com/labstack/echo/v4/middleware"

	apikeys "github.com/qs/apikeys"
	"github.com/qs/apikeys/gen"
	"github.com/qs/apikeys/keys"
	"github.com/qs/apikeys/service"
)

// logRequests gives every request its id (the client's X-Request-ID when it is sane, else a
// fresh UUIDv7), returns it in the X-Request-ID header of every answer, errors included,
// and puts it in the request's context, where every log line written about the request
// finds it (logHandler). Once the request is answered, it counts it in the metrics and logs
// exactly one line: id, method, route (the template of openapi.yaml), status, latency in
// milliseconds and, when the caller was authenticated, its subject. Headers, query strings
// and bodies are never logged, so a secret cannot reach the log. It is the outermost
// middleware: a panic below it still yields its 500, its metrics and its line.
func (s *Server) logRequests(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		r := c.Request()
		id := requestID(r.Header)
		c.Response().Header().Set(headerRequestID, id)
		ctx := context.WithValue(r.Context(), requestIDKey{}, id)
		c.SetRequest(r.WithContext(ctx))
		if err := next(c); err != nil {
			c.Error(err)
		}
		method, route := s.route(c)
		s.finish(ctx, method, route, c.Response().Status, time.Since(start), principal(c.Request().Context()))
		return nil
	}
}

// finish counts an answered request and writes its one log line.
func (s *Server) finish(ctx context.Context, method, route string, status int, elapsed time.Duration, p *apikeys.Principal) {
	s.metrics.request(method, route, status, elapsed)
	attrs := make([]slog.Attr, 0, 5)
	attrs = append(attrs, slog.String("method", method), slog.String("route", route), slog.Int("status", status),
		slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000))
	if p != nil {
		attrs = append(attrs, slog.String("subject", p.SubjectID))
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "request", attrs...)
}

// route returns the labels of a request: its method (OTHER unless it is one of HTTP's, so
// that a client cannot make the labels grow without bound) and its route: the path template
// of openapi.yaml, or Echo's own for a route the spec does not describe, or routeUnmatched.
func (s *Server) route(c echo.Context) (method, route string) {
	route, ok := s.templates[c.Path()]
	switch {
	case ok:
	case c.Path() != "":
		route = c.Path() // a pattern registered on Echo: a bounded set
	default:
		route = routeUnmatched
	}
	return methodLabel(c.Request().Method), route
}

func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "OTHER"
}

const headerRequestID = "X-Request-ID"

type requestIDKey struct{}

// requestID returns the client's X-Request-ID when there is exactly one and it is 1 to 128
// characters of A-Z a-z 0-9 . _ : - (nothing a log or a header could be confused by), and
// a fresh UUIDv7 otherwise.
func requestID(h http.Header) string {
	if v := h.Values(headerRequestID); len(v) == 1 && saneRequestID(v[0]) && !isToken(v[0]) {
		return v[0]
	}
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.NewString() // v7 fails only when crypto/rand does
	}
	return id.String()
}

// isToken reports whether s is, checksum and all, a key of this service's format: sent as a
// request id by mistake (a header pasted into the wrong name), it would be logged and echoed.
func isToken(s string) bool {
	_, err := keys.Parse(s)
	return err == nil
}

func saneRequestID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// logHandler adds the request id of the context to every record logged with one, so that
// whatever the server logs about a request (its line, a 503, an internal error, a panic)
// carries the id the client was given.
type logHandler struct{ slog.Handler }

func (h logHandler) Handle(ctx context.Context, r slog.Record) error {
	if id, ok := ctx.Value(requestIDKey{}).(string); ok {
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return logHandler{h.Handler.WithAttrs(attrs)}
}

func (h logHandler) WithGroup(name string) slog.Handler { return logHandler{h.Handler.WithGroup(name)} }

// Request bodies are small: a key is a few hundred bytes plus at most 4 KiB of metadata.
// Tight limits keep a client from making the validator chew on a megabyte of nesting.
const (
	maxBody      = 64 << 10
	maxBatchBody = 1 << 20
)

// The body limits, built once: Echo applies its middleware to the handler on every request,
// and BodyLimit parses its limit (with regular expressions) when it is built.
var (
	smallBodyLimit = echomw.BodyLimit(fmt.Sprintf("%dB", maxBody))
	largeBodyLimit = echomw.BodyLimit(fmt.Sprintf("%dB", maxBatchBody))
)

// bodyLimits answers 413 to a body over its operation's limit.
func (s *Server) bodyLimits(next echo.HandlerFunc) echo.HandlerFunc {
	small, large := smallBodyLimit(next), largeBodyLimit(next)
	return func(c echo.Context) error {
		if c.Path() == "/api-keys/batch" {
			return large(c)
		}
		return small(c)
	}
}

// checkQuery answers 400 to a query string that could be silently misread: one Go cannot
// parse (net/url drops broken pairs), a parameter the operation does not declare (a
// misspelt filter would otherwise widen a list without a word), a parameter given twice,
// or one given empty.
func (s *Server) checkQuery(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		raw := c.Request().URL.RawQuery
		if raw == "" {
			return next(c)
		}
		op, known := s.operation(c)
		if known && !op.protected {
			// A public operation (health probes, the spec), whose answer no query can
			// change: probes may add cache busters.
			return next(c)
		}
		q, err := url.ParseQuery(raw)
		if err != nil {
			return badRequest("the query string is not valid URL encoding", fieldError(gen.Query, "", "not valid URL encoding"))
		}
		if !known {
			return next(c) // not an operation: Echo answers 404 or 405
		}
		var fields []gen.FieldError
		for name, values := range q {
			switch {
			case !op.query[name]:
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

// Keys of the Echo context: the body checkBody read and checked; the request's context as
// the HTTP server made it, which ends when the client goes away, before deadline wrapped it.
const (
	bodyKey      = "apikeys.body"
	clientCtxKey = "apikeys.clientCtx"
)

type (
	principalKey struct{}
	remoteIPKey  struct{}
)

// remoteIP is the peer's address, as authenticate found it.
func remoteIP(ctx context.Context) string {
	ip, _ := ctx.Value(remoteIPKey{}).(string)
	return ip
}

// principal returns the caller that authenticate established. Strict handlers see only a
// context.Context, so the caller travels in it.
func principal(ctx context.Context) *apikeys.Principal {
	p, _ := ctx.Value(principalKey{}).(*apikeys.Principal)
	return p // nil makes every use case answer EFORBIDDEN: the safe default
}

// authenticate establishes the caller of every operation that needs one, before the body is
// even validated: an unknown caller learns nothing about the API's rules. The decision (who
// this is, whether it may call the operation) is the service's.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		op, known := s.operation(c)
		if !known || !op.protected {
			return next(c)
		}
		headers := c.Request().Header.Values(echo.HeaderAuthorization)
		fields := strings.Fields(strings.Join(headers, " "))
		if len(headers) != 1 || len(fields) != 2 || !strings.EqualFold(fields[0], "Bearer") {
			return &problem{status: http.StatusUnauthorized, detail: "exactly one Authorization: Bearer <token> header is required",
				authenticate: `Bearer realm="apikeys"`}
		}
		r, ip := c.Request(), c.RealIP()
		p, err := s.svc.Authenticate(r.Context(), fields[1], ip, op.id)
		if p != nil {
			// Set even when refused (403): the request's log line names who was refused.
			ctx := context.WithValue(context.WithValue(r.Context(), principalKey{}, p), remoteIPKey{}, ip)
			c.SetRequest(r.WithContext(ctx))
		}
		if err != nil {
			return err
		}
		return next(c)
	}
}

// checkBody holds a JSON body to what every JSON parser agrees on, before the validator and
// the generated decoder read it (both Go's encoding/json, which is lenient where others are
// not): the media type is application/json in any case, with no charset but UTF-8 (else
// 415), and the text passes apikeys.CheckJSONText: valid UTF-8 without lone surrogate
// escapes, one JSON value with nothing after it, no member named twice, numbers a double
// holds.
func (s *Server) checkBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		op, known := s.operation(c)
		r := c.Request()
		if !known || !op.body || (r.ContentLength == 0 && r.Header.Get(echo.HeaderContentType) == "") {
			return next(c) // no body: the validator says whether one was required
		}
		if err := checkMediaType(r.Header.Get(echo.HeaderContentType)); err != nil {
			return err
		}
		release, err := s.reserveBody(r.Context(), c.Path(), r.ContentLength)
		if err != nil {
			return err
		}
		defer release()
		r.Header.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
		body, err := io.ReadAll(r.Body)
		if err != nil {
			var he *echo.HTTPError
			if errors.As(err, &he) {
				return he // the body limit
			}
			return badRequest("the request body could not be read")
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		c.Set(bodyKey, body)
		if len(bytes.TrimSpace(body)) == 0 {
			return next(c)
		}
		// The size check first, on its own pass over the bytes: it is cheap, and it refuses
		// the bodies made to be expensive before CheckJSONText tokenises them. verifyRoute
		// decodes into no tree; it needs no such check.
		if op.id != service.OpVerifyKey && json.Valid(body) {
			if err := checkShape(body); err != nil {
				return err
			}
		}
		if err := apikeys.CheckJSONText(body); err != nil {
			return badRequest(apikeys.ErrorDetail(err), fieldError(gen.Body, "/", apikeys.ErrorDetail(err)))
		}
		return next(c)
	}
}

// reserveBody takes, from the budget of body bytes in flight, what a request may read (its
// Content-Length, or its operation's limit when it does not say), until it is answered:
// reading, checking and validating a body costs memory in proportion to its size, and the
// budget bounds their sum. A request that cannot have its share before its deadline gets
// 503 with Retry-After.
func (s *Server) reserveBody(ctx context.Context, route string, length int64) (func(), error) {
	limit := int64(maxBody)
	if route == "/api-keys/batch" {
		limit = maxBatchBody
	}
	n := limit
	if length >= 0 && length < limit {
		n = max(length, 1)
	}
	n = min(n, s.bodyBudgetSize)
	if err := s.bodyBudget.Acquire(ctx, n); err != nil {
		return nil, apikeys.Errorf(apikeys.EUNAVAILABLE, "the service is busy reading other requests; retry shortly")
	}
	return func() { s.bodyBudget.Release(n) }, nil
}

// deadline gives the work of every request a deadline (Config.RequestTimeout), which the
// use cases and the store honour: a create whose deadline has passed is not committed. The
// HTTP server's write timeout must be longer, so that whatever was stored is answered.
func (s *Server) deadline(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		c.Set(clientCtxKey, r.Context()) // ends only when the client goes away
		ctx, cancel := context.WithTimeout(r.Context(), s.requestTimeout)
		defer cancel()
		c.SetRequest(r.WithContext(ctx))
		return next(c)
	}
}

// checkMediaType accepts application/json, compared case-insensitively, with at most a UTF-8
// charset.
func checkMediaType(header string) error {
	unsupported := &problem{status: http.StatusUnsupportedMediaType,
		detail: "the body must be sent as Content-Type: application/json (UTF-8)",
		fields: []gen.FieldError{fieldError(gen.Header, "Content-Type", "must be application/json, in UTF-8")}}
	mt, params, err := mime.ParseMediaType(header)
	if err != nil || mt != echo.MIMEApplicationJSON {
		return unsupported
	}
	for name, v := range params {
		if name != "charset" || !strings.EqualFold(v, "utf-8") {
			return unsupported
		}
	}
	return nil
}
