package server

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"time"

	apikeys "github.com/qs/apikeys"
	"github.com/qs/apikeys/gen"
	"github.com/qs/apikeys/service"
)

// CreateApiKey creates a key and its subject.
func (s *Server) CreateApiKey(ctx context.Context, req gen.CreateApiKeyRequestObject) (gen.CreateApiKeyResponseObject, error) {
	var f apikeys.Fields
	r := newKeyRequest(&f, "", req.Body)
	if err := f.Err("the request was rejected; nothing was created"); err != nil {
		return nil, err
	}
	c, err := s.svc.CreateKey(ctx, principal(ctx), r)
	if err != nil {
		return nil, err
	}
	return gen.CreateApiKey201JSONResponse(createdKey(&c, c.Key.CreatedAt)), nil
}

// BatchCreateApiKeys creates every requested key or none.
func (s *Server) BatchCreateApiKeys(ctx context.Context, req gen.BatchCreateApiKeysRequestObject) (gen.BatchCreateApiKeysResponseObject, error) {
	var f apikeys.Fields
	rs := make([]service.NewKeyRequest, len(req.Body.Keys))
	for i := range req.Body.Keys {
		rs[i] = newKeyRequest(&f, "/keys/"+strconv.Itoa(i), &req.Body.Keys[i])
	}
	if err := f.Err("the batch was rejected; no key was created"); err != nil {
		return nil, err
	}
	cs, err := s.svc.CreateKeys(ctx, principal(ctx), rs)
	if err != nil {
		return nil, err
	}
	out := make(gen.BatchCreateApiKeys201JSONResponse, len(cs))
	for i := range cs {
		out[i] = createdKey(&cs[i], cs[i].Key.CreatedAt)
	}
	return out, nil
}

// ListApiKeys lists keys newest first, one page at a time.
func (s *Server) ListApiKeys(ctx context.Context, req gen.ListApiKeysRequestObject) (gen.ListApiKeysResponseObject, error) {
	p := req.Params
	var f apikeys.Fields
	r := service.ListRequest{
		TenantID:           parse(&f, "tenantId", p.TenantId, apikeys.ParseTenantID),
		EnvironmentID:      parse(&f, "environmentId", p.EnvironmentId, apikeys.ParseEnvironmentID),
		SubjectID:          parse(&f, "subjectId", p.SubjectId, apikeys.ParseSubjectID),
		CreatedBySubjectID: parse(&f, "createdBySubjectId", p.CreatedBySubjectId, apikeys.ParseSubjectID),
		IntendedUse:        parse(&f, "intendedUse", p.IntendedUse, apikeys.ParseIntendedUse),
		Status:             parse(&f, "status", p.Status, parseStatus),
		Limit:              deref(p.Limit),
	}
	if p.Cursor != nil {
		c, err := apikeys.ParseCursor(*p.Cursor)
		if err != nil {
			f.Add("cursor", "not a cursor this server issued; copy it from a Link header")
		}
		r.After = &c
	}
	if err := f.Err("the query string was rejected"); err != nil {
		return nil, err
	}
	page, err := s.svc.ListKeys(ctx, principal(ctx), r)
	if err != nil {
		return nil, err
	}
	resp := gen.ListApiKeys200JSONResponse{Body: make([]gen.ApiKey, len(page.Keys))}
	for i := range page.Keys {
		resp.Body[i] = apiKey(&page.Keys[i], page.At)
	}
	if page.Next != nil {
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
		q.Set("limit", strconv.Itoa(page.Limit))
		q.Set("cursor", page.Next.String())
		link := fmt.Sprintf(`</api-keys?%s>; rel="next"`, q.Encode())
		resp.Headers.Link = &link
	}
	return resp, nil
}

// GetApiKey returns one key.
func (s *Server) GetApiKey(ctx context.Context, req gen.GetApiKeyRequestObject) (gen.GetApiKeyResponseObject, error) {
	k, err := s.svc.GetKey(ctx, principal(ctx), req.Id)
	if err != nil {
		return nil, err
	}
	return gen.GetApiKey200JSONResponse(apiKey(&k, s.svc.Now())), nil
}

// UpdateApiKey changes the fields present in the body; null clears an optional one.
func (s *Server) UpdateApiKey(ctx context.Context, req gen.UpdateApiKeyRequestObject) (gen.UpdateApiKeyResponseObject, error) {
	var f apikeys.Fields
	u := keyUpdate(&f, req.Body)
	if err := f.Err("the request was rejected; nothing was changed"); err != nil {
		return nil, err
	}
	k, err := s.svc.UpdateKey(ctx, principal(ctx), req.Id, u)
	if err != nil {
		return nil, err
	}
	return gen.UpdateApiKey200JSONResponse(apiKey(&k, k.UpdatedAt)), nil
}

// RevokeApiKey revokes a key; revoking it again changes nothing.
func (s *Server) RevokeApiKey(ctx context.Context, req gen.RevokeApiKeyRequestObject) (gen.RevokeApiKeyResponseObject, error) {
	var f apikeys.Fields
	var reason string
	if req.Body != nil {
		reason = parse(&f, "/reason", req.Body.Reason, apikeys.ParseReason)
	}
	if err := f.Err("the request was rejected; nothing was changed"); err != nil {
		return nil, err
	}
	k, err := s.svc.RevokeKey(ctx, principal(ctx), req.Id, reason)
	if err != nil {
		return nil, err
	}
	return gen.RevokeApiKey200JSONResponse(apiKey(&k, s.svc.Now())), nil
}

// RotateApiKey issues a replacement key for the same subject and retires the old one, at
// once or after a grace period.
func (s *Server) RotateApiKey(ctx context.Context, req gen.RotateApiKeyRequestObject) (gen.RotateApiKeyResponseObject, error) {
	var f apikeys.Fields
	var r service.RotateRequest
	if b := req.Body; b != nil {
		r.Name = parse(&f, "/name", b.Name, apikeys.ParseName)
		r.ExpiresAt = parseExpiry(&f, "/expiresAt", b.ExpiresAt)
		if g := deref(b.GracePeriodSeconds); g < 0 || g > int(service.MaxGracePeriod/time.Second) {
			f.Add("/gracePeriodSeconds", "must be 0 to 2592000 seconds")
		} else {
			r.GracePeriod = time.Duration(g) * time.Second
		}
	}
	if err := f.Err("the request was rejected; nothing was changed"); err != nil {
		return nil, err
	}
	c, err := s.svc.RotateKey(ctx, principal(ctx), req.Id, r)
	if err != nil {
		return nil, err
	}
	return gen.RotateApiKey201JSONResponse(createdKey(&c, c.Key.CreatedAt)), nil
}
