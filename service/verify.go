package service

import (
	"context"

	apikeys "github.com/qs/apikeys"
)

// VerifyRequest is a presented secret and what the calling service requires of it.
type VerifyRequest struct {
	Key            string // the token as presented; not parsed, so MALFORMED is a verdict
	ClientIP       string // recorded as the key's last use
	TenantID       string // "" requires nothing
	EnvironmentID  string // "" requires nothing
	RequiredScopes []apikeys.Scope
	Permissions    apikeys.PermissionQuery // the zero query requires nothing
}

// Verdict is the outcome of a verification; Key is set only when Code is VALID.
type Verdict struct {
	Code apikeys.VerifyCode
	Key  *apikeys.Key
}

// Verify checks a presented secret and answers with a verdict, in the documented order:
// MALFORMED, NOT_FOUND, then the pipeline's (pipeline.go): TENANT_MISMATCH,
// ENVIRONMENT_MISMATCH, REVOKED, EXPIRED, DISABLED, IP_NOT_ALLOWED, INSUFFICIENT_SCOPES,
// INSUFFICIENT_PERMISSIONS. A wrong secret is NOT_FOUND whatever the state of the key, and so is
// a key outside the caller's tenant (environment): nothing about a key is told to someone who
// does not hold its secret, nor confirmed to a caller who may not see it.
// EFORBIDDEN, EUNAVAILABLE.
func (s *Service) Verify(ctx context.Context, p *apikeys.Principal, r VerifyRequest) (Verdict, error) {
	if err := authorize(p, OpVerifyKey); err != nil {
		return Verdict{}, err
	}
	k, code, err := s.verifier.check(ctx, r.Key)
	if err != nil {
		return Verdict{}, err
	}
	if code != "" {
		s.verdicts.add(ViaVerify, code)
		return Verdict{Code: code}, nil
	}
	now := s.now()
	code = run(ViaVerify, &input{p: p, k: &k, now: now, ip: r.ClientIP, tenantID: r.TenantID,
		environmentID: r.EnvironmentID, scopes: r.RequiredScopes, permissions: r.Permissions})
	s.verdicts.add(ViaVerify, code)
	if code != apikeys.CodeValid {
		return Verdict{Code: code}, nil
	}
	s.usage.record(k.ID, now, r.ClientIP)
	return Verdict{Code: apikeys.CodeValid, Key: &k}, nil
}
