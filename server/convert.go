package server

import (
	"time"

	"github.com/oapi-codegen/nullable"

	"github.com/qs/apikeys/gen"
	"github.com/qs/apikeys/keys"
	"github.com/qs/apikeys/store"
)

// apiKey renders a stored key with its status at now. It has no secret to render.
func apiKey(k *store.Key, now time.Time) gen.ApiKey {
	return gen.ApiKey{
		Id: k.ID, SubjectId: k.SubjectID, TenantId: optional(k.TenantID), EnvironmentId: optional(k.EnvironmentID),
		Name: k.Name, Description: optional(k.Description), Prefix: k.Prefix, LastFour: k.LastFour,
		HashAlgo: gen.ApiKeyHashAlgo(k.HashAlgo), CreatedBySubjectId: k.CreatedBySubjectID,
		CreatedAt: k.CreatedAt, UpdatedAt: &k.UpdatedAt, ExpiresAt: k.ExpiresAt,
		Status: gen.ApiKeyStatus(k.StatusAt(now)), IntendedUse: optional(k.IntendedUse),
		Metadata: metadataOf(k.Metadata), Scopes: genScopes(k.Scopes),
		LastUsedAt: k.LastUsedAt, LastUsedIp: optional(k.LastUsedIP), RevokedAt: k.RevokedAt,
		RevokedBySubjectId: optional(k.RevokedBySubjectID), RevokedReason: optional(k.RevokedReason),
		RotatedFromId: optional(k.RotatedFromID), ReplacedById: optional(k.ReplacedByID),
	}
}

// createdKey renders a key that was just created, the one time its secret is shown.
func createdKey(k *store.Key, tok keys.Token, now time.Time) gen.CreatedApiKey {
	a := apiKey(k, now)
	return gen.CreatedApiKey{
		Id: a.Id, SubjectId: a.SubjectId, TenantId: a.TenantId, EnvironmentId: a.EnvironmentId,
		Name: a.Name, Description: a.Description, Prefix: a.Prefix, LastFour: a.LastFour,
		SecretKey: tok.Secret(), HashAlgo: gen.CreatedApiKeyHashAlgo(a.HashAlgo),
		CreatedBySubjectId: a.CreatedBySubjectId, CreatedAt: a.CreatedAt, UpdatedAt: a.UpdatedAt,
		ExpiresAt: a.ExpiresAt, Status: a.Status, IntendedUse: a.IntendedUse, Metadata: a.Metadata,
		Scopes: a.Scopes, RotatedFromId: a.RotatedFromId,
	}
}

// metadataOf returns stored metadata as it was sent (compacted), numbers included.
func metadataOf(raw []byte) *gen.Metadata {
	if raw == nil {
		return nil
	}
	m := gen.Metadata(raw)
	return &m
}

func genScopes(ss []string) *gen.Scopes {
	out := make(gen.Scopes, len(ss))
	for i, s := range ss {
		out[i] = gen.Scope(s)
	}
	return &out
}

func scopeStrings(ss gen.Scopes) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = string(s)
	}
	return out
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// nullableValue is the value of a field that may be null, with null as the zero value.
func nullableValue[T any](n nullable.Nullable[T]) T {
	v, _ := n.Get()
	return v
}
