package server

import (
	"context"
	"net/netip"

	apikeys "github.com/qs/apikeys"
	"github.com/qs/apikeys/gen"
	"github.com/qs/apikeys/service"
)

// VerifyApiKey checks a presented secret. Every well-formed request gets 200.
func (s *Server) VerifyApiKey(ctx context.Context, req gen.VerifyApiKeyRequestObject) (gen.VerifyApiKeyResponseObject, error) {
	b := req.Body
	var f apikeys.Fields
	r := service.VerifyRequest{
		Key:           b.Key,
		ClientIP:      remoteIP(ctx),
		TenantID:      parse(&f, "/tenantId", b.TenantId, apikeys.ParseTenantID),
		EnvironmentID: parse(&f, "/environmentId", b.EnvironmentId, apikeys.ParseEnvironmentID),
	}
	if b.RequiredScopes != nil {
		r.RequiredScopes = parse(&f, "/requiredScopes", b.RequiredScopes, parseScopes)
	}
	if b.ClientIp != nil {
		addr, err := netip.ParseAddr(*b.ClientIp)
		if err != nil || addr.Zone() != "" {
			f.Add("/clientIp", "must be an IPv4 or IPv6 address")
		}
		r.ClientIP = addr.String()
	}
	if err := f.Err("the request does not match the API's schema"); err != nil {
		return nil, err
	}
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
	}, nil
}
