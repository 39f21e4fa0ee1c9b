package apikeys_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	apikeys "github.com/qs/apikeys"
)

// FuzzParseCursor holds the cursor decoder to: never panicking; refusing with EINVALID and a
// zero cursor; and, for a cursor it accepts, naming a key id that ParseKeyID accepts at a UTC
// instant to the microsecond between 1970 and 9999, which Cursor.String re-encodes to a
// token that decodes to the same cursor (and re-encodes to itself). `go test` runs the
// seeds; `make test-long` explores.
func FuzzParseCursor(f *testing.F) {
	const id = "apk_0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
	for _, c := range []apikeys.Cursor{
		{CreatedAt: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), ID: id},
		{CreatedAt: time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC), ID: "apk_00000000-0000-0000-0000-000000000000"},
		{CreatedAt: time.Unix(0, 0).UTC(), ID: id},
		{CreatedAt: time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC), ID: id},
	} {
		f.Add(c.String())
	}
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for _, s := range []string{
		"", "AAAA", "!!!", "a", b64("junk"), b64("|"), b64("1|"), b64("-1|" + id), b64("+5|" + id), b64("007|" + id),
		b64(" 1|" + id), b64("1|" + id + "|"), b64("1|" + id + "\x00"), b64("253402300800000000|" + id),
		b64("9223372036854775807|" + id), b64("99999999999999999999|" + id), b64("1|" + strings.ToUpper(id)),
		b64("1|apk_"), b64("1e3|" + id), b64("0x10|" + id), b64("1|" + id)[:10],
		b64("1|"+id) + "=", base64.StdEncoding.EncodeToString([]byte("1|" + id + "?")), b64("\xff\xfe|" + id),
	} {
		f.Add(s)
	}
	epoch, last := time.Unix(0, 0).UTC(), time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		c, err := apikeys.ParseCursor(s)
		if err != nil {
			if code := apikeys.ErrorCode(err); code != apikeys.EINVALID {
				t.Fatalf("ParseCursor(%q): error code %q, want %q", s, code, apikeys.EINVALID)
			}
			if c != (apikeys.Cursor{}) {
				t.Fatalf("ParseCursor(%q) failed but returned %+v", s, c)
			}
			return
		}
		if _, err := apikeys.ParseKeyID(c.ID); err != nil {
			t.Fatalf("ParseCursor(%q) accepted the key id %q: %v", s, c.ID, err)
		}
		if c.CreatedAt.Location() != time.UTC || c.CreatedAt.Before(epoch) || c.CreatedAt.After(last) || c.CreatedAt.Nanosecond()%1000 != 0 {
			t.Fatalf("ParseCursor(%q) accepted the instant %v", s, c.CreatedAt)
		}
		enc := c.String()
		again, err := apikeys.ParseCursor(enc)
		if err != nil {
			t.Fatalf("ParseCursor(%q) = %+v, whose String() %q does not decode: %v", s, c, enc, err)
		}
		if !again.CreatedAt.Equal(c.CreatedAt) || again.ID != c.ID {
			t.Fatalf("ParseCursor(%q) = %+v; its String() %q decodes to %+v", s, c, enc, again)
		}
		if again.String() != enc {
			t.Fatalf("%q re-encodes as %q", enc, again.String())
		}
	})
}

// FuzzJSONText holds the checks of client JSON to: never panicking; CheckJSONText accepting
// only one JSON value in valid UTF-8 (what encoding/json's Valid accepts, and less); and
// ParseMetadata accepting only text CheckJSONText accepts, and making of it a compact JSON
// object (the text compacted, as sent) of at most 4096 bytes and 50 members, which
// encoding/json parses, CheckJSONText accepts and ParseMetadata returns unchanged. Every
// refusal is EINVALID.
func FuzzJSONText(f *testing.F) {
	many := make([]string, 51)
	for i := range many {
		many[i] = `"p` + strconv.Itoa(i) + `":` + strconv.Itoa(i)
	}
	for _, s := range []string{
		`{"a":1}`, `{ "a" : [1, 2.5e3, -0, {"b": null}], "c": "\u00e9\ud83d\udd11" }`, `{}`, `[]`, `"x"`, `1`, `null`, ``, ` `,
		`{"a":1,"a":2}`, `{"a":1,"\u0061":2}`, `{"a":{"b":1,"b":2}}`, `[{"a":1},{"a":1}]`, `{"a":"\ud800"}`, `{"a":"\udc00\ud800"}`,
		`{"\ud800":1}`, `{"a":"\ud800\u0041"}`, `{"a":1e309}`, `{"a":-1e309}`, `{"a":1e308}`, `{"a":1e-400}`, `{"a":123456789012345678901234567890}`,
		`{"a":1} {}`, `{"a":1}x`, `{"a":1}  `, "\ufeff{}", "{\"a\":\"\xff\"}", "{\"a\":\"\xed\xa0\x80\"}", `{"a":NaN}`, `{a:1}`,
		`{"a":"` + strings.Repeat("x", 4090) + `"}`, `{"a":"` + strings.Repeat("x", 4088) + `"}`, "{" + strings.Join(many, ",") + "}",
		"{" + strings.Join(many[:50], ",") + "}", strings.Repeat("[", 2000) + strings.Repeat("]", 2000), `{"a":` + strings.Repeat("[", 1000) + strings.Repeat("]", 1000) + `}`,
		`{"\u0000":"\u0000"}`, `{"a":"\u2028\u202e"}`, `{"a":"<&>"}`, `{"a":0.10000000000000001}`, `{"a":1E+2,"b":-0.0e-0}`, "{\n\t\"a\" :\r 1\n}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkErr := apikeys.CheckJSONText(raw)
		switch {
		case checkErr == nil && (!utf8.Valid(raw) || !json.Valid(raw)):
			t.Fatalf("CheckJSONText accepted %q, which is not one JSON value in UTF-8", raw)
		case checkErr != nil && apikeys.ErrorCode(checkErr) != apikeys.EINVALID:
			t.Fatalf("CheckJSONText(%q): error code %q", raw, apikeys.ErrorCode(checkErr))
		}
		m, err := apikeys.ParseMetadata(raw)
		if err != nil {
			if apikeys.ErrorCode(err) != apikeys.EINVALID {
				t.Fatalf("ParseMetadata(%q): error code %q", raw, apikeys.ErrorCode(err))
			}
			if m != nil {
				t.Fatalf("ParseMetadata(%q) failed but returned %q", raw, m)
			}
			return
		}
		if checkErr != nil {
			t.Fatalf("ParseMetadata accepted %q, which CheckJSONText refuses: %v", raw, checkErr)
		}
		if len(m) == 0 || len(m) > apikeys.MaxMetadataBytes || m[0] != '{' {
			t.Fatalf("ParseMetadata(%q) = %q: not an object of at most %d bytes", raw, m, apikeys.MaxMetadataBytes)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, raw); err != nil || !bytes.Equal(compact.Bytes(), m) {
			t.Fatalf("ParseMetadata(%q) = %q, not the text compacted (%q, %v)", raw, m, compact.Bytes(), err)
		}
		compact.Reset()
		if err := json.Compact(&compact, m); err != nil || !bytes.Equal(compact.Bytes(), m) {
			t.Fatalf("ParseMetadata(%q) = %q, which is not compact", raw, m)
		}
		var members map[string]any
		if err := json.Unmarshal(m, &members); err != nil {
			t.Fatalf("ParseMetadata(%q) = %q, which encoding/json does not parse: %v", raw, m, err)
		}
		if len(members) > apikeys.MaxMetadataProperties {
			t.Fatalf("ParseMetadata(%q) accepted %d members", raw, len(members))
		}
		if err := apikeys.CheckJSONText(m); err != nil {
			t.Fatalf("ParseMetadata(%q) = %q, which CheckJSONText refuses: %v", raw, m, err)
		}
		if again, err := apikeys.ParseMetadata(m); err != nil || !bytes.Equal(again, m) {
			t.Fatalf("ParseMetadata(%q) = %q, and ParseMetadata of that = %q, %v", raw, m, again, err)
		}
	})
}
