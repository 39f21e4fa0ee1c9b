package apikeys

import (
	"slices"
	"time"
)

// Principal is the authenticated caller of a use case: the admin, or the API key presented
// as the bearer token with what that key holds. Its methods are the rules of "who may call
// what" that depend only on the caller and the key at hand; the use cases apply them.
type Principal struct {
	// SubjectID is recorded as creator or revoker of what the caller does.
	SubjectID string
	// Admin may do everything.
	Admin bool
	// KeyID is the bearer key's id; empty for the admin.
	KeyID string
	// TenantID and EnvironmentID, when set, bound what the caller sees and manages.
	TenantID      string
	EnvironmentID string
	// Scopes are what the caller may do and at most what it may grant.
	Scopes []Scope
	// Permissions are at most what the caller may grant (the admin: any).
	Permissions []string
	// ExpiresAt is the end of the caller's own lifetime, nil for none; it may not give a
	// key a longer one.
	ExpiresAt *time.Time
	// Replaced reports that the bearer key has been rotated and lives on in its grace
	// period: it may still read and verify, but write only to itself.
	Replaced bool
}

// AdminPrincipal is the caller holding the admin token.
func AdminPrincipal() *Principal { return &Principal{SubjectID: AdminSubjectID, Admin: true} }

// PrincipalOf is the caller presenting k as its bearer token.
func PrincipalOf(k *Key) *Principal {
	return &Principal{
		SubjectID: k.SubjectID, KeyID: k.ID, TenantID: k.TenantID, EnvironmentID: k.EnvironmentID,
		Scopes: slices.Clone(k.Scopes), Permissions: slices.Clone(k.Permissions), ExpiresAt: k.ExpiresAt, Replaced: k.ReplacedByID != "",
	}
}

// Has reports whether the caller holds scope.
func (p *Principal) Has(scope Scope) bool { return p.Admin || slices.Contains(p.Scopes, scope) }

// MayHold reports whether the caller holds every one of scopes, and so may grant them or
// manage a key that holds them.
func (p *Principal) MayHold(scopes []Scope) bool {
	for _, s := range scopes {
		if !p.Has(s) {
			return false
		}
	}
	return true
}

// Sees reports whether a resource of tenant and environment exists for the caller. One it
// does not see answers ENOTFOUND, exactly as a missing one.
func (p *Principal) Sees(tenantID, environmentID string) bool {
	return (p.TenantID == "" || p.TenantID == tenantID) &&
		(p.EnvironmentID == "" || p.EnvironmentID == environmentID)
}

// SeesKey is Sees for a key.
func (p *Principal) SeesKey(k *Key) bool { return p.Sees(k.TenantID, k.EnvironmentID) }

// MayGrantPermissions reports whether the caller may give a key perms: the admin any, a key
// only those it holds itself (its wildcards cover what they prefix).
func (p *Principal) MayGrantPermissions(perms []string) bool {
	return p.Admin || HoldsPermissions(p.Permissions, perms)
}

// MayGrantLifetime reports whether the caller may give a key the expiry expiresAt (nil: none).
// A caller with an expiry cannot hand out a key that outlives it.
func (p *Principal) MayGrantLifetime(expiresAt *time.Time) bool {
	if p.Admin || p.ExpiresAt == nil {
		return true
	}
	return expiresAt != nil && !expiresAt.After(*p.ExpiresAt)
}

// MayCreate reports, as EFORBIDDEN, why the caller may not create keys: a replaced key is
// being retired, and a fresh credential made with it would let it act on its replacement
// through a key of another subject.
func (p *Principal) MayCreate() error {
	if p.Replaced {
		return errRetiring
	}
	return nil
}

// MayManage reports, as EFORBIDDEN, why the caller may not update, revoke or rotate k, a key
// it sees: k holds scopes the caller lacks, or the caller has been replaced and k is not the
// caller itself. A key in its grace period keeps its power to read and verify, and over itself
// (it may give itself up), but loses every other write: otherwise it could reshape a key that
// then manages its replacement.
func (p *Principal) MayManage(k *Key) error {
	if !p.MayHold(k.Scopes) {
		return Errorf(EFORBIDDEN, "a key cannot manage a key that holds scopes it does not hold itself")
	}
	if !p.MayGrantPermissions(k.Permissions) {
		return Errorf(EFORBIDDEN, "a key cannot manage a key that holds permissions it does not hold itself")
	}
	if p.Replaced && k.ID != p.KeyID {
		return errRetiring
	}
	return nil
}

var errRetiring = Errorf(EFORBIDDEN,
	"a key in its rotation grace period may read and verify, and revoke itself, but not create or manage other keys")
