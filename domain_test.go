package apikeys_test

import (
	"strings"
	"testing"
	"time"

	apikeys "github.com/qs/apikeys"
)

func TestKeyIDs(t *testing.T) {
	for i := 0; i < 100; i++ {
		id := apikeys.NewKeyID()
		if _, err := apikeys.ParseNewKeyID(id); err != nil {
			t.Fatalf("a minted id %q does not parse as new: %v", id, err)
		}
	}
	for _, tt := range []struct {
		id            string
		existing, new bool
	}{
		{"apk_0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", true, true},
		{"apk_0190a1b2-c3d4-7e5f-bfff-0c1d2e3f4a5b", true, true},
		{"apk_0190a1b2-c3d4-4e5f-8a9b-0c1d2e3f4a5b", true, false}, // v4
		{"apk_0190a1b2-c3d4-7e5f-0a9b-0c1d2e3f4a5b", true, false}, // NCS variant
		{"apk_0190a1b2-c3d4-7e5f-ca9b-0c1d2e3f4a5b", true, false}, // Microsoft variant
		{"apk_0190A1B2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", false, false},
		{"apk_0190a1b2c3d47e5f8a9b0c1d2e3f4a5b", false, false},
		{"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", false, false},
		{"apk_{0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5}", false, false},
		{"apk_", false, false},
	} {
		_, errExisting := apikeys.ParseKeyID(tt.id)
		_, errNew := apikeys.ParseNewKeyID(tt.id)
		if (errExisting == nil) != tt.existing || (errNew == nil) != tt.new {
			t.Errorf("%s: existing %v new %v, want %v %v", tt.id, errExisting, errNew, tt.existing, tt.new)
		}
		if errNew != nil && !apikeys.IsCode(errNew, apikeys.EINVALID) {
			t.Errorf("%s: %v is not EINVALID", tt.id, errNew)
		}
	}
}

func TestCursorRoundTripAndJunk(t *testing.T) {
	c := apikeys.Cursor{CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC), ID: apikeys.NewKeyID()}
	got, err := apikeys.ParseCursor(c.String())
	if err != nil || !got.CreatedAt.Equal(c.CreatedAt) || got.ID != c.ID {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	for _, junk := range []string{"", "!!!", "bm9waXBl", apikeys.Cursor{ID: "x"}.String(), "LTF8YXBrX3g",
		apikeys.Cursor{CreatedAt: time.Unix(0, 0), ID: "apk_' OR 1=1 --"}.String(),
		apikeys.Cursor{CreatedAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), ID: c.ID}.String()} {
		if _, err := apikeys.ParseCursor(junk); !apikeys.IsCode(err, apikeys.EINVALID) {
			t.Errorf("ParseCursor(%q) = %v, want EINVALID", junk, err)
		}
	}
}

func TestParseMetadata(t *testing.T) {
	for _, tt := range []struct {
		raw, want string // want "" means EINVALID
	}{
		{`{"a": 1, "b": [1, 2.5e3, {"c": null}]}`, `{"a":1,"b":[1,2.5e3,{"c":null}]}`},
		{`{}`, `{}`},
		{`{"big": 1e308, "tiny": 1e-400}`, `{"big":1e308,"tiny":1e-400}`},
		{`{"k": 1e999999}`, ""},
		{`{"k": [-1e400]}`, ""},
		{`{"k": "\ud83d\ude00"}`, `{"k":"\ud83d\ude00"}`},
		{`{"k": "\ud800"}`, ""},
		{`{"\udc00": 1}`, ""},
		{`{"k": "\ud800\u0041"}`, ""},
		{"{\"k\": \"\xff\"}", ""},
		{`[1]`, ""},
		{`"x"`, ""},
		{`{"a":`, ""},
		{`{"a": "` + strings.Repeat("x", 4090) + `"}`, ""},
		{`{"a": 1, "a": 2}`, ""},
	} {
		got, err := apikeys.ParseMetadata([]byte(tt.raw))
		if tt.want == "" {
			if !apikeys.IsCode(err, apikeys.EINVALID) {
				t.Errorf("ParseMetadata(%.40q) = %s, %v; want EINVALID", tt.raw, got, err)
			}
			continue
		}
		if err != nil || string(got) != tt.want {
			t.Errorf("ParseMetadata(%.40q) = %s, %v; want %s", tt.raw, got, err, tt.want)
		}
	}
	many := "{"
	for i := 0; i < 51; i++ {
		if i > 0 {
			many += ","
		}
		many += `"p` + strings.Repeat("x", i) + `":1`
	}
	if _, err := apikeys.ParseMetadata([]byte(many + "}")); !apikeys.IsCode(err, apikeys.EINVALID) {
		t.Errorf("51 properties: %v", err)
	}
}

func TestCheckJSONText(t *testing.T) {
	for raw, ok := range map[string]bool{
		`{"a":"\ud83d\ude00"}`:     true,
		`{"a":"\\ud800"}`:          true, // an escaped backslash, then text
		`{"a":"\\\ud800"}`:         false,
		`{"a":"\ud800"}`:           false,
		`{"a":"\ud800x"}`:          false,
		`{"a":"\ude00\ud83d"}`:     false,
		`{"a":"\uD83D\uDE00"}`:     true,
		`{"a":"\ud83d\u0041"}`:     false,
		`{"a":"\ud83d"}`:           false,
		"{\"a\":\"\xed\xa0\x80\"}": false, // CESU-8 surrogate bytes are invalid UTF-8
		`{"a":"é"}`:                true,
		`{"a":1,"a":2}`:            false,
		`{"a":{"b":1,"b":1}}`:      false,
		`[{"a":1},{"a":1}]`:        true,
		`{"a":{"a":1}}`:            true,
		`{"a":1}xyz`:               false,
		`{"a":1}{"a":1}`:           false,
		"{\"a\":1} \n\t":           true,
		`{"a":1e999999}`:           false,
		`[1e308, -1e308]`:          true,
		`"x"`:                      true,
		`{"a":`:                    false,
	} {
		if err := apikeys.CheckJSONText([]byte(raw)); (err == nil) != ok {
			t.Errorf("CheckJSONText(%q) = %v, want ok %v", raw, err, ok)
		}
	}
}

func TestParseExpiry(t *testing.T) {
	in := time.Date(2031, 6, 1, 12, 0, 0, 999999999, time.FixedZone("", -2*3600))
	got, err := apikeys.ParseExpiry(in)
	if err != nil || got.Location() != time.UTC || !got.Equal(time.Date(2031, 6, 1, 14, 0, 0, 999999000, time.UTC)) {
		t.Errorf("ParseExpiry = %v, %v", got, err)
	}
	for _, bad := range []time.Time{
		time.Date(9999, 12, 31, 23, 59, 59, 0, time.FixedZone("", -3600)),
		time.Date(0, 12, 31, 0, 0, 0, 0, time.UTC),
	} {
		if _, err := apikeys.ParseExpiry(bad); !apikeys.IsCode(err, apikeys.EINVALID) {
			t.Errorf("ParseExpiry(%v) = %v", bad, err)
		}
	}
}

func TestPrincipalRules(t *testing.T) {
	hour := time.Date(2026, 1, 1, 13, 0, 0, 0, time.UTC)
	later, earlier := hour.Add(time.Second), hour.Add(-time.Second)
	k := &apikeys.Key{ID: "apk_a", SubjectID: "subject_a", TenantID: "t", Scopes: []apikeys.Scope{apikeys.ScopeWrite}, ExpiresAt: &hour}
	p := apikeys.PrincipalOf(k)
	switch {
	case p.Admin, !p.Has(apikeys.ScopeWrite), p.Has(apikeys.ScopeRead):
		t.Errorf("scopes of %+v", p)
	case !p.Sees("t", ""), !p.Sees("t", "prod"), p.Sees("u", ""):
		t.Errorf("tenant view of %+v", p)
	case p.MayGrantLifetime(nil), p.MayGrantLifetime(&later), !p.MayGrantLifetime(&hour), !p.MayGrantLifetime(&earlier):
		t.Errorf("lifetimes of %+v", p)
	}
	admin := apikeys.AdminPrincipal()
	if !admin.MayGrantLifetime(nil) || !admin.MayHold(apikeys.Scopes) || !admin.Sees("any", "any") || admin.SubjectID != apikeys.AdminSubjectID {
		t.Errorf("admin %+v", admin)
	}
	strong := &apikeys.Key{ID: "apk_b", SubjectID: "subject_b", Scopes: apikeys.Scopes}
	if !apikeys.IsCode(p.MayManage(strong), apikeys.EFORBIDDEN) || p.MayManage(k) != nil {
		t.Error("MayManage ignores scopes")
	}
	k.ReplacedByID = "apk_c"
	replaced := apikeys.PrincipalOf(k)
	replacement := &apikeys.Key{ID: "apk_c", SubjectID: "subject_a", Scopes: k.Scopes}
	if !replaced.Replaced || !apikeys.IsCode(replaced.MayManage(replacement), apikeys.EFORBIDDEN) || replaced.MayManage(k) != nil {
		t.Error("a replaced key may manage its replacement, or not itself")
	}
}

func TestErrors(t *testing.T) {
	var f apikeys.Fields
	if f.Err("x") != nil {
		t.Error("no fields, yet an error")
	}
	f.Check("/a", nil)
	if f.Err("x") != nil {
		t.Error("a nil error recorded a field")
	}
	f.Check("/name", apikeys.Invalid("must not be blank"))
	err := f.Err("rejected")
	var e *apikeys.Error
	if !apikeys.IsCode(err, apikeys.EINVALID) || apikeys.ErrorDetail(err) != "rejected" {
		t.Fatalf("Err = %v", err)
	}
	if e, _ = err.(*apikeys.Error); len(e.Fields) != 1 || e.Fields[0].Field != "/name" || e.Fields[0].Detail != "must not be blank" {
		t.Errorf("fields %+v", e.Fields)
	}
	if apikeys.ErrorCode(nil) != "" || apikeys.ErrorCode(strings.NewReader("").UnreadByte()) != apikeys.EINTERNAL {
		t.Error("ErrorCode of nil or a foreign error")
	}
}
