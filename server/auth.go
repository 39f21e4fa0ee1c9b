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
		headers := c.Request().Header.Values(echo.HeaderAuthorization)
		fields := strings.Fields(strings.Join(headers, " "))
		if len(headers) != 1 || len(fields) != 2 || !strings.EqualFold(fields[0], "Bearer") {
			return &problem{status: 401, detail: "exactly one Authorization: Bearer <token> header is required", authenticate: `Bearer realm="apikeys"`}
		}
		token := fields[1]
		who := &caller{remoteIP: c.RealIP()}
		var keyID string
		if s.isAdmin(token) {
			who.admin, who.subjectID = true, AdminSubjectID
		} else {
			k, err := s.bearerKey(c.Request().Context(), token)
			if err != nil {
				return err
			}
			keyID = k.ID
			who.subjectID, who.tenantID, who.environmentID, who.scopes = k.SubjectID, k.TenantID, k.EnvironmentID, k.Scopes
		}
		if !who.has(scope) {
			return forbidden("this key lacks the " + scope + " scope")
		}
		if keyID != "" {
			s.usage.record(keyID, s.now(), who.remoteIP)
		}
		r := c.Request()
		c.SetRequest(r.WithContext(context.WithValue(r.Context(), callerKey{}, who)))
		return next(c)
	}
}

// bearerKey authenticates an API key presented as the bearer token. A revoked or expired
// key is refused before its secret is hashed: it could not authenticate anyway, and a
// leaked, revoked key must not buy an attacker argon2id work. The answer is the same 401
// whatever the reason, so it tells nothing about a key to someone without its secret.
func (s *Server) bearerKey(ctx context.Context, token string) (store.Key, error) {
	k, code, err := s.lookup(ctx, token)
	if err != nil {
		return store.Key{}, err
	}
	if code == gen.VALID && k.StatusAt(s.now()) == store.StatusActive {
		ok, err := s.matches(ctx, token, &k)
		if err != nil {
			return store.Key{}, err
		}
		if ok {
			return k, nil
		}
	}
	return store.Key{}, unauthorized("the bearer token is not a valid, active key")
}

// isAdmin compares in constant time; comparing digests makes the time independent of
// the token's length.
func (s *Server) isAdmin(token string) bool {
	a := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(a[:], s.adminHash[:]) == 1
}

// lookup finds the key a presented secret names: MALFORMED when the token fails its
// format or checksum (no database work), NOT_FOUND when no key carries its handle.
// It does not check the secret: matches does, once.
func (s *Server) lookup(ctx context.Context, secret string) (store.Key, gen.VerifyCode, error) {
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
	return k, gen.VALID, nil
}

// matches runs the one argon2id verification of a presented secret against the key's
// stored hash. Verifications share a fixed number of slots (one per CPU), so that a flood
// of well-formed tokens costs bounded memory; a request that waits too long for a slot
// answers 503 with Retry-After.
func (s *Server) matches(ctx context.Context, secret string, k *store.Key) (bool, error) {
	if err := s.acquireHashSlot(ctx); err != nil {
		return false, err
	}
	defer s.releaseHashSlot()
	return keys.Verify(secret, k.Hash)
}

// check is lookup followed by matches: the key a secret belongs to, or the code saying
// why there is none. A wrong secret is NOT_FOUND, whatever the state of the key.
func (s *Server) check(ctx context.Context, secret string) (store.Key, gen.VerifyCode, error) {
	k, code, err := s.lookup(ctx, secret)
	if err != nil || code != gen.VALID {
		return store.Key{}, code, err
	}
	ok, err := s.matches(ctx, secret, &k)
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
