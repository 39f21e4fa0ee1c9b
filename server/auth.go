package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/qs/apikeys/gen"
	"github.com/qs/apikeys/keys"
	"github.com/qs/apikeys/store"
)

// caller is who sent the request, established once by authenticate and carried to the
// strict handlers in the request context (they see only a context.Context).
type caller struct {
	subjectID     string
	admin         bool
	tenantID      string // non-empty: may only see and manage keys of this tenant
	environmentID string // likewise for the environment
	scopes        []string
	remoteIP      string
}

type callerKey struct{}

func callerFrom(ctx context.Context) *caller {
	c, _ := ctx.Value(callerKey{}).(*caller)
	if c == nil {
		// authenticate runs before every protected handler; reaching here is a bug,
		// and the safe answer is a caller who may do nothing.
		return &caller{}
	}
	return c
}

func (c *caller) has(scope string) bool { return c.admin || slices.Contains(c.scopes, scope) }

// mayHold reports whether the caller could grant every one of scopes: a key cannot hand
// out (through create, update or rotate) more than it holds itself.
func (c *caller) mayHold(scopes []string) bool {
	for _, sc := range scopes {
		if !c.has(sc) {
			return false
		}
	}
	return true
}

// sees reports whether a key (or subject) of tenant and environment is visible to the
// caller; invisible resources answer 404, as if they did not exist.
func (c *caller) sees(tenantID, environmentID string) bool {
	return (c.tenantID == "" || c.tenantID == tenantID) &&
		(c.environmentID == "" || c.environmentID == environmentID)
}

// authenticate establishes the caller of every operation that needs one and checks the
// scope the spec names for it (x-required-scope), before the body is even validated:
// an unknown caller learns nothing about the API's rules.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		scope, protected := s.scopes[c.Request().Method+" "+c.Path()]
		if !protected {
			return next(c)
		}
		scheme, token, ok := strings.Cut(c.Request().Header.Get(echo.HeaderAuthorization), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
			return &problem{status: 401, detail: "an Authorization: Bearer token is required", authenticate: `Bearer realm="apikeys"`}
		}
		token = strings.TrimSpace(token)
		who := &caller{remoteIP: c.RealIP()}
		if s.isAdmin(token) {
			who.admin, who.subjectID = true, AdminSubjectID
		} else {
			k, code, err := s.check(c.Request().Context(), token)
			if err != nil {
				return err
			}
			if code == gen.VALID {
				code = statusCode(k.StatusAt(s.now()))
			}
			if code != gen.VALID {
				return unauthorized(bearerDetail(code))
			}
			s.usage.record(k.ID, s.now(), who.remoteIP)
			who.subjectID, who.tenantID, who.environmentID, who.scopes = k.SubjectID, k.TenantID, k.EnvironmentID, k.Scopes
		}
		if !who.has(scope) {
			return forbidden("this key lacks the " + scope + " scope")
		}
		r := c.Request()
		c.SetRequest(r.WithContext(context.WithValue(r.Context(), callerKey{}, who)))
		return next(c)
	}
}

func bearerDetail(code gen.VerifyCode) string {
	switch code {
	case gen.REVOKED:
		return "the bearer key has been revoked"
	case gen.EXPIRED:
		return "the bearer key has expired"
	default:
		return "the bearer token is not valid"
	}
}

// isAdmin compares in constant time; hashing first makes the time independent of length.
func (s *Server) isAdmin(token string) bool {
	a, b := sha256.Sum256([]byte(token)), sha256.Sum256(s.adminToken)
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// check finds the key a presented secret belongs to: MALFORMED when the token fails its
// format or checksum (no database work), NOT_FOUND when no key carries its handle or the
// secret does not match the one stored hash. It runs at most one argon2id verification.
// It says nothing about status: callers decide what revocation and expiry mean to them.
func (s *Server) check(ctx context.Context, secret string) (store.Key, gen.VerifyCode, error) {
	tok, err := keys.Parse(secret)
	if err != nil {
		return store.Key{}, gen.MALFORMED, nil
	}
	k, err := s.store.GetKeyByHandle(ctx, tok.Handle())
	if errors.Is(err, store.ErrNotFound) {
		return store.Key{}, gen.NOTFOUND, nil
	}
	if err != nil {
		return store.Key{}, "", err
	}
	ok, err := keys.Verify(secret, k.Hash)
	if err != nil {
		return store.Key{}, "", err
	}
	if !ok {
		return store.Key{}, gen.NOTFOUND, nil
	}
	return k, gen.VALID, nil
}

func statusCode(st store.Status) gen.VerifyCode {
	switch st {
	case store.StatusRevoked:
		return gen.REVOKED
	case store.StatusExpired:
		return gen.EXPIRED
	default:
		return gen.VALID
	}
}
