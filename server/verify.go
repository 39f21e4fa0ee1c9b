package server

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	apikeys "github.com/qs/apikeys"
	"github.com/qs/apikeys/gen"
	"github.com/qs/apikeys/service"
)

// VerifyApiKey checks a presented secret. Every well-formed request gets 200. The route
// itself is verifyRoute; this method completes gen.StrictServerInterface.
func (s *Server) VerifyApiKey(ctx context.Context, req gen.VerifyApiKeyRequestObject) (gen.VerifyApiKeyResponseObject, error) {
	var f apikeys.Fields
	r := verifyRequest(ctx, req.Body, &f)
	if err := f.Err(schemaMismatch); err != nil {
		return nil, err
	}
	return s.verify(ctx, r)
}

const schemaMismatch = "the request does not match the API's schema"

// verifyRoute serves POST /api-keys/verify, the operation backends call on every request
// they serve, without the generic request validator and the generated decoder: the body,
// already read and checked by checkBody (apikeys.CheckJSONText), is decoded once here and
// held to the VerifyApiKeyRequest schema by decodeVerify. On a cache hit the generic path
// cost more than the verification itself (BENCHMARKS.md).
// TestVerifyDecoderAgreesWithTheSpec proves that this route refuses exactly the bodies
// kin-openapi refuses, naming the same members.
func (s *Server) verifyRoute(c echo.Context) error {
	body, _ := c.Get(bodyKey).([]byte)
	ctx := c.Request().Context()
	var f apikeys.Fields
	b := decodeVerify(body, &f)
	var r service.VerifyRequest
	if b != nil {
		r = verifyRequest(ctx, b, &f)
	}
	slices.SortStableFunc(f, func(a, b apikeys.FieldError) int { return strings.Compare(a.Field, b.Field) })
	if err := f.Err(schemaMismatch); err != nil {
		return err
	}
	res, err := s.verify(ctx, r)
	if err != nil {
		return err
	}
	return res.VisitVerifyApiKeyResponse(c.Response())
}

// verifyRequest parses a decoded body into the use case's input, recording what fails in f.
func verifyRequest(ctx context.Context, b *gen.VerifyApiKeyRequest, f *apikeys.Fields) service.VerifyRequest {
	r := service.VerifyRequest{
		Key:           b.Key,
		ClientIP:      remoteIP(ctx),
		TenantID:      parse(f, "/tenantId", b.TenantId, apikeys.ParseTenantID),
		EnvironmentID: parse(f, "/environmentId", b.EnvironmentId, apikeys.ParseEnvironmentID),
	}
	if b.RequiredScopes != nil {
		r.RequiredScopes = parse(f, "/requiredScopes", b.RequiredScopes, parseScopes)
	}
	if b.Permissions != nil {
		r.Permissions = parse(f, "/permissions", b.Permissions, apikeys.ParsePermissionQuery)
	}
	if b.ClientIp != nil {
		addr, err := netip.ParseAddr(*b.ClientIp)
		if err != nil || addr.Zone() != "" {
			f.Add("/clientIp", "must be an IPv4 or IPv6 address")
		}
		r.ClientIP = addr.String()
	}
	return r
}

func (s *Server) verify(ctx context.Context, r service.VerifyRequest) (gen.VerifyApiKeyResponseObject, error) {
	v, err := s.svc.Verify(ctx, principal(ctx), r)
	if err != nil {
		return nil, err
	}
	if v.Key == nil {
		return gen.VerifyApiKey200JSONResponse{Valid: false, Code: gen.VerifyCode(v.Code)}, nil
	}
	k := v.Key
	return gen.VerifyApiKey200JSONResponse{
		Valid: true, Code: gen.VALID, KeyId: &k.ID, SubjectId: &k.SubjectID,
		TenantId: optional(k.TenantID), EnvironmentId: optional(k.EnvironmentID),
		Scopes: genScopes(k.Scopes), ExpiresAt: k.ExpiresAt, Metadata: metadataOf(k.Metadata),
		Enabled: ptrTo(k.Enabled()), Permissions: genPermissions(k.Permissions),
	}, nil
}

// decodeVerify decodes a verify body and holds it to the VerifyApiKeyRequest schema's
// structure: an object with only the declared members, matched by their exact names
// (encoding/json alone would take "KEY" for "key"), none null, each of its declared type
// and length. The values' own rules (the id patterns, the scopes) are the domain's parse
// functions, which verifyRequest runs. It returns nil when the body is not an object.
func decodeVerify(body []byte, f *apikeys.Fields) *gen.VerifyApiKeyRequest {
	if len(bytes.TrimSpace(body)) == 0 {
		f.Add("/", "a request body is required")
		return nil
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(body, &members); err != nil || members == nil {
		f.Add("/", "value must be an object")
		return nil
	}
	str := func(name string, minLen, maxLen int) *string {
		raw, ok := members[name]
		if !ok {
			return nil
		}
		var v string
		if raw[0] != '"' || json.Unmarshal(raw, &v) != nil {
			f.Add("/"+name, "value must be a string")
			return nil
		}
		if n := utf8.RuneCountInString(v); n < minLen || n > maxLen {
			f.Add("/"+name, lengthRule(minLen, maxLen))
			return nil
		}
		return &v
	}
	var req gen.VerifyApiKeyRequest
	if key := str("key", 1, 256); key != nil {
		req.Key = *key
	} else if _, ok := members["key"]; !ok {
		f.Add("/key", `property "key" is missing`)
	}
	req.ClientIp = str("clientIp", 0, 45)
	req.TenantId = str("tenantId", 1, 128)
	req.EnvironmentId = str("environmentId", 1, 128)
	req.Permissions = str("permissions", 1, 1000)
	if raw, ok := members["requiredScopes"]; ok {
		var items []json.RawMessage
		if raw[0] != '[' || json.Unmarshal(raw, &items) != nil {
			f.Add("/requiredScopes", "value must be an array of scopes")
		} else {
			scopes := make(gen.Scopes, 0, len(items))
			for i, item := range items {
				var sc string
				if item[0] != '"' || json.Unmarshal(item, &sc) != nil {
					f.Add("/requiredScopes/"+strconv.Itoa(i), "value must be a string")
					continue
				}
				scopes = append(scopes, gen.Scope(sc))
			}
			if len(scopes) == len(items) {
				req.RequiredScopes = &scopes
			}
		}
	}
	for name := range members {
		switch name {
		case "key", "clientIp", "tenantId", "environmentId", "requiredScopes", "permissions":
		default:
			f.Add("/"+escapePointer(name), "is not a property of this object")
		}
	}
	return &req
}

func lengthRule(minLen, maxLen int) string {
	if minLen > 0 {
		return "must be " + strconv.Itoa(minLen) + " to " + strconv.Itoa(maxLen) + " characters long"
	}
	return "must be at most " + strconv.Itoa(maxLen) + " characters long"
}

// escapePointer escapes a member name as a JSON pointer token (RFC 6901).
func escapePointer(name string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(name)
}
