package apikeys

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode/utf8"
)

// The text rules. Each text field of the API is parsed by exactly one of these functions,
// whichever operation carries it, and openapi.yaml states the same rule as a pattern that
// means the same in ECMA-262 and in Go's regexp (server/textrules_test.go holds them to it,
// code point by code point).
//
// Characters refused in all text: C0 controls (but tab, line feed and carriage return in
// multi-line text), DEL, C1 controls, the line and paragraph separators and the bidirectional
// embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069), which can make a name
// display as something it is not. Text that must have content needs one character that is not
// Blank: not white space (Unicode's White_Space), not a default-ignorable code point of the
// Basic Multilingual Plane (Unicode's Default_Ignorable_Code_Point: soft hyphen, joiners,
// fillers, variation selectors, directional marks, invisible operators, U+FEFF, …), and not
// the blank Braille pattern U+2800. Default-ignorables beyond the BMP (tag characters,
// U+1BCA0–U+1BCA3, U+1D173–U+1D17A) count as visible: a pattern excluding them cannot mean the
// same in ECMA-262 without the u flag (which sees surrogate halves) and in Go's regexp.

// Length limits of text fields, in code points.
const (
	MaxNameLen        = 200
	MaxDescriptionLen = 1000
	MaxReasonLen      = 500
	MaxTenantIDLen    = 128
	MaxIntendedUseLen = 64
)

// refused reports whether r may not appear in any text; multiLine allows tab, LF and CR.
func refused(r rune, multiLine bool) bool {
	switch {
	case r == '\t' || r == '\n' || r == '\r':
		return !multiLine
	case r < 0x20, r >= 0x7F && r <= 0x9F:
		return true
	case r == 0x2028, r == 0x2029, r >= 0x202A && r <= 0x202E, r >= 0x2066 && r <= 0x2069:
		return true
	case r == utf8.RuneError:
		// Only an invalid byte decodes to RuneError with a width of one; callers check
		// utf8.ValidString first, so this is the character U+FFFD itself, which is fine.
		return false
	}
	return false
}

// Refused reports whether r may not appear in one line of text (a name): the characters a
// terminal would act on, or that make text display as something it is not.
func Refused(r rune) bool { return refused(r, false) }

// Blank reports whether r shows nothing: Unicode white space or an invisible space or joiner.
func Blank(r rune) bool {
	switch {
	case r >= 0x09 && r <= 0x0D, r == 0x20, r == 0x85, r == 0xA0, r == 0xAD, r == 0x034F,
		r == 0x061C, r == 0x115F, r == 0x1160, r == 0x1680, r == 0x17B4, r == 0x17B5,
		r >= 0x180B && r <= 0x180F, r >= 0x2000 && r <= 0x200F, r == 0x2028, r == 0x2029,
		r == 0x202F, r >= 0x205F && r <= 0x206F, r == 0x2800, r == 0x3000, r == 0x3164,
		r >= 0xFE00 && r <= 0xFE0F, r == 0xFEFF, r == 0xFFA0, r >= 0xFFF0 && r <= 0xFFF8:
		return true
	}
	return false
}

// parseText checks s against the text rules: valid UTF-8, min..max code points, no refused
// character, and when content is required at least one that is not Blank.
func parseText(s string, minLen, maxLen int, multiLine, content bool) (string, error) {
	if !utf8.ValidString(s) {
		return "", Invalid("must be valid UTF-8")
	}
	n, visible := 0, false
	for _, r := range s {
		n++
		if refused(r, multiLine) {
			return "", Invalid(fmt.Sprintf("must not contain the control or formatting character U+%04X", r))
		}
		if !Blank(r) {
			visible = true
		}
	}
	switch {
	case n < minLen:
		return "", Invalid(fmt.Sprintf("must be at least %d characters", minLen))
	case n > maxLen:
		return "", Invalid(fmt.Sprintf("must be at most %d characters", maxLen))
	case content && !visible:
		return "", Invalid("must contain a visible character, not only white space")
	}
	return s, nil
}

// ParseName checks a key's name: one line of 1..200 characters with visible content.
func ParseName(s string) (string, error) { return parseText(s, 1, MaxNameLen, false, true) }

// ParseDescription checks a key's description: up to 1000 characters, line breaks and tabs
// allowed, possibly empty.
func ParseDescription(s string) (string, error) {
	return parseText(s, 0, MaxDescriptionLen, true, false)
}

// ParseReason checks a revocation reason: 1..500 characters with visible content, line breaks
// and tabs allowed.
func ParseReason(s string) (string, error) { return parseText(s, 1, MaxReasonLen, true, true) }

// parseLabel checks an identifier-like label: an ASCII letter or digit, then letters, digits,
// '_', '.', ':' or '-', at most max characters.
func parseLabel(s string, max int) (string, error) {
	if s == "" || len(s) > max {
		return "", Invalid(fmt.Sprintf("must be 1 to %d characters", max))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
		if !alnum && (i == 0 || (c != '_' && c != '.' && c != ':' && c != '-')) {
			return "", Invalid("must be an ASCII letter or digit followed by letters, digits, '_', '.', ':' or '-'")
		}
	}
	return s, nil
}

// ParseTenantID checks a tenant id.
func ParseTenantID(s string) (string, error) { return parseLabel(s, MaxTenantIDLen) }

// ParseEnvironmentID checks an environment id.
func ParseEnvironmentID(s string) (string, error) { return parseLabel(s, MaxTenantIDLen) }

// ParseIntendedUse checks an intended use label such as "ci-cd".
func ParseIntendedUse(s string) (string, error) { return parseLabel(s, MaxIntendedUseLen) }

// ParseScopes checks a list of scopes: known ones, each at most once.
func ParseScopes(ss []string) ([]Scope, error) {
	out := make([]Scope, 0, len(ss))
	for _, s := range ss {
		sc := Scope(s)
		known := false
		for _, k := range Scopes {
			known = known || k == sc
		}
		if !known {
			return nil, Invalid("unknown scope; the scopes are api_keys:read, api_keys:write and api_keys:verify")
		}
		for _, seen := range out {
			if seen == sc {
				return nil, Invalid("lists a scope twice")
			}
		}
		out = append(out, sc)
	}
	return out, nil
}

// ParseExpiry normalises a requested expiry to what both databases keep (UTC, to the
// microsecond) and checks that it falls in the years 0001 to 9999. Whether it lies in the
// future is the use case's to check, against its clock.
func ParseExpiry(t time.Time) (time.Time, error) {
	t = t.UTC().Truncate(time.Microsecond)
	if y := t.Year(); y < 1 || y > 9999 {
		return time.Time{}, Invalid("must fall in the years 0001 to 9999 in UTC")
	}
	return t, nil
}

// Metadata is a key's free JSON object, compacted, kept as sent (key order and number
// spelling included). Only ParseMetadata makes one from client input.
type Metadata []byte

// Limits of metadata.
const (
	MaxMetadataBytes      = 4096
	MaxMetadataProperties = 50
)

// ParseMetadata checks and compacts a metadata object: a JSON object of at most 50 top-level
// properties and 4096 bytes once compacted, in JSON text that CheckJSONText accepts.
func ParseMetadata(raw []byte) (Metadata, error) {
	if err := CheckJSONText(raw); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil || buf.Len() == 0 || buf.Bytes()[0] != '{' {
		return nil, Invalid("must be a JSON object")
	}
	if buf.Len() > MaxMetadataBytes {
		return nil, Invalid(fmt.Sprintf("must serialise to at most %d bytes", MaxMetadataBytes))
	}
	var props map[string]json.RawMessage
	if err := json.Unmarshal(buf.Bytes(), &props); err != nil {
		return nil, Invalid("must be a JSON object")
	}
	if len(props) > MaxMetadataProperties {
		return nil, Invalid(fmt.Sprintf("must have at most %d properties", MaxMetadataProperties))
	}
	return Metadata(buf.Bytes()), nil
}

// CheckJSONText reports, as EINVALID, JSON text that JSON parsers disagree on or that this
// service cannot keep as sent: invalid UTF-8 or a \u escape of a lone UTF-16 surrogate (Go
// replaces both with U+FFFD, other decoders refuse them, and stored as is they make the
// service answer with invalid JSON); anything but exactly one JSON value (data after it);
// an object naming a member twice (parsers keep the first, the last, or both); a number a
// double cannot hold (1e999999).
func CheckJSONText(raw []byte) error {
	if !utf8.Valid(raw) {
		return Invalid("the JSON text is not valid UTF-8")
	}
	if lonelySurrogate(raw) {
		return Invalid("the JSON text holds a lone UTF-16 surrogate escape")
	}
	type frame struct {
		object, wantKey bool
		names           map[string]bool
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return Invalid("the JSON text is not valid JSON")
		}
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				break
			}
			continue
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.object && top.wantKey {
			name, _ := tok.(string)
			if top.names[name] {
				return Invalid("the JSON text names a member twice in one object")
			}
			top.names[name], top.wantKey = true, false
			continue
		}
		if top != nil && top.object {
			top.wantKey = true // after this value, a name or the end
		}
		switch v := tok.(type) {
		case json.Delim:
			stack = append(stack, &frame{object: v == '{', wantKey: v == '{', names: map[string]bool{}})
		case json.Number:
			if _, err := strconv.ParseFloat(string(v), 64); err != nil {
				return Invalid("the JSON text holds a number a double-precision float cannot represent")
			}
		}
		if len(stack) == 0 {
			break // a scalar at the top
		}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Invalid("the JSON text holds data after its value")
	}
	return nil
}

// lonelySurrogate reports whether a string in raw escapes half of a UTF-16 surrogate pair
// without the other half.
func lonelySurrogate(raw []byte) bool {
	inString := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if !inString {
			inString = c == '"'
			continue
		}
		switch c {
		case '"':
			inString = false
		case '\\':
			if i+1 < len(raw) && raw[i+1] == 'u' {
				r, ok := hex4(raw, i+2)
				switch {
				case ok && r >= 0xD800 && r <= 0xDBFF:
					lo, ok2 := rune(0), false
					if i+7 < len(raw) && raw[i+6] == '\\' && raw[i+7] == 'u' {
						lo, ok2 = hex4(raw, i+8)
					}
					if !ok2 || lo < 0xDC00 || lo > 0xDFFF {
						return true
					}
					i += 11
					continue
				case ok && r >= 0xDC00 && r <= 0xDFFF:
					return true
				}
			}
			i++ // skip the escaped character
		}
	}
	return false
}

// hex4 decodes four hexadecimal digits at raw[i:].
func hex4(raw []byte, i int) (rune, bool) {
	if i+4 > len(raw) {
		return 0, false
	}
	var r rune
	for _, c := range raw[i : i+4] {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(d)
	}
	return r, true
}
