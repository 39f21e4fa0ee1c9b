package apikeys

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Controls are what a key's holder may do beyond being a valid key: whether the key is
// enabled, the permissions it holds, the networks it may be presented from. They are kept
// together, stored as one value (one column) and carried over by rotation as one value, so a
// new control is a field here, its parse function, and its check in the verification
// pipeline (service/pipeline.go), not an edit in every layer.
type Controls struct {
	// Disabled keys verify as DISABLED and cannot be bearer tokens. The API says `enabled`;
	// the zero value is an enabled key.
	Disabled bool `json:"disabled,omitempty"`
	// Permissions are strings of the caller's own vocabulary (PermissionPattern); one ending
	// in "*" holds every permission with that prefix.
	Permissions []string `json:"permissions,omitempty"`
	// IPAllowlist, when not empty, is the only networks the key may be presented from.
	IPAllowlist []netip.Prefix `json:"ipAllowlist,omitempty"`
}

// Enabled reports whether the key may be used at all.
func (c *Controls) Enabled() bool { return !c.Disabled }

// Limits of the controls.
const (
	MaxPermissions      = 100
	MaxPermissionLen    = 128
	MaxIPAllowlist      = 100
	MaxPermissionQuery  = 1000
	maxPermissionNested = 32
)

// PermissionPattern is the rule of a permission, as openapi.yaml states it: letters, digits and
// `_ . : -`, optionally ending in `*` (a wildcard over the permissions it prefixes).
const PermissionPattern = `^[A-Za-z0-9_.:-]{0,127}[A-Za-z0-9_.:*-]$`

// ParsePermission checks one permission against PermissionPattern (a byte loop: the verify
// path parses every name of a query; TestPermissionPattern holds the two to the same
// answers). EINVALID.
func ParsePermission(s string) (string, error) {
	if !isPermission(s) {
		return "", Invalid("must be 1 to 128 of letters, digits and _ . : - , optionally ending in *")
	}
	return s, nil
}

func isPermission(s string) bool {
	if len(s) == 0 || len(s) > MaxPermissionLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isPermByte(s[i]) || s[i] == '*' && i != len(s)-1 {
			return false
		}
	}
	return true
}

// ParsePermissions checks a key's permissions: at most 100, each a permission, none twice.
// EINVALID.
func ParsePermissions(ss []string) ([]string, error) {
	if len(ss) > MaxPermissions {
		return nil, Invalid(fmt.Sprintf("must hold at most %d permissions", MaxPermissions))
	}
	out := make([]string, 0, len(ss))
	for _, s := range ss {
		p, err := ParsePermission(s)
		if err != nil {
			return nil, Invalid(fmt.Sprintf("%q: %s", s, ErrorDetail(err)))
		}
		if slices.Contains(out, p) {
			return nil, Invalid(fmt.Sprintf("%q is listed twice", s))
		}
		out = append(out, p)
	}
	return out, nil
}

// ParseIPAllowlist checks an allowlist: at most 100 CIDRs (IPv4 or IPv6, no zone), each kept
// in its canonical form (host bits cleared) and none twice. EINVALID.
func ParseIPAllowlist(ss []string) ([]netip.Prefix, error) {
	if len(ss) > MaxIPAllowlist {
		return nil, Invalid(fmt.Sprintf("must hold at most %d networks", MaxIPAllowlist))
	}
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			// A bare address is the network of that one address.
			a, aerr := netip.ParseAddr(s)
			if aerr != nil || a.Zone() != "" {
				return nil, Invalid(fmt.Sprintf("%q is not a CIDR such as 192.0.2.0/24 or 2001:db8::/32", s))
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		p = p.Masked()
		if slices.Contains(out, p) {
			return nil, Invalid(fmt.Sprintf("%q is listed twice", s))
		}
		out = append(out, p)
	}
	return out, nil
}

// Allows reports whether the allowlist lets a key be presented from ip: an empty list allows
// every address; otherwise ip must parse and fall in one of the networks (an IPv4-mapped IPv6
// address counts as its IPv4 address).
func (c *Controls) Allows(ip string) bool {
	if len(c.IPAllowlist) == 0 {
		return true
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	a = a.Unmap().WithZone("")
	for _, p := range c.IPAllowlist {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// HoldsPermission reports whether perms grant want: an equal permission, or a wildcard
// ("billing:*", "*") whose prefix starts want.
func HoldsPermission(perms []string, want string) bool {
	for _, p := range perms {
		if p == want {
			return true
		}
		if prefix, ok := strings.CutSuffix(p, "*"); ok && strings.HasPrefix(want, prefix) {
			return true
		}
	}
	return false
}

// HoldsPermissions reports whether perms grant every one of wants (a wildcard in wants is
// held only by a wildcard at least as wide).
func HoldsPermissions(perms, wants []string) bool {
	for _, w := range wants {
		if !HoldsPermission(perms, w) {
			return false
		}
	}
	return true
}

// MarshalControls renders controls as stored ("{}" for the zero value).
func MarshalControls(c Controls) string {
	b, _ := json.Marshal(c) // strings, bools and prefixes always marshal
	return string(b)
}

// UnmarshalControls reads controls as stored; "" is the zero value.
func UnmarshalControls(s string) (Controls, error) {
	var c Controls
	if s == "" {
		return c, nil
	}
	err := json.Unmarshal([]byte(s), &c)
	return c, err
}
