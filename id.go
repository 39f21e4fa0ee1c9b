package apikeys

import (
	"strings"

	"github.com/google/uuid"
)

// Identifier prefixes.
const (
	KeyIDPrefix     = "apk_"
	SubjectIDPrefix = "subject_"
	// AdminSubjectID is the subject recorded for actions taken with the admin token.
	AdminSubjectID = "subject_admin"
)

// NewKeyID mints a key id: "apk_" and a UUIDv7, so ids sort by creation time.
func NewKeyID() string { return KeyIDPrefix + uuid.Must(uuid.NewV7()).String() }

// NewSubjectID mints a subject id: "subject_" and a UUIDv7.
func NewSubjectID() string { return SubjectIDPrefix + uuid.Must(uuid.NewV7()).String() }

// ParseSubjectID checks a subject id: "subject_" and 1 to 64 ASCII letters, digits, '_' or
// '-'. Subjects this service creates have a UUIDv7; other systems' subject ids may appear as
// creators. EINVALID.
func ParseSubjectID(s string) (string, error) {
	rest, ok := strings.CutPrefix(s, SubjectIDPrefix)
	if !ok || rest == "" || len(rest) > 64 {
		return "", Invalid("a subject id is \"subject_\" followed by 1 to 64 letters, digits, '_' or '-'")
	}
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		if (c < 'A' || c > 'Z') && (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' && c != '-' {
			return "", Invalid("a subject id is \"subject_\" followed by 1 to 64 letters, digits, '_' or '-'")
		}
	}
	return s, nil
}

// ParseKeyID checks the shape of a key id that names an existing key: "apk_" and a UUID in
// its canonical lower-case form. Any UUID version is accepted here so that keys created
// under an older rule stay reachable; new ids must pass ParseNewKeyID. Returns EINVALID.
func ParseKeyID(s string) (string, error) {
	rest, ok := strings.CutPrefix(s, KeyIDPrefix)
	if !ok || !canonicalUUID(rest) {
		return "", Invalid("an API key id is \"apk_\" followed by a lower-case UUID")
	}
	return s, nil
}

// ParseNewKeyID checks an id a client supplies for a new key: "apk_" and a canonical
// lower-case UUIDv7 (RFC 9562: version 7, variant 10). Returns EINVALID.
func ParseNewKeyID(s string) (string, error) {
	if _, err := ParseKeyID(s); err != nil {
		return "", err
	}
	u := uuid.MustParse(s[len(KeyIDPrefix):])
	if u.Version() != 7 || u.Variant() != uuid.RFC4122 {
		return "", Invalid("a new API key id is \"apk_\" followed by a lower-case UUIDv7")
	}
	return s, nil
}

// canonicalUUID reports whether s is 8-4-4-4-12 lower-case hexadecimal digits.
func canonicalUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return false
			}
		}
	}
	return true
}
