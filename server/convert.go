package server

import (
	"encoding/json"
	"net/netip"
	"time"

	"github.com/oapi-codegen/nullable"

	apikeys "github.com/qs/apikeys"
	"github.com/qs/apikeys/gen"
	"github.com/qs/apikeys/service"
)

// This file converts between the generated HTTP types and the domain's. Every value of a
// request is parsed with the domain's one function for its kind (apikeys.Parse*), each
// offending field named by its JSON pointer (body) or name (query); what the validator already
// checked is checked again here at no cost, so the use cases never see an unparsed value
// whatever sits in front of them.

// parse runs a domain parse function on v when v is present, naming field on failure.
func parse[T, V any](f *apikeys.Fields, field string, v *V, fn func(V) (T, error)) T {
	var zero T
	if v == nil {
		return zero
	}
	out, err := fn(*v)
	if err != nil {
		f.Check(field, err)
		return zero
	}
	return out
}

// parseExpiry parses an optional expiry; nil when absent or invalid (then f names it).
func parseExpiry(f *apikeys.Fields, field string, t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v, err := apikeys.ParseExpiry(*t)
	if err != nil {
		f.Check(field, err)
		return nil
	}
	return &v
}

func parseStatus(s gen.ApiKeyStatus) (apikeys.Status, error) { return apikeys.ParseStatus(string(s)) }

func parseScopes(ss gen.Scopes) ([]apikeys.Scope, error) {
	strs := make([]string, len(ss))
	for i, s := range ss {
		strs[i] = string(s)
	}
	return apikeys.ParseScopes(strs)
}

func parseMetadata(raw json.RawMessage) (apikeys.Metadata, error) { return apikeys.ParseMetadata(raw) }

// newKeyRequest parses one create request; at is the JSON pointer of the item ("" or
// "/keys/3").
func newKeyRequest(f *apikeys.Fields, at string, b *gen.CreateApiKeyRequest) service.NewKeyRequest {
	r := service.NewKeyRequest{
		ID:            parse(f, at+"/id", b.Id, apikeys.ParseNewKeyID),
		Name:          parse(f, at+"/name", &b.Name, apikeys.ParseName),
		Description:   parse(f, at+"/description", b.Description, apikeys.ParseDescription),
		TenantID:      parse(f, at+"/tenantId", b.TenantId, apikeys.ParseTenantID),
		EnvironmentID: parse(f, at+"/environmentId", b.EnvironmentId, apikeys.ParseEnvironmentID),
		IntendedUse:   parse(f, at+"/intendedUse", b.IntendedUse, apikeys.ParseIntendedUse),
		Metadata:      parse(f, at+"/metadata", b.Metadata, parseMetadata),
		Scopes:        parse(f, at+"/scopes", b.Scopes, parseScopes),
		Controls: apikeys.Controls{
			Disabled:    b.Enabled != nil && !*b.Enabled, // absent: enabled
			Permissions: parse(f, at+"/permissions", b.Permissions, apikeys.ParsePermissions),
			IPAllowlist: parse(f, at+"/ipAllowlist", b.IpAllowlist, apikeys.ParseIPAllowlist),
		},
	}
	r.ExpiresAt = parseExpiry(f, at+"/expiresAt", b.ExpiresAt)
	return r
}

// keyUpdate parses a PATCH body; null clears an optional field.
func keyUpdate(f *apikeys.Fields, b *gen.UpdateApiKeyRequest) service.KeyUpdate {
	var u service.KeyUpdate
	if b.Name != nil {
		u.Name = service.Some(parse(f, "/name", b.Name, apikeys.ParseName))
	}
	u.Description = parseNullable(f, "/description", b.Description, apikeys.ParseDescription)
	u.IntendedUse = parseNullable(f, "/intendedUse", b.IntendedUse, apikeys.ParseIntendedUse)
	u.Metadata = parseNullable(f, "/metadata", b.Metadata, parseMetadata)
	if b.ExpiresAt.IsSpecified() {
		u.ExpiresAt.Set = true
		if !b.ExpiresAt.IsNull() {
			v := b.ExpiresAt.MustGet()
			u.ExpiresAt.Value = parseExpiry(f, "/expiresAt", &v)
		}
	}
	if b.Scopes != nil {
		u.Scopes = service.Some(parse(f, "/scopes", b.Scopes, parseScopes))
	}
	if b.Enabled != nil {
		u.Enabled = service.Some(*b.Enabled)
	}
	if b.Permissions != nil {
		u.Permissions = service.Some(parse(f, "/permissions", b.Permissions, apikeys.ParsePermissions))
	}
	if b.IpAllowlist != nil {
		u.IPAllowlist = service.Some(parse(f, "/ipAllowlist", b.IpAllowlist, apikeys.ParseIPAllowlist))
	}
	return u
}

// parseNullable parses a field that may be absent (not Set), null (Set, zero) or a value.
func parseNullable[T, V any](f *apikeys.Fields, field string, n nullable.Nullable[V], fn func(V) (T, error)) service.Optional[T] {
	var out service.Optional[T]
	if !n.IsSpecified() {
		return out
	}
	out.Set = true
	if !n.IsNull() {
		v := n.MustGet()
		out.Value = parse(f, field, &v, fn)
	}
	return out
}

// apiKey renders a stored key with its status at now. It has no secret to render.
func apiKey(k *apikeys.Key, now time.Time) gen.ApiKey {
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
		Enabled: ptrTo(k.Enabled()), Permissions: genPermissions(k.Permissions), IpAllowlist: genAllowlist(k.IPAllowlist),
	}
}

func ptrTo[T any](v T) *T { return &v }

// genPermissions renders permissions, [] for none.
func genPermissions(ps []string) *gen.Permissions {
	out := append(gen.Permissions{}, ps...)
	return &out
}

// genAllowlist renders an allowlist in canonical CIDR form, [] for none.
func genAllowlist(ps []netip.Prefix) *gen.IpAllowlist {
	out := make(gen.IpAllowlist, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return &out
}

// createdKey renders a key that was just created, the one time its secret is shown.
func createdKey(c *service.Created, now time.Time) gen.CreatedApiKey {
	a := apiKey(&c.Key, now)
	return gen.CreatedApiKey{
		Id: a.Id, SubjectId: a.SubjectId, TenantId: a.TenantId, EnvironmentId: a.EnvironmentId,
		Name: a.Name, Description: a.Description, Prefix: a.Prefix, LastFour: a.LastFour,
		SecretKey: c.Token.Secret(), HashAlgo: gen.CreatedApiKeyHashAlgo(a.HashAlgo),
		CreatedBySubjectId: a.CreatedBySubjectId, CreatedAt: a.CreatedAt, UpdatedAt: a.UpdatedAt,
		ExpiresAt: a.ExpiresAt, Status: a.Status, IntendedUse: a.IntendedUse, Metadata: a.Metadata,
		Scopes: a.Scopes, RotatedFromId: a.RotatedFromId,
		Enabled: a.Enabled, Permissions: a.Permissions, IpAllowlist: a.IpAllowlist,
	}
}

// metadataOf returns stored metadata as it was sent (compacted), numbers included.
func metadataOf(m apikeys.Metadata) *gen.Metadata {
	if m == nil {
		return nil
	}
	out := gen.Metadata(m)
	return &out
}

func genScopes(ss []apikeys.Scope) *gen.Scopes {
	out := make(gen.Scopes, len(ss))
	for i, s := range ss {
		out[i] = gen.Scope(s)
	}
	return &out
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
