package service

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sync/errgroup"

	apikeys "github.com/qs/apikeys"
	"github.com/qs/apikeys/keys"
)

// NewKeyRequest asks for a key. Its values are already parsed by the apikeys.Parse*
// functions (text, scopes, metadata, expiry, a client-supplied id); the rules that depend on
// the caller and the clock are CreateKey's.
type NewKeyRequest struct {
	ID            string // "" mints one; otherwise passed through apikeys.ParseNewKeyID
	Name          string
	Description   string
	TenantID      string // "" inherits the caller's
	EnvironmentID string // "" inherits the caller's
	ExpiresAt     *time.Time
	IntendedUse   string
	Metadata      apikeys.Metadata
	Scopes        []apikeys.Scope
	Controls      apikeys.Controls // enabled, permissions, IP allowlist: parsed
}

// Created is a key that was just created and the token it was created for: the only time
// the token exists outside the client.
type Created struct {
	Key   apikeys.Key
	Token keys.Token
}

// CreateKey creates a key and its subject in one transaction. EINVALID, EFORBIDDEN,
// ECONFLICT, EUNAVAILABLE.
func (s *Service) CreateKey(ctx context.Context, p *apikeys.Principal, r NewKeyRequest) (Created, error) {
	created, err := s.createKeys(ctx, p, OpCreateKey, []NewKeyRequest{r}, func(int) string { return "" })
	if err != nil {
		return Created{}, err
	}
	return created[0], nil
}

// CreateKeys creates every requested key or none. Field errors are named under
// /keys/{index}. EINVALID, EFORBIDDEN, ECONFLICT, EUNAVAILABLE.
func (s *Service) CreateKeys(ctx context.Context, p *apikeys.Principal, rs []NewKeyRequest) ([]Created, error) {
	return s.createKeys(ctx, p, OpBatchCreate, rs, func(i int) string { return fmt.Sprintf("/keys/%d", i) })
}

func (s *Service) createKeys(ctx context.Context, p *apikeys.Principal, op Op, rs []NewKeyRequest, at func(int) string) ([]Created, error) {
	if err := authorize(p, op); err != nil {
		return nil, err
	}
	now := s.now()
	// Every invalid field first, across the batch; then what the caller may not do.
	var fields apikeys.Fields
	seen := map[string]int{}
	for i, r := range rs {
		if r.ExpiresAt != nil && !r.ExpiresAt.After(now) {
			fields.Add(at(i)+"/expiresAt", "must be in the future")
		}
		if r.ID != "" {
			if j, dup := seen[r.ID]; dup {
				fields.Add(at(i)+"/id", fmt.Sprintf("repeats the id of /keys/%d", j))
			}
			seen[r.ID] = i
		}
	}
	if err := fields.Err("the request was rejected; no key was created"); err != nil {
		return nil, err
	}
	if err := mayCreate(p, rs); err != nil {
		return nil, err
	}
	rows := make([]apikeys.Key, len(rs))
	for i, r := range rs {
		rows[i] = newKey(p, r, now)
	}
	minted, err := s.mintAll(ctx, rows)
	if err != nil {
		return nil, err
	}
	// Hashing took a while: the rules are applied again to the caller as it is now, and
	// the keys are stamped with the time they are written.
	if p, err = s.fresh(ctx, p, op); err != nil {
		return nil, err
	}
	if err := mayCreate(p, rs); err != nil {
		return nil, err
	}
	now = s.now()
	news := make([]apikeys.NewKey, len(minted))
	for i := range minted {
		k := &minted[i].Key
		if k.ExpiresAt != nil && !k.ExpiresAt.After(now) {
			return nil, apikeys.Invalid("the request was rejected; no key was created",
				apikeys.FieldError{Field: at(i) + "/expiresAt", Detail: "must be in the future"})
		}
		k.CreatedAt, k.UpdatedAt = now, now
		news[i] = apikeys.NewKey{Key: *k, NewSubject: true}
	}
	if err := s.store.CreateKeys(ctx, news); err != nil {
		return nil, err
	}
	return minted, nil
}

// mayCreate applies the rules of what a caller may create: not while it is being retired,
// nothing outside its tenant and environment, no scope it lacks, no lifetime longer than its
// own. EFORBIDDEN.
func mayCreate(p *apikeys.Principal, rs []NewKeyRequest) error {
	if err := p.MayCreate(); err != nil {
		return err
	}
	for _, r := range rs {
		if p.TenantID != "" && r.TenantID != "" && r.TenantID != p.TenantID {
			return apikeys.Errorf(apikeys.EFORBIDDEN, "this key may only create keys for its own tenant")
		}
		if p.EnvironmentID != "" && r.EnvironmentID != "" && r.EnvironmentID != p.EnvironmentID {
			return apikeys.Errorf(apikeys.EFORBIDDEN, "this key may only create keys for its own environment")
		}
		if !p.MayHold(r.Scopes) {
			return apikeys.Errorf(apikeys.EFORBIDDEN, "a key cannot grant scopes it does not hold")
		}
		if !p.MayGrantPermissions(r.Controls.Permissions) {
			return errPermissions
		}
		if !p.MayGrantLifetime(r.ExpiresAt) {
			return errLifetime
		}
	}
	return nil
}

// newKey is the row a request creates, once mayCreate allowed it.
func newKey(p *apikeys.Principal, r NewKeyRequest, now time.Time) apikeys.Key {
	k := apikeys.Key{
		ID: r.ID, SubjectID: apikeys.NewSubjectID(), TenantID: r.TenantID, EnvironmentID: r.EnvironmentID,
		Name: r.Name, Description: r.Description, CreatedBySubjectID: p.SubjectID,
		CreatedAt: now, UpdatedAt: now, ExpiresAt: r.ExpiresAt, IntendedUse: r.IntendedUse,
		Metadata: r.Metadata, Scopes: append([]apikeys.Scope{}, r.Scopes...), Controls: r.Controls,
	}
	if k.ID == "" {
		k.ID = apikeys.NewKeyID()
	}
	// A bound caller's keys stay inside its tenant and environment.
	if k.TenantID == "" {
		k.TenantID = p.TenantID
	}
	if k.EnvironmentID == "" {
		k.EnvironmentID = p.EnvironmentID
	}
	return k
}

var errPermissions = apikeys.Errorf(apikeys.EFORBIDDEN, "a key cannot grant permissions it does not hold")

var errLifetime = apikeys.Errorf(apikeys.EFORBIDDEN,
	"a key cannot give a key a lifetime it does not have: set an expiry no later than its own")

// mint generates a token for k and stores its hash, handle, prefix and last four in k.
// Hashing is the slow part of creating a key. EUNAVAILABLE.
func (s *Service) mint(ctx context.Context, k apikeys.Key) (Created, error) {
	tok, err := keys.Generate(s.prefix)
	if err != nil {
		return Created{}, err
	}
	hash, err := s.hasher.Hash(ctx, tok.Secret())
	if err != nil {
		return Created{}, hashError(err)
	}
	k.Handle, k.Prefix, k.LastFour, k.Hash, k.HashAlgo = tok.Handle(), tok.DisplayPrefix(), tok.LastFour(), hash, apikeys.HashAlgo
	return Created{Key: k, Token: tok}, nil
}

// mintAll mints in parallel; the hasher's slots bound how many run at once.
func (s *Service) mintAll(ctx context.Context, ks []apikeys.Key) ([]Created, error) {
	out := make([]Created, len(ks))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.hasher.Slots())
	for i := range ks {
		g.Go(func() (err error) {
			out[i], err = s.mint(gctx, ks[i])
			return err
		})
	}
	return out, g.Wait()
}

// ListRequest selects a page of keys. Status is "" or a parsed apikeys.Status.
type ListRequest struct {
	TenantID           string
	EnvironmentID      string
	SubjectID          string
	CreatedBySubjectID string
	IntendedUse        string
	Status             apikeys.Status
	Limit              int // 0 means apikeys.DefaultPageSize
	After              *apikeys.Cursor
}

// Page is one page of a list.
type Page struct {
	Keys  []apikeys.Key
	Next  *apikeys.Cursor // the next page's start; nil on the last page
	Limit int             // the page size used
	At    time.Time       // the instant status was evaluated at, to render it the same
}

// ListKeys lists the keys the caller sees, newest first, one page at a time, with the cursor
// of the next page when more may follow. A bound caller's view is its tenant (environment):
// asking for another one finds nothing. EINVALID, EFORBIDDEN.
func (s *Service) ListKeys(ctx context.Context, p *apikeys.Principal, r ListRequest) (Page, error) {
	if err := authorize(p, OpListKeys); err != nil {
		return Page{}, err
	}
	f := apikeys.KeyFilter{
		TenantID: r.TenantID, EnvironmentID: r.EnvironmentID, SubjectID: r.SubjectID,
		CreatedBySubjectID: r.CreatedBySubjectID, IntendedUse: r.IntendedUse, Status: r.Status,
		Now: s.now(), Limit: r.Limit, After: r.After,
	}
	if f.Limit == 0 {
		f.Limit = apikeys.DefaultPageSize
	}
	page := Page{Keys: []apikeys.Key{}, Limit: f.Limit, At: f.Now}
	if f.Limit < 1 || f.Limit > apikeys.MaxPageSize {
		return Page{}, apikeys.Invalid("the page size is out of range", apikeys.FieldError{Field: "limit", Detail: "must be 1 to 100"})
	}
	if p.TenantID != "" {
		if f.TenantID != "" && f.TenantID != p.TenantID {
			return page, nil
		}
		f.TenantID = p.TenantID
	}
	if p.EnvironmentID != "" {
		if f.EnvironmentID != "" && f.EnvironmentID != p.EnvironmentID {
			return page, nil
		}
		f.EnvironmentID = p.EnvironmentID
	}
	ks, next, err := s.store.ListKeys(ctx, f)
	if err != nil {
		return Page{}, err
	}
	page.Keys, page.Next = ks, next
	return page, nil
}

// errNoKey answers for a key that does not exist or that the caller does not see.
var errNoKey = apikeys.Errorf(apikeys.ENOTFOUND, "no API key with this id")

// GetKey returns one key the caller sees. ENOTFOUND, EFORBIDDEN.
func (s *Service) GetKey(ctx context.Context, p *apikeys.Principal, id string) (apikeys.Key, error) {
	if err := authorize(p, OpGetKey); err != nil {
		return apikeys.Key{}, err
	}
	return s.visibleKey(ctx, p, id)
}

// visibleKey returns the key if the caller sees it, errNoKey otherwise.
func (s *Service) visibleKey(ctx context.Context, p *apikeys.Principal, id string) (apikeys.Key, error) {
	k, err := s.store.GetKey(ctx, id)
	if err == nil && !p.SeesKey(&k) {
		err = errNoKey
	}
	if apikeys.IsCode(err, apikeys.ENOTFOUND) {
		return apikeys.Key{}, errNoKey
	}
	return k, err
}

// updateVisible is the store's UpdateKey for a key the caller sees and may manage: an
// invisible key is errNoKey, exactly like a missing one, and fn never runs on it.
func (s *Service) updateVisible(ctx context.Context, p *apikeys.Principal, id string, fn func(k *apikeys.Key) error) (apikeys.Key, error) {
	k, err := s.store.UpdateKey(ctx, id, func(k *apikeys.Key) error {
		if !p.SeesKey(k) {
			return errNoKey
		}
		if err := p.MayManage(k); err != nil {
			return err
		}
		return fn(k)
	})
	if apikeys.IsCode(err, apikeys.ENOTFOUND) {
		return apikeys.Key{}, errNoKey
	}
	return k, err
}

// Optional is a field of an update: Set when the request names it. For a field that may be
// cleared, the zero Value clears it.
type Optional[T any] struct {
	Set   bool
	Value T
}

// Some is a set Optional.
func Some[T any](v T) Optional[T] { return Optional[T]{Set: true, Value: v} }

// KeyUpdate lists the fields to change, already parsed.
type KeyUpdate struct {
	Name        Optional[string]
	Description Optional[string]           // "" clears
	IntendedUse Optional[string]           // "" clears
	Metadata    Optional[apikeys.Metadata] // nil clears
	ExpiresAt   Optional[*time.Time]       // nil clears: the key never expires
	Scopes      Optional[[]apikeys.Scope]
	Enabled     Optional[bool]
	Permissions Optional[[]string]       // nil clears
	IPAllowlist Optional[[]netip.Prefix] // nil clears: every address
}

// UpdateKey changes the fields set in u. A caller cannot grant scopes or a lifetime it lacks,
// change a key holding scopes it lacks, change its own expiry, or (replaced) change its
// replacement; a revoked key cannot change, nor the expiry of a rotated or an expired one.
// EINVALID, EFORBIDDEN, ENOTFOUND, ECONFLICT.
func (s *Service) UpdateKey(ctx context.Context, p *apikeys.Principal, id string, u KeyUpdate) (apikeys.Key, error) {
	if err := authorize(p, OpUpdateKey); err != nil {
		return apikeys.Key{}, err
	}
	now := s.now()
	if u.ExpiresAt.Set && u.ExpiresAt.Value != nil && !u.ExpiresAt.Value.After(now) {
		return apikeys.Key{}, apikeys.Invalid("the request was rejected; nothing was changed",
			apikeys.FieldError{Field: "/expiresAt", Detail: "must be in the future"})
	}
	p, err := s.fresh(ctx, p, OpUpdateKey)
	if err != nil {
		return apikeys.Key{}, err
	}
	return s.updateVisible(ctx, p, id, func(k *apikeys.Key) error {
		if u.ExpiresAt.Set && !p.Admin && k.ID == p.KeyID {
			return apikeys.Errorf(apikeys.EFORBIDDEN, "a key cannot change its own expiry")
		}
		// Scopes given to a key are given for as long as it lives, so adding one needs the
		// key's lifetime to be within the caller's.
		expires := k.ExpiresAt
		if u.ExpiresAt.Set {
			expires = u.ExpiresAt.Value
			if !p.MayGrantLifetime(expires) {
				return errLifetime
			}
		}
		if u.Scopes.Set {
			if !p.MayHold(u.Scopes.Value) {
				return apikeys.Errorf(apikeys.EFORBIDDEN, "a key cannot grant scopes it does not hold")
			}
			if !k.HasScopes(u.Scopes.Value) && !p.MayGrantLifetime(expires) {
				return errLifetime
			}
		}
		if u.Permissions.Set && !p.MayGrantPermissions(u.Permissions.Value) {
			return errPermissions
		}
		if k.RevokedAt != nil {
			return apikeys.Errorf(apikeys.ECONFLICT, "a revoked key cannot be changed")
		}
		if u.ExpiresAt.Set && k.ReplacedByID != "" {
			return apikeys.Errorf(apikeys.ECONFLICT, "this key has been rotated; its expiry is the end of its grace period")
		}
		// Expiry is final, as revocation is: a new expiry (or none) would bring back to life
		// a credential every holder was told had ended, and that may since have leaked.
		if u.ExpiresAt.Set && k.StatusAt(now) == apikeys.StatusExpired {
			return apikeys.Errorf(apikeys.ECONFLICT, "an expired key cannot be renewed; create a new key")
		}
		if u.Name.Set {
			k.Name = u.Name.Value
		}
		if u.Description.Set {
			k.Description = u.Description.Value
		}
		if u.IntendedUse.Set {
			k.IntendedUse = u.IntendedUse.Value
		}
		if u.Metadata.Set {
			k.Metadata = u.Metadata.Value
		}
		if u.ExpiresAt.Set {
			k.ExpiresAt = u.ExpiresAt.Value
		}
		if u.Scopes.Set {
			k.Scopes = append([]apikeys.Scope{}, u.Scopes.Value...)
		}
		if u.Enabled.Set {
			k.Disabled = !u.Enabled.Value
		}
		if u.Permissions.Set {
			k.Permissions = u.Permissions.Value
		}
		if u.IPAllowlist.Set {
			k.IPAllowlist = u.IPAllowlist.Value
		}
		k.UpdatedAt = now
		return nil
	})
}

// RevokeKey revokes a key the caller sees and may manage; revoking it again changes nothing.
// EFORBIDDEN, ENOTFOUND.
func (s *Service) RevokeKey(ctx context.Context, p *apikeys.Principal, id, reason string) (apikeys.Key, error) {
	if err := authorize(p, OpRevokeKey); err != nil {
		return apikeys.Key{}, err
	}
	p, err := s.fresh(ctx, p, OpRevokeKey)
	if err != nil {
		return apikeys.Key{}, err
	}
	now := s.now()
	return s.updateVisible(ctx, p, id, func(k *apikeys.Key) error {
		if k.RevokedAt != nil {
			return nil
		}
		k.RevokedAt, k.RevokedBySubjectID, k.RevokedReason, k.UpdatedAt = &now, p.SubjectID, reason, now
		return nil
	})
}

// RotateRequest asks for a replacement key.
type RotateRequest struct {
	// GracePeriod keeps the old key working that long; 0 revokes it at once.
	GracePeriod time.Duration
	// ExpiresAt is the replacement's expiry; nil keeps the old key's.
	ExpiresAt *time.Time
	// Name is the replacement's name; "" keeps the old key's.
	Name string
}

// MaxGracePeriod bounds RotateRequest.GracePeriod.
const MaxGracePeriod = 30 * 24 * time.Hour

// RotateKey issues a replacement for a key, for the same subject, and retires the old key at
// once or after the grace period. EINVALID, EFORBIDDEN, ENOTFOUND, ECONFLICT, EUNAVAILABLE.
func (s *Service) RotateKey(ctx context.Context, p *apikeys.Principal, id string, r RotateRequest) (Created, error) {
	if err := authorize(p, OpRotateKey); err != nil {
		return Created{}, err
	}
	now := s.now()
	var fields apikeys.Fields
	if r.ExpiresAt != nil && !r.ExpiresAt.After(now) {
		fields.Add("/expiresAt", "must be in the future")
	}
	if r.GracePeriod < 0 || r.GracePeriod > MaxGracePeriod {
		fields.Add("/gracePeriodSeconds", "must be 0 to 2592000 seconds")
	}
	if err := fields.Err("the request was rejected; nothing was changed"); err != nil {
		return Created{}, err
	}
	// Check before paying for a hash; checked again under the row lock, where it counts.
	old, err := s.visibleKey(ctx, p, id)
	if err != nil {
		return Created{}, err
	}
	if err := rotatable(p, &old, r, now); err != nil {
		return Created{}, err
	}
	m, err := s.mint(ctx, apikeys.Key{ID: apikeys.NewKeyID()})
	if err != nil {
		return Created{}, err
	}
	if p, err = s.fresh(ctx, p, OpRotateKey); err != nil {
		return Created{}, err
	}
	now = s.now()
	_, repl, err := s.store.RotateKey(ctx, id, func(o *apikeys.Key) (apikeys.Key, error) {
		if !p.SeesKey(o) {
			return apikeys.Key{}, errNoKey
		}
		if err := rotatable(p, o, r, now); err != nil {
			return apikeys.Key{}, err
		}
		n := m.Key
		n.SubjectID, n.TenantID, n.EnvironmentID = o.SubjectID, o.TenantID, o.EnvironmentID
		n.Name, n.Description, n.IntendedUse = o.Name, o.Description, o.IntendedUse
		n.Metadata, n.Scopes, n.ExpiresAt, n.Controls = o.Metadata, o.Scopes, o.ExpiresAt, o.Controls
		n.CreatedBySubjectID, n.CreatedAt, n.UpdatedAt, n.RotatedFromID = p.SubjectID, now, now, o.ID
		if r.Name != "" {
			n.Name = r.Name
		}
		if r.ExpiresAt != nil {
			n.ExpiresAt = r.ExpiresAt
		}
		o.ReplacedByID, o.UpdatedAt = n.ID, now
		if r.GracePeriod == 0 {
			o.RevokedAt, o.RevokedBySubjectID, o.RevokedReason = &now, p.SubjectID, "rotated"
		} else if end := now.Add(r.GracePeriod); o.ExpiresAt == nil || end.Before(*o.ExpiresAt) {
			o.ExpiresAt = &end
		}
		return n, nil
	})
	if apikeys.IsCode(err, apikeys.ENOTFOUND) {
		return Created{}, errNoKey
	}
	if err != nil {
		return Created{}, err
	}
	return Created{Key: repl, Token: m.Token}, nil
}

// rotatable applies the rules of rotation to k: the caller may manage it, and may give the
// replacement its lifetime; k is active and has not been rotated already.
func rotatable(p *apikeys.Principal, k *apikeys.Key, r RotateRequest, now time.Time) error {
	if err := p.MayManage(k); err != nil {
		return err
	}
	expires := k.ExpiresAt
	if r.ExpiresAt != nil {
		expires = r.ExpiresAt
	}
	if !p.MayGrantLifetime(expires) {
		return errLifetime
	}
	switch {
	case k.ReplacedByID != "":
		return apikeys.Errorf(apikeys.ECONFLICT, "this key has already been rotated")
	case k.StatusAt(now) == apikeys.StatusRevoked:
		return apikeys.Errorf(apikeys.ECONFLICT, "a revoked key cannot be rotated")
	case k.StatusAt(now) == apikeys.StatusExpired:
		return apikeys.Errorf(apikeys.ECONFLICT, "an expired key cannot be rotated; create a new key")
	}
	return nil
}

// GetSubject returns the subject behind a key, if the caller sees it. ENOTFOUND, EFORBIDDEN.
func (s *Service) GetSubject(ctx context.Context, p *apikeys.Principal, id string) (apikeys.Subject, error) {
	if err := authorize(p, OpGetSubject); err != nil {
		return apikeys.Subject{}, err
	}
	sub, err := s.store.GetSubject(ctx, id)
	if err == nil && !p.Sees(sub.TenantID, sub.EnvironmentID) {
		err = apikeys.Errorf(apikeys.ENOTFOUND, "no subject with this id")
	}
	if apikeys.IsCode(err, apikeys.ENOTFOUND) {
		return apikeys.Subject{}, apikeys.Errorf(apikeys.ENOTFOUND, "no subject with this id")
	}
	return sub, err
}
