package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	echomw "github.com/labstack/echo/v4/middleware"

	apikeys "github.com/qs/apikeys"
	"github.com/qs/apikeys/gen"
	"github.com/qs/apikeys/service"
)

// logRequests logs one line per request: method, route, status and duration. Headers,
// query strings and bodies are never logged, so a secret cannot reach the log.
func (s *Server) logRequests(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		if err := next(c); err != nil {
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

// Request bodies are small: a key is a few hundred bytes plus at most 4 KiB of metadata.
// Tight limits keep a client from making the validator chew on a megabyte of nesting.
const (
	maxBody      = 64 << 10
	maxBatchBody = 1 << 20
)

// bodyLimits answers 413 to a body over its operation's limit.
func (s *Server) bodyLimits(next echo.HandlerFunc) echo.HandlerFunc {
	small := echomw.BodyLimit(fmt.Sprintf("%dB", maxBody))(next)
	large := echomw.BodyLimit(fmt.Sprintf("%dB", maxBatchBody))(next)
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
		if err != nil {
			return err
		}
		ctx := context.WithValue(context.WithValue(r.Context(), principalKey{}, p), remoteIPKey{}, ip)
		c.SetRequest(r.WithContext(ctx))
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
