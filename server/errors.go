package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/labstack/echo/v4"

	apikeys "github.com/qs/apikeys"
	"github.com/qs/apikeys/gen"
)

// problem is an error that knows its RFC 9457 rendering. The edge returns it for failures of
// HTTP itself (headers, media types, query strings); the use cases' errors are translated by
// toProblem.
type problem struct {
	status int
	detail string
	fields []gen.FieldError
	// authenticate adds WWW-Authenticate, as RFC 6750 asks of a 401.
	authenticate string
	// retryAfter adds Retry-After (seconds) to a 503.
	retryAfter string
}

func (p *problem) Error() string { return http.StatusText(p.status) + ": " + p.detail }

func badRequest(detail string, fields ...gen.FieldError) error {
	return &problem{status: http.StatusBadRequest, detail: detail, fields: fields}
}

func fieldError(in gen.FieldErrorIn, field, detail string) gen.FieldError {
	return gen.FieldError{In: in, Field: field, Detail: detail}
}

// statusOf is the one table from the domain's error codes to HTTP statuses.
var statusOf = map[string]int{
	apikeys.EINVALID:         http.StatusBadRequest,
	apikeys.EUNAUTHENTICATED: http.StatusUnauthorized,
	apikeys.EFORBIDDEN:       http.StatusForbidden,
	apikeys.ENOTFOUND:        http.StatusNotFound,
	apikeys.ECONFLICT:        http.StatusConflict,
	apikeys.ETOOLARGE:        http.StatusRequestEntityTooLarge,
	apikeys.EUNAVAILABLE:     http.StatusServiceUnavailable,
}

// toProblem maps every error the server can meet to a problem: the edge's own problems,
// the domain's errors (through statusOf), and Echo's and the validator's errors. Only
// internal errors are logged, and their text never reaches the client.
func toProblem(err error, log *slog.Logger, r *http.Request) *problem {
	var (
		p  *problem
		de *apikeys.Error
		he *echo.HTTPError
	)
	switch {
	case errors.As(err, &p):
		return p
	case errors.As(err, &de) && statusOf[de.Code] != 0:
		out := &problem{status: statusOf[de.Code], detail: de.Detail}
		for _, f := range de.Fields {
			in := gen.Body
			if !strings.HasPrefix(f.Field, "/") {
				in = gen.Query // the use cases name query parameters bare, body fields as pointers
			}
			out.fields = append(out.fields, fieldError(in, f.Field, f.Detail))
		}
		switch de.Code {
		case apikeys.EUNAUTHENTICATED:
			out.authenticate = `Bearer realm="apikeys", error="invalid_token"`
		case apikeys.EUNAVAILABLE:
			out.retryAfter = "1"
			log.WarnContext(r.Context(), "unavailable", "method", r.Method, "detail", de.Detail, "cause", causeOf(de))
		}
		return out
	case errors.Is(err, context.DeadlineExceeded):
		log.WarnContext(r.Context(), "request deadline passed", "method", r.Method)
		return &problem{status: http.StatusServiceUnavailable, retryAfter: "1",
			detail: "the request could not be completed in time; retry shortly"}
	case errors.As(err, &he):
		return fromHTTPError(he, log, r)
	default:
		log.ErrorContext(r.Context(), "internal error", "method", r.Method, "err", err)
		return &problem{status: http.StatusInternalServerError, detail: "an unexpected error occurred; it has been logged"}
	}
}

// fromHTTPError renders Echo's errors (routing, binding, body limit) and the request
// validator's, whose original kin-openapi error rides in Internal.
func fromHTTPError(he *echo.HTTPError, log *slog.Logger, r *http.Request) *problem {
	if he.Code >= 500 {
		log.ErrorContext(r.Context(), "internal error", "method", r.Method, "err", he)
		return &problem{status: http.StatusInternalServerError, detail: "an unexpected error occurred; it has been logged"}
	}
	var ute *json.UnmarshalTypeError
	if he.Code == http.StatusBadRequest && errors.As(he.Internal, &ute) {
		// The generated decoder's types are stricter than JSON Schema (1e3 is an integer to
		// the validator, not to encoding/json); its message names Go types, so it stays here.
		field := "/" + strings.ReplaceAll(ute.Field, ".", "/")
		return &problem{status: http.StatusBadRequest, detail: "the request does not match the API's schema",
			fields: []gen.FieldError{fieldError(gen.Body, field, "has a value of the wrong type for this field")}}
	}
	if he.Code == http.StatusBadRequest && he.Internal != nil {
		if fields := validationFields(he.Internal); len(fields) > 0 {
			return &problem{status: http.StatusBadRequest, detail: "the request does not match the API's schema", fields: fields}
		}
	}
	detail := http.StatusText(he.Code)
	switch he.Code {
	case http.StatusNotFound:
		detail = "no such endpoint"
	case http.StatusMethodNotAllowed:
		detail = "the endpoint does not accept this method"
	case http.StatusRequestEntityTooLarge:
		detail = "the request body is too large"
	case http.StatusUnsupportedMediaType:
		return &problem{status: he.Code, detail: "the body must be sent as Content-Type: application/json (UTF-8)",
			fields: []gen.FieldError{fieldError(gen.Header, "Content-Type", "must be application/json, in UTF-8")}}
	case http.StatusBadRequest:
		if msg, ok := he.Message.(string); ok && msg != "" {
			detail = firstLine(msg)
		}
	}
	return &problem{status: he.Code, detail: detail}
}

// validationFields turns the validator's errors into one entry per offending field. The
// entries carry the rule that failed, never the value sent (it may be a secret).
func validationFields(err error) []gen.FieldError {
	var out []gen.FieldError
	var walk func(error)
	walk = func(err error) {
		// A type switch, not errors.As: a RequestError unwraps to its inner MultiError,
		// and the request error's parameter is what names the field.
		switch e := err.(type) {
		case openapi3.MultiError:
			for _, inner := range e {
				walk(inner)
			}
		case *openapi3filter.RequestError:
			in, field := gen.FieldErrorIn("body"), ""
			if e.Parameter != nil {
				in, field = gen.FieldErrorIn(e.Parameter.In), e.Parameter.Name
			}
			if inner, ok := e.Err.(openapi3.MultiError); ok {
				for _, ie := range inner {
					out = append(out, schemaField(in, field, ie, e.Reason))
				}
				return
			}
			out = append(out, schemaField(in, field, e.Err, e.Reason))
		case *openapi3.SchemaError:
			out = append(out, schemaField("body", "", e, ""))
		default:
			out = append(out, fieldError("body", "/", firstLine(err.Error())))
		}
	}
	walk(err)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Field < out[j].Field })
	return onePerField(out)
}

// onePerField keeps one error for each field: an empty or over-long name fails its length
// and its pattern too, and one mistake deserves one sentence. The pattern's sentence, the
// vaguest, gives way to any other rule's.
func onePerField(errs []gen.FieldError) []gen.FieldError {
	out := errs[:0]
	at := map[[2]string]int{}
	for _, e := range errs {
		k := [2]string{string(e.In), e.Field}
		if i, seen := at[k]; seen {
			if out[i].Detail == textPatternDetail {
				out[i] = e
			}
			continue
		}
		at[k] = len(out)
		out = append(out, e)
	}
	return out
}

// schemaSentence says in a sentence, with plain numbers, which rule of openapi.yaml a value
// breaks ("" for a rule it has no sentence for, whose validator text is used). The
// validator's own texts print bounds as floats (2.592e+06) and in the plural regardless.
func schemaSentence(se *openapi3.SchemaError, field string) string {
	s := se.Schema
	if s == nil {
		return ""
	}
	num := func(f *float64) string { return strconv.FormatFloat(*f, 'f', -1, 64) }
	count := func(n uint64, one, many string) string {
		if n == 1 {
			return "1 " + one
		}
		return strconv.FormatUint(n, 10) + " " + many
	}
	switch se.SchemaField {
	case "minLength":
		if s.MinLength == 1 {
			return "must not be empty"
		}
		return "must be at least " + count(s.MinLength, "character", "characters") + " long"
	case "maxLength":
		if s.MaxLength != nil {
			return "must be at most " + count(*s.MaxLength, "character", "characters") + " long"
		}
	case "minimum":
		if s.Min != nil {
			return "must be at least " + num(s.Min)
		}
	case "maximum":
		if s.Max != nil {
			return "must be at most " + num(s.Max)
		}
	case "minItems":
		return "must hold at least " + count(s.MinItems, "item", "items")
	case "maxItems":
		if s.MaxItems != nil {
			return "must hold at most " + count(*s.MaxItems, "item", "items")
		}
	case "minProperties":
		if field == "/" {
			return "must set at least " + count(s.MinProps, "field", "fields")
		}
		return "must hold at least " + count(s.MinProps, "property", "properties")
	case "maxProperties":
		if s.MaxProps != nil {
			return "must hold at most " + count(*s.MaxProps, "property", "properties")
		}
	case "uniqueItems":
		return "must not hold the same item twice"
	case "enum":
		if len(s.Enum) > 0 && len(s.Enum) <= 10 {
			names := make([]string, len(s.Enum))
			for i, v := range s.Enum {
				names[i] = fmt.Sprint(v)
			}
			return "must be one of " + strings.Join(names, ", ")
		}
	}
	return ""
}

func schemaField(in gen.FieldErrorIn, field string, err error, reason string) gen.FieldError {
	var se *openapi3.SchemaError
	if errors.As(err, &se) {
		if in == "body" {
			field = "/" + strings.Join(se.JSONPointer(), "/")
		}
		if se.SchemaField == "pattern" && !printableASCII(se.Schema.Pattern) {
			// The text patterns (Name, Description, Reason) are written with the very
			// characters they refuse: quoted, they would put bidirectional overrides and
			// line separators into the answer and onto the client's terminal.
			return fieldError(in, field, textPatternDetail)
		}
		if sentence := schemaSentence(se, field); sentence != "" {
			return fieldError(in, field, sentence)
		}
		return fieldError(in, field, se.Reason)
	}
	var pe *openapi3filter.ParseError
	if errors.As(err, &pe) {
		// Its text quotes the value sent, which may be anything, a secret included.
		return fieldError(in, field, "cannot be read as the type openapi.yaml gives this parameter")
	}
	if reason == "" && err != nil {
		reason = firstLine(err.Error())
	}
	if in == "body" && field == "" {
		field = "/"
	}
	return fieldError(in, field, reason)
}

// textPatternDetail answers a value that fails one of the text patterns.
const textPatternDetail = "holds a character this field refuses (control characters, line and paragraph separators, " +
	"bidirectional controls) or lacks the visible character it needs; the field's description in openapi.yaml lists them"

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// causeOf is the text of an error's cause, for the log ("" when it has none).
func causeOf(e *apikeys.Error) string {
	if e.Err == nil {
		return ""
	}
	return e.Err.Error()
}

// statusClientClosed is logged for a request whose client went away before its answer
// (nginx's 499); nothing is sent.
const statusClientClosed = 499

// errorHandler is Echo's HTTPErrorHandler: the one exit for every failure.
func (s *Server) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	clientCtx, ok := c.Get(clientCtxKey).(context.Context)
	if !ok {
		clientCtx = c.Request().Context()
	}
	if errors.Is(clientCtx.Err(), context.Canceled) {
		// The client closed the connection: whatever failed after that failed because of
		// it (a cancelled query, a hash slot never reached). Not the service's error.
		s.log.InfoContext(c.Request().Context(), "client closed the request", "method", c.Request().Method, "route", c.Path())
		c.Response().Status = statusClientClosed
		return
	}
	writeProblem(c.Response(), toProblem(err, s.log, c.Request()))
}

// writeProblem renders p as application/problem+json.
func writeProblem(w http.ResponseWriter, p *problem) {
	body := gen.Problem{
		Type:   "about:blank",
		Title:  http.StatusText(p.status),
		Status: p.status,
		Detail: p.detail,
	}
	if len(p.fields) > 0 {
		body.Errors = &p.fields
	}
	h := w.Header()
	if p.authenticate != "" {
		h.Set(echo.HeaderWWWAuthenticate, p.authenticate)
	}
	if p.retryAfter != "" {
		h.Set(echo.HeaderRetryAfter, p.retryAfter)
	}
	buf, _ := json.Marshal(body) // a struct of strings and ints cannot fail to encode
	h.Set(echo.HeaderContentType, "application/problem+json")
	w.WriteHeader(p.status)
	_, _ = w.Write(buf)
}
