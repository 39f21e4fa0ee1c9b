package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sync/errgroup"

	"github.com/qs/apikeys/gen"
	"github.com/qs/apikeys/keys"
	"github.com/qs/apikeys/store"
)

// maxMetadataBytes bounds a key's metadata once serialised; the spec also caps its
// number of properties.
const maxMetadataBytes = 4096

// CreateApiKey creates a key and its subject.
func (s *Server) CreateApiKey(ctx context.Context, req gen.CreateApiKeyRequestObject) (gen.CreateApiKeyResponseObject, error) {
	who, now := callerFrom(ctx), s.now()
	if err := s.checkCreate(who, req.Body, "", now); err != nil {
		return nil, err
	}
	created, err := s.createKeys(ctx, who, []gen.CreateApiKeyRequest{*req.Body}, now)
	if err != nil {
		return nil, err
	}
	return gen.CreateApiKey201JSONResponse(created[0]), nil
}

// BatchCreateApiKeys creates every requested key or none.
func (s *Server) BatchCreateApiKeys(ctx context.Context, req gen.BatchCreateApiKeysRequestObject) (gen.BatchCreateApiKeysResponseObject, error) {
	who, now := callerFrom(ctx), s.now()
	seen := map[string]int{}
	var fields []gen.FieldError
	for i := range req.Body.Keys {
		item := &req.Body.Keys[i]
		pointer := "/keys/" + strconv.Itoa(i)
		if err := s.checkCreate(who, item, pointer, now); err != nil {
			var p *problem
			if errors.As(err, &p) && p.status == 400 {
				fields = append(fields, p.fields...)
				continue
			}
			return nil, err
		}
		if item.Id != nil {
			if j, dup := seen[*item.Id]; dup {
				fields = append(fields, fieldError(gen.Body, pointer+"/id", fmt.Sprintf("repeats the id of /keys/%d", j)))
			}
			seen[*item.Id] = i
		}
	}
	if len(fields) > 0 {
		return nil, badRequest("the batch was rejected; no key was created", fields...)
	}
	created, err := s.createKeys(ctx, who, req.Body.Keys, now)
	if err != nil {
		return nil, err
	}
	return gen.BatchCreateApiKeys201JSONResponse(created), nil
}

// checkCreate applies the rules the schema cannot express to one create request,
// naming fields under pointer, and normalises what it checked (expiry in UTC to the
// microsecond, metadata compacted) so that the response shows what is stored.
func (s *Server) checkCreate(who *caller, r *gen.CreateApiKeyRequest, pointer string, now time.Time) error {
	var fields []gen.FieldError
	if r.ExpiresAt != nil {
		t, bad := expiry(pointer+"/expiresAt", *r.ExpiresAt, now)
		if bad != nil {
			fields = append(fields, *bad)
		}
		r.ExpiresAt = &t
	}
	if r.Metadata != nil {
		m, bad := cleanMetadata(pointer+"/metadata", *r.Metadata)
		if bad != nil {
			fields = append(fields, *bad)
		}
		r.Metadata = &m
	}
	if len(fields) > 0 {
		return badRequest("the request was rejected; nothing was created", fields...)
	}
	if who.tenantID != "" && r.TenantId != nil && *r.TenantId != who.tenantID {
		return forbidden("this key may only create keys for its own tenant")
	}
	if who.environmentID != "" && r.EnvironmentId != nil && *r.EnvironmentId != who.environmentID {
		return forbidden("this key may only create keys for its own environment")
	}
	if r.Scopes != nil && !who.mayHold(scopeStrings(*r.Scopes)) {
		return forbidden("a key cannot grant scopes it does not hold")
	}
	return nil
}

// expiry normalises a requested expiry to what the databases keep (UTC, microseconds)
// and checks that it lies in the future and within four-digit years.
func expiry(field string, t, now time.Time) (time.Time, *gen.FieldError) {
	t = t.UTC().Truncate(time.Microsecond)
	if y := t.Year(); y < 1 || y > 9999 {
		f := fieldError(gen.Body, field, "must fall in the years 0001 to 9999 in UTC")
		return t, &f
	}
	if !t.After(now) {
		f := fieldError(gen.Body, field, "must be in the future")
		return t, &f
	}
	return t, nil
}

// cleanMetadata compacts a metadata object and checks its size once serialised, which
// the schema cannot express. Otherwise it is kept as sent, numbers included.
func cleanMetadata(field string, raw json.RawMessage) (json.RawMessage, *gen.FieldError) {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		f := fieldError(gen.Body, field, "must be a JSON object")
		return nil, &f
	}
	if buf.Len() > maxMetadataBytes {
		f := fieldError(gen.Body, field, fmt.Sprintf("must serialise to at most %d bytes", maxMetadataBytes))
		return nil, &f
	}
	return buf.Bytes(), nil
}

// minted is a new token and the key row that stores its hash.
type minted struct {
	token keys.Token
	key   store.Key
}

// mint generates a token and hashes it. Hashing is the slow part of creating a key.
func (s *Server) mint(ctx context.Context, k store.Key) (minted, error) {
	tok, err := keys.Generate(s.prefix)
	if err != nil {
		return minted{}, err
	}
	if err := s.acquireHashSlot(ctx); err != nil {
		return minted{}, err
	}
	defer s.releaseHashSlot()
	hash, err := keys.Hash(tok.Secret(), s.hash)
	if err != nil {
		return minted{}, err
	}
	k.Handle, k.Prefix, k.LastFour, k.Hash, k.HashAlgo = tok.Handle(), tok.DisplayPrefix(), tok.LastFour(), hash, "argon2id"
	return minted{token: tok, key: k}, nil
}

// mintAll mints in parallel; the hash slots bound how many run at once.
func (s *Server) mintAll(ctx context.Context, ks []store.Key) ([]minted, error) {
	out := make([]minted, len(ks))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(cap(s.hashSlots))
	for i := range ks {
		g.Go(func() (err error) {
			out[i], err = s.mint(gctx, ks[i])
			return err
		})
	}
	return out, g.Wait()
}

func (s *Server) createKeys(ctx context.Context, who *caller, reqs []gen.CreateApiKeyRequest, now time.Time) ([]gen.CreatedApiKey, error) {
	rows := make([]store.Key, len(reqs))
	for i, r := range reqs {
		id := "apk_" + uuid.Must(uuid.NewV7()).String()
		if r.Id != nil {
			id = *r.Id
		}
		k := store.Key{
			ID: id, SubjectID: "subject_" + uuid.Must(uuid.NewV7()).String(),
			TenantID: deref(r.TenantId), EnvironmentID: deref(r.EnvironmentId),
			Name: r.Name, Description: deref(r.Description), CreatedBySubjectID: who.subjectID,
			CreatedAt: now, UpdatedAt: now, ExpiresAt: r.ExpiresAt, IntendedUse: deref(r.IntendedUse),
			Scopes: []string{},
		}
		// A bound caller's keys stay inside its tenant and environment.
		if k.TenantID == "" {
			k.TenantID = who.tenantID
		}
		if k.EnvironmentID == "" {
			k.EnvironmentID = who.environmentID
		}
		if r.Scopes != nil {
			k.Scopes = scopeStrings(*r.Scopes)
		}
		if r.Metadata != nil {
			k.Metadata = *r.Metadata // compacted by checkCreate
		}
		rows[i] = k
	}
	ms, err := s.mintAll(ctx, rows)
	if err != nil {
		return nil, err
	}
	news := make([]store.NewKey, len(ms))
	for i, m := range ms {
		news[i] = store.NewKey{Key: m.key, NewSubject: true}
	}
	if err := s.store.CreateKeys(ctx, news); err != nil {
		return nil, err
	}
	out := make([]gen.CreatedApiKey, len(ms))
	for i, m := range ms {
		out[i] = createdKey(&m.key, m.token, now)
	}
	return out, nil
}

// ListApiKeys lists keys newest first, one page at a time.
func (s *Server) ListApiKeys(ctx context.Context, req gen.ListApiKeysRequestObject) (gen.ListApiKeysResponseObject, error) {
	who, p := callerFrom(ctx), req.Params
	f := store.Filter{
		TenantID: deref(p.TenantId), EnvironmentID: deref(p.EnvironmentId), SubjectID: deref(p.SubjectId),
		CreatedBySubjectID: deref(p.CreatedBySubjectId), IntendedUse: deref(p.IntendedUse),
		Now: s.now(), Limit: 50,
	}
	if p.Status != nil {
		f.Status = store.Status(*p.Status)
	}
	if p.Limit != nil {
		f.Limit = *p.Limit
	}
	if p.Cursor != nil {
		c, err := store.ParseCursor(*p.Cursor)
		if err != nil {
			return nil, badRequest("the cursor is not valid; copy it from a Link header", fieldError(gen.Query, "cursor", "not a cursor this server issued"))
		}
		f.After = &c
	}
	// A bound caller's view is its tenant (environment); asking for another one finds nothing.
	if who.tenantID != "" {
		if f.TenantID != "" && f.TenantID != who.tenantID {
			return gen.ListApiKeys200JSONResponse{Body: []gen.ApiKey{}}, nil
		}
		f.TenantID = who.tenantID
	}
	if who.environmentID != "" {
		if f.EnvironmentID != "" && f.EnvironmentID != who.environmentID {
			return gen.ListApiKeys200JSONResponse{Body: []gen.ApiKey{}}, nil
		}
		f.EnvironmentID = who.environmentID
	}
	ks, next, err := s.store.ListKeys(ctx, f)
	if err != nil {
		return nil, err
	}
	resp := gen.ListApiKeys200JSONResponse{Body: make([]gen.ApiKey, len(ks))}
	for i := range ks {
		resp.Body[i] = apiKey(&ks[i], f.Now)
	}
	if next != nil {
		q := url.Values{}
		set := func(name string, v *string) {
			if v != nil {
				q.Set(name, *v)
			}
		}
		set("tenantId", p.TenantId)
		set("environmentId", p.EnvironmentId)
		set("subjectId", p.SubjectId)
		set("createdBySubjectId", p.CreatedBySubjectId)
		set("intendedUse", p.IntendedUse)
		if p.Status != nil {
			q.Set("status", string(*p.Status))
		}
		q.Set("limit", strconv.Itoa(f.Limit))
		q.Set("cursor", next.String())
		link := fmt.Sprintf(`</api-keys?%s>; rel="next"`, q.Encode())
		resp.Headers.Link = &link
	}
	return resp, nil
}

// GetApiKey returns one key.
func (s *Server) GetApiKey(ctx context.Context, req gen.GetApiKeyRequestObject) (gen.GetApiKeyResponseObject, error) {
	k, err := s.visibleKey(ctx, callerFrom(ctx), req.Id)
	if err != nil {
		return nil, err
	}
	return gen.GetApiKey200JSONResponse(apiKey(&k, s.now())), nil
}

// errNoKey answers for a key that does not exist or that the caller may not see.
var errNoKey = notFound("no API key with this id")

// visibleKey returns the key if the caller may see it, errNoKey otherwise.
func (s *Server) visibleKey(ctx context.Context, who *caller, id string) (store.Key, error) {
	k, err := s.store.GetKey(ctx, id)
	if err == nil && !who.sees(k.TenantID, k.EnvironmentID) {
		err = store.ErrNotFound
	}
	if errors.Is(err, store.ErrNotFound) {
		return store.Key{}, errNoKey
	}
	return k, err
}

// updateVisible is store.UpdateKey for a key the caller may see: an invisible key is
// errNoKey, exactly like a missing one, and fn never runs on it.
func (s *Server) updateVisible(ctx context.Context, who *caller, id string, fn func(k *store.Key) error) (store.Key, error) {
	k, err := s.store.UpdateKey(ctx, id, func(k *store.Key) error {
		if !who.sees(k.TenantID, k.EnvironmentID) {
			return errNoKey
		}
		return fn(k)
	})
	if errors.Is(err, store.ErrNotFound) {
		return store.Key{}, errNoKey
	}
	return k, err
}

// UpdateApiKey changes the fields present in the body; null clears an optional one.
func (s *Server) UpdateApiKey(ctx context.Context, req gen.UpdateApiKeyRequestObject) (gen.UpdateApiKeyResponseObject, error) {
	who, now, b := callerFrom(ctx), s.now(), req.Body
	var fields []gen.FieldError
	var expires *time.Time
	if b.ExpiresAt.IsSpecified() && !b.ExpiresAt.IsNull() {
		t, bad := expiry("/expiresAt", b.ExpiresAt.MustGet(), now)
		if bad != nil {
			fields = append(fields, *bad)
		}
		expires = &t
	}
	var metadata json.RawMessage
	if b.Metadata.IsSpecified() && !b.Metadata.IsNull() {
		var bad *gen.FieldError
		if metadata, bad = cleanMetadata("/metadata", b.Metadata.MustGet()); bad != nil {
			fields = append(fields, *bad)
		}
	}
	if len(fields) > 0 {
		return nil, badRequest("the request was rejected; nothing was changed", fields...)
	}
	if b.Scopes != nil && !who.mayHold(scopeStrings(*b.Scopes)) {
		return nil, forbidden("a key cannot grant scopes it does not hold")
	}
	k, err := s.updateVisible(ctx, who, req.Id, func(k *store.Key) error {
		if !who.mayHold(k.Scopes) {
			return forbidden("a key cannot change a key that holds scopes it does not hold itself")
		}
		if b.ExpiresAt.IsSpecified() && !who.admin && k.SubjectID == who.subjectID {
			return forbidden("a key cannot change its own expiry")
		}
		if k.RevokedAt != nil {
			return conflict("a revoked key cannot be changed")
		}
		if b.ExpiresAt.IsSpecified() && k.ReplacedByID != "" {
			return conflict("this key has been rotated; its expiry is the end of its grace period")
		}
		if b.Name != nil {
			k.Name = *b.Name
		}
		if b.Description.IsSpecified() {
			k.Description = nullableValue(b.Description)
		}
		if b.IntendedUse.IsSpecified() {
			k.IntendedUse = nullableValue(b.IntendedUse)
		}
		if b.Metadata.IsSpecified() {
			k.Metadata = metadata // nil when null
		}
		if b.ExpiresAt.IsSpecified() {
			k.ExpiresAt = expires // nil when null
		}
		if b.Scopes != nil {
			k.Scopes = scopeStrings(*b.Scopes)
		}
		k.UpdatedAt = now
		return nil
	})
	if err != nil {
		return nil, err
	}
	return gen.UpdateApiKey200JSONResponse(apiKey(&k, now)), nil
}

// RevokeApiKey revokes a key; revoking it again changes nothing.
func (s *Server) RevokeApiKey(ctx context.Context, req gen.RevokeApiKeyRequestObject) (gen.RevokeApiKeyResponseObject, error) {
	who, now := callerFrom(ctx), s.now()
	k, err := s.updateVisible(ctx, who, req.Id, func(k *store.Key) error {
		if k.RevokedAt != nil {
			return nil
		}
		k.RevokedAt, k.RevokedBySubjectID, k.UpdatedAt = &now, who.subjectID, now
		if req.Body != nil && req.Body.Reason != nil {
			k.RevokedReason = *req.Body.Reason
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return gen.RevokeApiKey200JSONResponse(apiKey(&k, now)), nil
}

// RotateApiKey issues a replacement key for the same subject and retires the old one,
// at once or after a grace period.
func (s *Server) RotateApiKey(ctx context.Context, req gen.RotateApiKeyRequestObject) (gen.RotateApiKeyResponseObject, error) {
	who, now := callerFrom(ctx), s.now()
	var body gen.RotateApiKeyRequest
	if req.Body != nil {
		body = *req.Body
	}
	if body.ExpiresAt != nil {
		t, bad := expiry("/expiresAt", *body.ExpiresAt, now)
		if bad != nil {
			return nil, badRequest("the request was rejected; nothing was changed", *bad)
		}
		body.ExpiresAt = &t
	}
	// Check visibility and state before paying for a hash; they are checked again
	// under the row lock, where they count.
	old, err := s.visibleKey(ctx, who, req.Id)
	if err != nil {
		return nil, err
	}
	if err := rotatable(who, &old, now); err != nil {
		return nil, err
	}
	m, err := s.mint(ctx, store.Key{ID: "apk_" + uuid.Must(uuid.NewV7()).String()})
	if err != nil {
		return nil, err
	}
	_, repl, err := s.store.RotateKey(ctx, req.Id, func(o *store.Key) (store.Key, error) {
		if !who.sees(o.TenantID, o.EnvironmentID) {
			return store.Key{}, errNoKey
		}
		if err := rotatable(who, o, now); err != nil {
			return store.Key{}, err
		}
		n := m.key
		n.SubjectID, n.TenantID, n.EnvironmentID = o.SubjectID, o.TenantID, o.EnvironmentID
		n.Name, n.Description, n.IntendedUse = o.Name, o.Description, o.IntendedUse
		n.Metadata, n.Scopes, n.ExpiresAt = o.Metadata, o.Scopes, o.ExpiresAt
		n.CreatedBySubjectID, n.CreatedAt, n.UpdatedAt, n.RotatedFromID = who.subjectID, now, now, o.ID
		if body.Name != nil {
			n.Name = *body.Name
		}
		if body.ExpiresAt != nil {
			n.ExpiresAt = body.ExpiresAt
		}
		o.ReplacedByID, o.UpdatedAt = n.ID, now
		grace := time.Duration(deref(body.GracePeriodSeconds)) * time.Second
		if grace == 0 {
			o.RevokedAt, o.RevokedBySubjectID, o.RevokedReason = &now, who.subjectID, "rotated"
		} else if end := now.Add(grace); o.ExpiresAt == nil || end.Before(*o.ExpiresAt) {
			o.ExpiresAt = &end
		}
		return n, nil
	})
	if err != nil {
		return nil, err
	}
	return gen.RotateApiKey201JSONResponse(createdKey(&repl, m.token, now)), nil
}

func rotatable(who *caller, k *store.Key, now time.Time) error {
	switch {
	case k.ReplacedByID != "":
		return conflict("this key has already been rotated")
	case k.StatusAt(now) == store.StatusRevoked:
		return conflict("a revoked key cannot be rotated")
	case k.StatusAt(now) == store.StatusExpired:
		return conflict("an expired key cannot be rotated; create a new key")
	case !who.mayHold(k.Scopes):
		return forbidden("a key cannot rotate a key that holds scopes it does not hold itself")
	}
	return nil
}

// VerifyApiKey checks a presented secret. Every well-formed request gets 200.
func (s *Server) VerifyApiKey(ctx context.Context, req gen.VerifyApiKeyRequestObject) (gen.VerifyApiKeyResponseObject, error) {
	who, b := callerFrom(ctx), req.Body
	ip := who.remoteIP
	if b.ClientIp != nil {
		addr, err := netip.ParseAddr(*b.ClientIp)
		if err != nil || addr.Zone() != "" {
			return nil, badRequest("the request does not match the API's schema", fieldError(gen.Body, "/clientIp", "must be an IPv4 or IPv6 address"))
		}
		ip = addr.String()
	}
	k, code, err := s.check(ctx, b.Key)
	if err != nil {
		return nil, err
	}
	now := s.now()
	if code == gen.VALID {
		code = s.verdict(who, b, &k, now)
	}
	if code != gen.VALID {
		return gen.VerifyApiKey200JSONResponse{Valid: false, Code: code}, nil
	}
	s.usage.record(k.ID, now, ip)
	res := gen.VerifyResult{
		Valid: true, Code: gen.VALID, KeyId: &k.ID, SubjectId: &k.SubjectID,
		TenantId: optional(k.TenantID), EnvironmentId: optional(k.EnvironmentID),
		Scopes: genScopes(k.Scopes), ExpiresAt: k.ExpiresAt, Metadata: metadataOf(k.Metadata),
	}
	return gen.VerifyApiKey200JSONResponse(res), nil
}

// verdict applies, in the documented order, the checks after the secret matched. A
// caller bound to a tenant (environment) can only vouch for keys of that tenant.
func (s *Server) verdict(who *caller, b *gen.VerifyApiKeyRequest, k *store.Key, now time.Time) gen.VerifyCode {
	if (b.TenantId != nil && *b.TenantId != k.TenantID) || (who.tenantID != "" && who.tenantID != k.TenantID) {
		return gen.TENANTMISMATCH
	}
	if (b.EnvironmentId != nil && *b.EnvironmentId != k.EnvironmentID) || (who.environmentID != "" && who.environmentID != k.EnvironmentID) {
		return gen.ENVIRONMENTMISMATCH
	}
	if code := statusCode(k.StatusAt(now)); code != gen.VALID {
		return code
	}
	if b.RequiredScopes != nil {
		for _, sc := range *b.RequiredScopes {
			if !slices.Contains(k.Scopes, string(sc)) {
				return gen.INSUFFICIENTSCOPES
			}
		}
	}
	return gen.VALID
}

// GetSubject returns the subject behind a key.
func (s *Server) GetSubject(ctx context.Context, req gen.GetSubjectRequestObject) (gen.GetSubjectResponseObject, error) {
	who := callerFrom(ctx)
	sub, err := s.store.GetSubject(ctx, req.Id)
	if err == nil && !who.sees(sub.TenantID, sub.EnvironmentID) {
		err = store.ErrNotFound
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound("no subject with this id")
	}
	if err != nil {
		return nil, err
	}
	return gen.GetSubject200JSONResponse{
		Id: sub.ID, Type: gen.SubjectType(sub.Type), CreatedAt: sub.CreatedAt,
		TenantId: optional(sub.TenantID), EnvironmentId: optional(sub.EnvironmentID),
	}, nil
}

// Healthz answers while the process runs.
func (s *Server) Healthz(context.Context, gen.HealthzRequestObject) (gen.HealthzResponseObject, error) {
	return gen.Healthz200JSONResponse{Status: gen.Ok}, nil
}

// Readyz answers 200 when the database does, 503 otherwise.
func (s *Server) Readyz(ctx context.Context, _ gen.ReadyzRequestObject) (gen.ReadyzResponseObject, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		s.log.Warn("readiness: database does not answer", "err", err)
		return nil, &problem{status: 503, detail: "the database does not answer"}
	}
	return gen.Readyz200JSONResponse{Status: gen.Ok}, nil
}

// GetOpenApiSpec serves the document the server was built from.
func (s *Server) GetOpenApiSpec(context.Context, gen.GetOpenApiSpecRequestObject) (gen.GetOpenApiSpecResponseObject, error) {
	return gen.GetOpenApiSpec200ApplicationyamlResponse{Body: bytes.NewReader(s.spec), ContentLength: int64(len(s.spec))}, nil
}
