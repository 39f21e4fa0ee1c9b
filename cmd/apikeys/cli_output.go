package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/pflag"

	apikeys "github.com/qs/apikeys"
	"github.com/qs/apikeys/gen"
)

// outputFormat is the value of -o: human tables, or the service's JSON as it answered.
type outputFormat string

const (
	outputTable outputFormat = "table"
	outputJSON  outputFormat = "json"
)

var _ pflag.Value = (*outputFormat)(nil)

func (o *outputFormat) String() string {
	if *o == "" {
		return string(outputTable)
	}
	return string(*o)
}

func (o *outputFormat) Set(s string) error {
	switch outputFormat(s) {
	case outputTable, outputJSON:
		*o = outputFormat(s)
		return nil
	}
	return errors.New("want table or json")
}

func (o *outputFormat) Type() string { return "format" }

func (c *cli) json() bool { return c.output == outputJSON }

// timeFlag is an RFC 3339 timestamp given on the command line.
type timeFlag struct{ t *time.Time }

func (f *timeFlag) String() string {
	if f.t == nil {
		return ""
	}
	return f.t.Format(time.RFC3339)
}

func (f *timeFlag) Set(s string) error {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return errors.New("want an RFC 3339 time such as 2030-01-31T12:00:00Z")
	}
	f.t = &t
	return nil
}

func (f *timeFlag) Type() string { return "time" }

// expiry is the pair of flags that set an expiry: --expires-at TIME or --expires-in DURATION.
type expiry struct {
	at timeFlag
	in days
}

func (e *expiry) flags(f *pflag.FlagSet, what string) {
	f.Var(&e.at, "expires-at", "when "+what+" expires (RFC 3339, such as 2030-01-31T12:00:00Z)")
	f.Var(&e.in, "expires-in", "when "+what+" expires, from now (such as 30d, 12h or 1d12h)")
}

// days is a duration flag that also takes days ("30d", "1d12h"): Go's durations stop at
// hours, and key lifetimes are counted in days.
type days time.Duration

func (d *days) String() string { return time.Duration(*d).String() }
func (d *days) Type() string   { return "duration" }

func (d *days) Set(s string) error {
	v, err := parseDays(s)
	if err != nil {
		return err
	}
	*d = days(v)
	return nil
}

var daysPrefix = regexp.MustCompile(`^([+-]?)(\d{1,5})d(.*)$`)

// parseDays reads a Go duration, optionally led by a whole number of days.
func parseDays(s string) (time.Duration, error) {
	m := daysPrefix.FindStringSubmatch(s)
	if m == nil {
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, errors.New("want a duration such as 30d, 12h, 90m or 1d12h")
		}
		return d, nil
	}
	n, _ := strconv.Atoi(m[2]) // at most 5 digits
	d := time.Duration(n) * 24 * time.Hour
	if m[3] != "" {
		rest, err := time.ParseDuration(m[3])
		if err != nil || rest < 0 || strings.HasPrefix(m[3], "+") {
			return 0, errors.New("want a duration such as 30d, 12h, 90m or 1d12h")
		}
		d += rest
	}
	if m[1] == "-" {
		d = -d
	}
	return d, nil
}

// value returns the expiry the flags give, or nil when neither was given.
func (e *expiry) value(f *pflag.FlagSet) (*time.Time, error) {
	switch {
	case f.Changed("expires-at") && f.Changed("expires-in"):
		return nil, errors.New("give --expires-at or --expires-in, not both")
	case f.Changed("expires-at"):
		return e.at.t, nil
	case f.Changed("expires-in"):
		if e.in <= 0 {
			return nil, errors.New("--expires-in: want a positive duration such as 30d or 12h")
		}
		t := time.Now().Add(time.Duration(e.in)).UTC().Truncate(time.Second)
		return &t, nil
	}
	return nil, nil
}

// jsonObject is a JSON object given on the command line, sent as written.
type jsonObject struct{ raw json.RawMessage }

func (j *jsonObject) String() string { return string(j.raw) }

func (j *jsonObject) Set(s string) error {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &probe); err != nil || probe == nil {
		return errors.New(`want a JSON object such as '{"team":"infra"}'`)
	}
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		return err
	}
	j.raw = b.Bytes()
	return nil
}

func (j *jsonObject) Type() string { return "json" }

// ifSet returns &v when the flag was given on the command line, else nil.
func ifSet[T any](f *pflag.FlagSet, name string, v T) *T {
	if !f.Changed(name) {
		return nil
	}
	return &v
}

func toScopes(ss []string) gen.Scopes {
	out := make(gen.Scopes, 0, len(ss))
	for _, s := range ss {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, gen.Scope(s))
		}
	}
	return out
}

// table writes aligned columns.
type table struct{ *tabwriter.Writer }

func newTable(w io.Writer) *table { return &table{tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)} }

func (t *table) row(cells ...string) {
	for i := range cells {
		cells[i] = oneLine(cells[i])
	}
	fmt.Fprintln(t, strings.Join(cells, "\t"))
}

// opt writes a row only when the value is present.
func (t *table) opt(label string, v *string) {
	if v != nil {
		t.row(label, *v)
	}
}

func (t *table) optTime(label string, v *time.Time) {
	if v != nil {
		t.row(label, timeText(*v))
	}
}

// oneLine keeps a cell on its line and in its column: tab, line feed and carriage return
// (which descriptions may hold) are shown escaped, and so is anything else a terminal would
// act on rather than show (see printable).
func oneLine(s string) string {
	return printable(strings.NewReplacer("\t", `\t`, "\n", `\n`, "\r", `\r`).Replace(s), false)
}

// printable escapes, as \u{XXXX}, what the service's answers must never put on a terminal
// (the service refuses them in what it stores, but a proxy or a hostile server in its place
// could send them): what the domain refuses in a name (C0 and C1 controls, of which ESC
// starts the sequences that retitle a window or write the clipboard, DEL, the separators and
// the bidirectional controls), the directional marks, and invalid UTF-8; with keepNewlines,
// line feeds stay.
func printable(s string, keepNewlines bool) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n' && keepNewlines:
			b.WriteRune(r)
		case apikeys.Refused(r), r == 0x200e, r == 0x200f, r == utf8.RuneError:
			fmt.Fprintf(&b, `\u{%04X}`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func timeText(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func orDash(v *string) string {
	if v == nil || *v == "" {
		return "-"
	}
	return *v
}

func scopesText(s gen.Scopes) string {
	if len(s) == 0 {
		return "-"
	}
	parts := make([]string, len(s))
	for i, x := range s {
		parts[i] = string(x)
	}
	return strings.Join(parts, ",")
}

// listText is a list of strings, comma-separated, or "-" for none.
func listText(l *[]string) string {
	if l == nil || len(*l) == 0 {
		return "-"
	}
	return strings.Join(*l, ",")
}

// keyRows writes a key's fields, one a row, named as in the API; absent optional ones are left out.
func keyRows(t *table, k *gen.ApiKey) {
	t.row("id", k.Id)
	t.row("name", k.Name)
	t.opt("description", k.Description)
	t.row("status", string(k.Status))
	t.row("subjectId", k.SubjectId)
	t.opt("tenantId", k.TenantId)
	t.opt("environmentId", k.EnvironmentId)
	t.opt("intendedUse", k.IntendedUse)
	t.row("scopes", scopesText(scopesOf(k.Scopes)))
	t.row("enabled", fmt.Sprint(k.Enabled == nil || *k.Enabled))
	t.row("permissions", listText(k.Permissions))
	t.row("ipAllowlist", listText(k.IpAllowlist))
	if k.Metadata != nil {
		t.row("metadata", string(*k.Metadata))
	}
	t.row("prefix", k.Prefix)
	t.row("lastFour", k.LastFour)
	t.row("hashAlgo", string(k.HashAlgo))
	t.row("createdBySubjectId", k.CreatedBySubjectId)
	t.row("createdAt", timeText(k.CreatedAt))
	t.optTime("updatedAt", timeOf(k.UpdatedAt))
	t.optTime("expiresAt", k.ExpiresAt)
	t.optTime("lastUsedAt", k.LastUsedAt)
	t.opt("lastUsedIp", k.LastUsedIp)
	t.optTime("revokedAt", k.RevokedAt)
	t.opt("revokedBySubjectId", k.RevokedBySubjectId)
	t.opt("revokedReason", k.RevokedReason)
	t.opt("rotatedFromId", k.RotatedFromId)
	t.opt("replacedById", k.ReplacedById)
}

// writeKey prints one key: its fields, or the service's JSON.
func (c *cli) writeKey(body []byte) error {
	if c.json() {
		return c.writeRaw(body)
	}
	var k gen.ApiKey
	if err := json.Unmarshal(body, &k); err != nil {
		return fmt.Errorf("the service's answer cannot be read: %w", err)
	}
	t := newTable(c.stdout)
	keyRows(t, &k)
	return t.Flush()
}

// writeCreated prints a key just created or rotated with its secret, once, on stdout only.
func (c *cli) writeCreated(body []byte, secret string) error {
	if c.json() {
		fmt.Fprintln(c.stderr, "Store secretKey now: it is shown only in this answer and cannot be shown again.")
		return c.writeRaw(body)
	}
	fmt.Fprintln(c.stderr, "Store the secretKey below now: it is shown only once and cannot be shown again.")
	var k gen.ApiKey // the same fields but the secret, which is added last
	if err := json.Unmarshal(body, &k); err != nil {
		return fmt.Errorf("the service's answer cannot be read: %w", err)
	}
	t := newTable(c.stdout)
	keyRows(t, &k)
	t.row("secretKey", secret)
	return t.Flush()
}

// writeRaw prints the service's JSON as it answered.
func (c *cli) writeRaw(body []byte) error {
	if _, err := c.stdout.Write(body); err != nil {
		return err
	}
	if !bytes.HasSuffix(body, []byte("\n")) {
		_, err := io.WriteString(c.stdout, "\n")
		return err
	}
	return nil
}

// scopesOf and timeOf read a field the generated types hold as a pointer while the spec
// calls it optional and as a value once it is required (updatedAt and scopes are being
// made required), so that this file compiles either way.
func scopesOf[T gen.Scopes | *gen.Scopes](v T) gen.Scopes {
	switch x := any(v).(type) {
	case *gen.Scopes:
		if x != nil {
			return *x
		}
	case gen.Scopes:
		return x
	}
	return nil
}

func timeOf[T time.Time | *time.Time](v T) *time.Time {
	switch x := any(v).(type) {
	case *time.Time:
		return x
	case time.Time:
		return &x
	}
	return nil
}
