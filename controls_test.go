package apikeys_test

import (
	"regexp"
	"strings"
	"testing"

	apikeys "github.com/qs/apikeys"
)

func TestPermissionQuery(t *testing.T) {
	perms := []string{"documents.read", "billing:*", "ops"}
	tests := []struct {
		q      string
		want   bool
		parsed string
	}{
		{"documents.read", true, "documents.read"},
		{"documents.write", false, "documents.write"},
		{"billing:refund", true, "billing:refund"},
		{"billing:*", true, "billing:*"},
		{"*", false, "*"},
		{"documents.read AND ops", true, "(documents.read AND ops)"},
		{"documents.read AND admin", false, "(documents.read AND admin)"},
		{"admin OR ops", true, "(admin OR ops)"},
		{"a OR b AND c", false, "(a OR (b AND c))"},
		{"ops OR b AND c", true, "(ops OR (b AND c))"},
		{"(ops OR b) AND c", false, "((ops OR b) AND c)"},
		{"documents.read AND (billing:read OR admin)", true, "(documents.read AND (billing:read OR admin))"},
		{"  ((ops))  ", true, "ops"},
	}
	for _, tt := range tests {
		q, err := apikeys.ParsePermissionQuery(tt.q)
		if err != nil {
			t.Errorf("%q: %v", tt.q, err)
			continue
		}
		if got := q.SatisfiedBy(perms); got != tt.want {
			t.Errorf("%q satisfied = %v, want %v", tt.q, got, tt.want)
		}
		if q.String() != tt.parsed {
			t.Errorf("%q parsed as %s, want %s", tt.q, q, tt.parsed)
		}
	}
}

func TestPermissionQueryErrorsNameThePosition(t *testing.T) {
	tests := []struct{ q, want string }{
		{"", "at least one permission"},
		{"   ", "at least one permission"},
		{"a AND", "position 6: expected a permission"},
		{"AND a", "position 1: expected a permission or \"(\", found \"AND\""},
		{"a b", "position 3: unexpected \"b\""},
		{"(a OR b", "position 8: the \"(\" at position 1 is not closed"},
		{"a OR b)", "position 7: unexpected \")\""},
		{"a & b", "position 3: '&' cannot appear"},
		{"a and b", "position 3: unexpected \"and\""},
		{"(a) (b)", "position 5: unexpected \"(\""},
		{"a OR ()", "position 7: expected a permission or \"(\", found \")\""},
		{"a**", "position 1: \"a**\" is not a permission"},
		{strings.Repeat("(", 33) + "a" + strings.Repeat(")", 33), "position 33: parentheses nest more than 32 deep"},
		{strings.Repeat("a OR ", 250) + "a", "at most 1000 bytes"},
	}
	for _, tt := range tests {
		_, err := apikeys.ParsePermissionQuery(tt.q)
		if !apikeys.IsCode(err, apikeys.EINVALID) || !strings.Contains(apikeys.ErrorDetail(err), tt.want) {
			t.Errorf("%q: %v, want EINVALID with %q", tt.q, err, tt.want)
		}
	}
}

func TestParseControls(t *testing.T) {
	if _, err := apikeys.ParsePermissions([]string{"a", "a"}); err == nil {
		t.Error("a permission twice was accepted")
	}
	for _, bad := range []string{"", "a b", "é", "a*b", strings.Repeat("a", 129)} {
		if _, err := apikeys.ParsePermission(bad); err == nil {
			t.Errorf("permission %q was accepted", bad)
		}
	}
	nets, err := apikeys.ParseIPAllowlist([]string{"192.0.2.9/24", "2001:db8::1", "10.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if got := []string{nets[0].String(), nets[1].String(), nets[2].String()}; got[0] != "192.0.2.0/24" || got[1] != "2001:db8::1/128" || got[2] != "10.0.0.1/32" {
		t.Errorf("allowlist = %v", got)
	}
	for _, bad := range [][]string{{"192.0.2.0/33"}, {"fe80::1%eth0"}, {"example.com"}, {"10.0.0.0/8", "10.1.0.0/8"}} {
		if _, err := apikeys.ParseIPAllowlist(bad); !apikeys.IsCode(err, apikeys.EINVALID) {
			t.Errorf("allowlist %q: %v, want EINVALID", bad, err)
		}
	}
	c := apikeys.Controls{IPAllowlist: nets}
	for ip, want := range map[string]bool{"192.0.2.200": true, "192.0.3.1": false, "::ffff:10.0.0.1": true, "2001:db8::1": true, "2001:db8::2": false, "": false, "junk": false} {
		if c.Allows(ip) != want {
			t.Errorf("Allows(%q) = %v, want %v", ip, !want, want)
		}
	}
}

// TestPermissionPattern: ParsePermission accepts exactly what the spec's pattern does.
func TestPermissionPattern(t *testing.T) {
	re := regexp.MustCompile(apikeys.PermissionPattern)
	for _, s := range []string{"", "a", "*", "a*", "**", "a*b", "billing:*", "x.y:z-w_v", "é", "a b", strings.Repeat("a", 128),
		strings.Repeat("a", 129), strings.Repeat("a", 127) + "*", "A9", "(", "a\n"} {
		_, err := apikeys.ParsePermission(s)
		if (err == nil) != re.MatchString(s) {
			t.Errorf("%q: ParsePermission %v, pattern %v", s, err, re.MatchString(s))
		}
	}
}

// FuzzParsePermissionQuery holds the query parser to: never panicking; refusing with EINVALID
// and a detail that names a position or a limit; and, for a query it accepts, a canonical
// form that parses again to itself and is satisfied by exactly the same permission sets.
func FuzzParsePermissionQuery(f *testing.F) {
	for _, s := range []string{"a", "a AND b", "a OR b AND c", "(a OR b) AND c", "documents.read AND (billing:* OR admin)",
		"((a))", "a AND", "(a", "a)", "AND", "a & b", strings.Repeat("(", 40) + "a"} {
		f.Add(s)
	}
	sets := [][]string{nil, {"a"}, {"b"}, {"c"}, {"a", "b"}, {"*"}, {"billing:*", "admin"}, {"documents.read"}}
	f.Fuzz(func(t *testing.T, s string) {
		q, err := apikeys.ParsePermissionQuery(s)
		if err != nil {
			d := apikeys.ErrorDetail(err)
			if !apikeys.IsCode(err, apikeys.EINVALID) || !(strings.HasPrefix(d, "position ") || strings.HasPrefix(d, "must ")) {
				t.Fatalf("%q: %v", s, err)
			}
			return
		}
		if len(q.String()) > apikeys.MaxPermissionQuery {
			return // the canonical form's parentheses may take it past the limit
		}
		again, err := apikeys.ParsePermissionQuery(q.String())
		if err != nil || again.String() != q.String() {
			t.Fatalf("%q: canonical %q reparsed as %q, %v", s, q, again, err)
		}
		for _, set := range sets {
			if q.SatisfiedBy(set) != again.SatisfiedBy(set) {
				t.Fatalf("%q and its canonical form %q disagree on %v", s, q, set)
			}
		}
	})
}

// BenchmarkParsePermissionQuery: the parse the HTTP edge makes of a verify request's query.
func BenchmarkParsePermissionQuery(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := apikeys.ParsePermissionQuery("documents.read AND (billing:refund OR admin)"); err != nil {
			b.Fatal(err)
		}
	}
}
