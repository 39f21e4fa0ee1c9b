package apikeys

import (
	"encoding/base64"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Status is the state of a key at a given instant.
type Status string

// The statuses a key can have. Expired is derived from ExpiresAt and is never stored.
const (
	StatusActive  Status = "active"
	StatusRevoked Status = "revoked"
	StatusExpired Status = "expired"
)

// ParseStatus checks a status filter. EINVALID.
func ParseStatus(s string) (Status, error) {
	switch st := Status(s); st {
	case StatusActive, StatusRevoked, StatusExpired:
		return st, nil
	}
	return "", Invalid("must be active, revoked or expired")
}

// Scope is a permission a key may hold.
type Scope string

// The scopes of this service's API.
const (
	ScopeRead   Scope = "api_keys:read"   // list and get keys and subjects
	ScopeWrite  Scope = "api_keys:write"  // create, batch, update, revoke and rotate keys
	ScopeVerify Scope = "api_keys:verify" // verify presented secrets
)

// Scopes lists every scope, in the order the API documents them.
var Scopes = []Scope{ScopeRead, ScopeWrite, ScopeVerify}

// HashAlgo is the algorithm of every stored hash.
const HashAlgo = "argon2id"

// Key is an API key as stored. Empty strings stand for absent optional text fields.
type Key struct {
	ID                 string
	SubjectID          string
	TenantID           string
	EnvironmentID      string
	Name               string
	Description        string
	Handle             string // the lookup handle carried inside the token
	Prefix             string // the token's prefix and the first four characters after it
	LastFour           string
	Hash               string // argon2id PHC string; never the secret itself
	HashAlgo           string
	CreatedBySubjectID string
	CreatedAt          time.Time
	UpdatedAt          time.Time
	ExpiresAt          *time.Time
	IntendedUse        string
	Metadata           Metadata // a compacted JSON object, or nil
	Scopes             []Scope
	LastUsedAt         *time.Time
	LastUsedIP         string
	RevokedAt          *time.Time
	RevokedBySubjectID string
	RevokedReason      string
	RotatedFromID      string
	ReplacedByID       string
	// Controls are the usage controls checked at verification; rotation carries them over.
	Controls
}

// StatusAt reports the key's status at now: revoked wins over expired, and a key is expired
// from the instant its ExpiresAt is reached.
func (k *Key) StatusAt(now time.Time) Status {
	switch {
	case k.RevokedAt != nil:
		return StatusRevoked
	case k.ExpiresAt != nil && !k.ExpiresAt.After(now):
		return StatusExpired
	default:
		return StatusActive
	}
}

// HasScopes reports whether the key holds every one of scopes.
func (k *Key) HasScopes(scopes []Scope) bool {
	for _, s := range scopes {
		if !slices.Contains(k.Scopes, s) {
			return false
		}
	}
	return true
}

// SubjectType is the type of every subject this service creates.
const SubjectType = "service"

// Subject is the identity behind one or more keys (a key and its rotations).
type Subject struct {
	ID            string
	Type          string
	TenantID      string
	EnvironmentID string
	CreatedAt     time.Time
}

// NewKey is a key to create; NewSubject asks for its subject to be created with it.
type NewKey struct {
	Key
	NewSubject bool
}

// Usage is one successful use of a key (a verification, or an authentication as bearer).
type Usage struct {
	KeyID string
	At    time.Time
	IP    string
}

// KeyFilter selects keys for a list. Empty fields do not filter.
type KeyFilter struct {
	TenantID           string
	EnvironmentID      string
	SubjectID          string
	CreatedBySubjectID string
	IntendedUse        string
	Status             Status
	// Now is the instant status is evaluated at, so that a list agrees with a get made at
	// the same instant.
	Now time.Time
	// Limit is the page size, 1..MaxPageSize.
	Limit int
	// After continues a previous page: only keys strictly older than it are listed.
	After *Cursor
}

// Page sizes of a list.
const (
	DefaultPageSize = 50
	MaxPageSize     = 100
)

// Cursor is a position in the newest-first order of keys.
type Cursor struct {
	CreatedAt time.Time
	ID        string
}

// String encodes the cursor as an opaque URL-safe token.
func (c Cursor) String() string {
	raw := strconv.FormatInt(c.CreatedAt.UnixMicro(), 10) + "|" + c.ID
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// ParseCursor decodes a token made by Cursor.String. Anything else is EINVALID.
func ParseCursor(s string) (Cursor, error) {
	bad := Invalid("the cursor is not valid; copy it from a Link header")
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, bad
	}
	micros, id, ok := strings.Cut(string(raw), "|")
	n, err := strconv.ParseInt(micros, 10, 64)
	if !ok || err != nil || n < 0 || n > maxCursorMicros {
		return Cursor{}, bad
	}
	if _, err := ParseKeyID(id); err != nil {
		return Cursor{}, bad
	}
	return Cursor{CreatedAt: time.UnixMicro(n).UTC(), ID: id}, nil
}

// maxCursorMicros is the last microsecond of the year 9999, the latest time either
// database keeps.
var maxCursorMicros = time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC).UnixMicro()

// VerifyCode is the verdict of a verification.
type VerifyCode string

// The verdicts, in the order verification checks them (VALID last: all checks passed).
const (
	CodeMalformed           VerifyCode = "MALFORMED"
	CodeNotFound            VerifyCode = "NOT_FOUND"
	CodeTenantMismatch      VerifyCode = "TENANT_MISMATCH"
	CodeEnvironmentMismatch VerifyCode = "ENVIRONMENT_MISMATCH"
	CodeRevoked             VerifyCode = "REVOKED"
	CodeExpired             VerifyCode = "EXPIRED"
	CodeDisabled            VerifyCode = "DISABLED"
	CodeIPNotAllowed        VerifyCode = "IP_NOT_ALLOWED"
	CodeInsufficientScopes  VerifyCode = "INSUFFICIENT_SCOPES"
	CodeInsufficientPerms   VerifyCode = "INSUFFICIENT_PERMISSIONS"
	CodeValid               VerifyCode = "VALID"
)
