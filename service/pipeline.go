package service

import (
	"slices"
	"time"

	apikeys "github.com/qs/apikeys"
)

// The verification pipeline: the checks made once a presented secret is known to be a key's,
// in the documented order, for verify and for bearer authentication alike. A new check is
// one entry here; the verdict counters (stats.go) and the order of codes are read from this
// list, so nothing else needs an edit. MALFORMED and NOT_FOUND (a wrong secret) are the
// verifier's and come before every entry.

// input is what the checks look at: the caller, the key, the instant, and what the request
// requires of the key.
type input struct {
	p   *apikeys.Principal
	k   *apikeys.Key
	now time.Time
	ip  string // where the key was presented from; "" when unknown

	tenantID, environmentID string
	scopes                  []apikeys.Scope
	permissions             apikeys.PermissionQuery
}

// check is one step: fails reports that the key is refused with code. vias lists the doors
// it applies to (bearer authentication has no tenant or environment to require, and checks
// its operation's scope after the pipeline, as authorization).
type check struct {
	code  apikeys.VerifyCode
	vias  []Via
	fails func(in *input) bool
}

var both = []Via{ViaVerify, ViaBearer}

// pipeline is every check, in order.
var pipeline = []check{
	{apikeys.CodeNotFound, []Via{ViaVerify}, func(in *input) bool { return !in.p.SeesKey(in.k) }},
	{apikeys.CodeTenantMismatch, []Via{ViaVerify}, func(in *input) bool {
		return in.tenantID != "" && in.tenantID != in.k.TenantID
	}},
	{apikeys.CodeEnvironmentMismatch, []Via{ViaVerify}, func(in *input) bool {
		return in.environmentID != "" && in.environmentID != in.k.EnvironmentID
	}},
	{apikeys.CodeRevoked, both, func(in *input) bool { return in.k.StatusAt(in.now) == apikeys.StatusRevoked }},
	{apikeys.CodeExpired, both, func(in *input) bool { return in.k.StatusAt(in.now) == apikeys.StatusExpired }},
	{apikeys.CodeDisabled, both, func(in *input) bool { return !in.k.Enabled() }},
	{apikeys.CodeIPNotAllowed, both, func(in *input) bool { return !in.k.Allows(in.ip) }},
	{apikeys.CodeInsufficientScopes, []Via{ViaVerify}, func(in *input) bool { return !in.k.HasScopes(in.scopes) }},
	{apikeys.CodeInsufficientPerms, []Via{ViaVerify}, func(in *input) bool {
		return !in.permissions.SatisfiedBy(in.k.Permissions)
	}},
}

// run applies the checks of via in order and returns the first refusal, or VALID.
func run(via Via, in *input) apikeys.VerifyCode {
	for i := range pipeline {
		c := &pipeline[i]
		if slices.Contains(c.vias, via) && c.fails(in) {
			return c.code
		}
	}
	return apikeys.CodeValid
}

// codesOf lists the verdicts a verification through via can reach, in the order they are
// checked: the verifier's two, the pipeline's, then (bearer) the operation's scope, then VALID.
func codesOf(via Via) []apikeys.VerifyCode {
	out := []apikeys.VerifyCode{apikeys.CodeMalformed, apikeys.CodeNotFound}
	for i := range pipeline {
		if c := &pipeline[i]; slices.Contains(c.vias, via) && c.code != apikeys.CodeNotFound {
			out = append(out, c.code)
		}
	}
	if via == ViaBearer {
		out = append(out, apikeys.CodeInsufficientScopes)
	}
	return append(out, apikeys.CodeValid)
}
