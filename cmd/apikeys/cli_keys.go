package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/oapi-codegen/nullable"
	"github.com/peterhellberg/link"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/qs/apikeys/gen"
)

func (c *cli) keysCommand() *cobra.Command {
	keys := group("keys", "Create, list, get, update, revoke, rotate and verify API keys",
		"Manages the API keys of the service at APIKEYS_URL through its HTTP API.\n\n"+environmentHelp+"\n\n"+exitHelp)
	keys.PersistentFlags().VarP(&c.output, "output", "o", "table, or json: the service's JSON as it answered")
	keys.AddCommand(c.keysCreate(), c.keysList(), c.keysGet(), c.keysUpdate(), c.keysRevoke(), c.keysRotate(), c.keysVerify())
	return keys
}

func (c *cli) subjectsCommand() *cobra.Command {
	subjects := group("subjects", "Read the subjects behind keys",
		"Reads the subject (the identity) behind a key, from the service at APIKEYS_URL.\n\n"+environmentHelp+"\n\n"+exitHelp)
	subjects.PersistentFlags().VarP(&c.output, "output", "o", "table, or json: the service's JSON as it answered")
	var id string
	get := &cobra.Command{
		Use:     "get SUBJECT_ID",
		Short:   "Show a subject",
		Example: "  apikeys subjects get subject_0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c",
		Args:    cobra.MaximumNArgs(1),
	}
	get.Flags().StringVar(&id, "id", "", "the subject's id (or give it as the argument)")
	get.RunE = c.runs(func(cmd *cobra.Command, args []string) error {
		id, err := idArg(cmd, args, id, "a subject id")
		if err != nil {
			return err
		}
		cl, err := c.client(cmd)
		if err != nil {
			return err
		}
		res, err := cl.GetSubjectWithResponse(cmd.Context(), id)
		if err := check(res, err); err != nil {
			return err
		}
		if c.json() {
			return c.writeRaw(res.Body)
		}
		s := res.JSON200
		t := newTable(c.stdout)
		t.row("id", s.Id)
		t.row("type", string(s.Type))
		t.opt("tenantId", s.TenantId)
		t.opt("environmentId", s.EnvironmentId)
		t.row("createdAt", timeText(s.CreatedAt))
		return t.Flush()
	})
	subjects.AddCommand(get)
	return subjects
}

// idArg returns the id given as the argument or by --id, exactly one of which is required.
func idArg(cmd *cobra.Command, args []string, flag, what string) (string, error) {
	switch {
	case len(args) == 1 && cmd.Flags().Changed("id"):
		return "", usagef(cmd, "give %s as the argument or by --id, not both", what)
	case len(args) == 1:
		return args[0], nil
	case cmd.Flags().Changed("id") && flag != "":
		return flag, nil
	}
	return "", usagef(cmd, "want %s: %s", what, cmd.UseLine())
}

func (c *cli) keysCreate() *cobra.Command {
	var (
		id, name, description, tenant, env, use string
		exp                                     expiry
		scopes, perms, allow                    []string
		disabled                                bool
		metadata                                jsonObject
	)
	cmd := &cobra.Command{
		Use:   "create --name NAME [flags]",
		Short: "Create a key; its secret is printed once",
		Long: `Creates a key and the subject behind it. The secret (secretKey) is printed once, on
standard output only, and cannot be shown again: store it at once.`,
		Example: `  apikeys keys create --name "CI pipeline" --tenant-id tenant_acme \
      --scopes api_keys:verify --expires-in 720h --metadata '{"team":"infra"}'`,
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	f.StringVar(&id, "id", "", "the new key's id (apk_ and a lower-case UUIDv7); the service makes one when absent")
	f.StringVar(&name, "name", "", "a name for people (required)")
	f.StringVar(&description, "description", "", "free text")
	f.StringVar(&tenant, "tenant-id", "", "the tenant the key belongs to")
	f.StringVar(&env, "environment-id", "", "the environment the key belongs to")
	f.StringVar(&use, "intended-use", "", "what the key is for, such as ci-cd")
	f.StringSliceVar(&scopes, "scopes", nil, "api_keys:read, api_keys:write, api_keys:verify (comma-separated or repeated)")
	f.Var(&metadata, "metadata", `a JSON object kept with the key, such as '{"team":"infra"}'`)
	f.StringSliceVar(&perms, "permissions", nil, "permissions of your own vocabulary, such as documents.read,billing:* (comma-separated or repeated)")
	f.StringSliceVar(&allow, "ip-allowlist", nil, "the only networks the key may be presented from, such as 192.0.2.0/24,2001:db8::/32")
	f.BoolVar(&disabled, "disabled", false, "create the key disabled (it verifies as DISABLED until enabled)")
	exp.flags(f, "the key")
	cmd.MarkFlagsMutuallyExclusive("expires-at", "expires-in")
	_ = cmd.MarkFlagRequired("name")
	cmd.RunE = c.runs(func(cmd *cobra.Command, _ []string) error {
		expiresAt, err := exp.value(f)
		if err != nil {
			return usagef(cmd, "%v", err)
		}
		body := gen.CreateApiKeyRequest{
			Id:            ifSet(f, "id", id),
			Name:          name,
			Description:   ifSet(f, "description", description),
			TenantId:      ifSet(f, "tenant-id", tenant),
			EnvironmentId: ifSet(f, "environment-id", env),
			IntendedUse:   ifSet(f, "intended-use", use),
			ExpiresAt:     expiresAt,
			Scopes:        ifSet(f, "scopes", toScopes(scopes)),
			Permissions:   ifSet(f, "permissions", perms),
			IpAllowlist:   ifSet(f, "ip-allowlist", allow),
		}
		if disabled {
			body.Enabled = ifSet(f, "disabled", false)
		}
		if f.Changed("metadata") {
			body.Metadata = &metadata.raw
		}
		cl, err := c.client(cmd)
		if err != nil {
			return err
		}
		res, err := cl.CreateApiKeyWithResponse(cmd.Context(), body)
		if err := check(res, err); err != nil {
			return err
		}
		return c.writeCreated(res.Body, res.JSON201.SecretKey)
	})
	return cmd
}

func (c *cli) keysList() *cobra.Command {
	var (
		p          gen.ListApiKeysParams
		tenant     string
		env        string
		status     string
		subject    string
		createdBy  string
		use        string
		limit      int
		cursor     string
		all        bool
		flagsToSet = []struct {
			name string
			v    *string
			dst  **string
		}{
			{"tenant-id", &tenant, &p.TenantId},
			{"environment-id", &env, &p.EnvironmentId},
			{"subject-id", &subject, &p.SubjectId},
			{"created-by-subject-id", &createdBy, &p.CreatedBySubjectId},
			{"intended-use", &use, &p.IntendedUse},
			{"cursor", &cursor, &p.Cursor},
		}
	)
	cmd := &cobra.Command{
		Use:   "list [flags]",
		Short: "List keys, newest first",
		Long: `Lists keys newest first, one page at a time (--limit keys, 50 unless given). When more
keys match, the cursor of the next page is printed on standard error; --all follows the
pages to the end (with -o json, their keys are printed as one JSON array).`,
		Example: `  apikeys keys list --tenant-id tenant_acme --status active
  apikeys keys list --all -o json | jq -r '.[].id'`,
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	f.StringVar(&tenant, "tenant-id", "", "only keys of this tenant")
	f.StringVar(&env, "environment-id", "", "only keys of this environment")
	f.StringVar(&status, "status", "", "only keys in this status: active, revoked or expired")
	f.StringVar(&subject, "subject-id", "", "only keys of this subject")
	f.StringVar(&createdBy, "created-by-subject-id", "", "only keys created by this subject")
	f.StringVar(&use, "intended-use", "", "only keys with this intended use")
	f.IntVar(&limit, "limit", 0, "keys a page, 1 to 100 (the service's default is 50)")
	f.StringVar(&cursor, "cursor", "", "start at this page, as printed after the previous one")
	f.BoolVar(&all, "all", false, "follow every page to the end")
	cmd.RunE = c.runs(func(cmd *cobra.Command, _ []string) error {
		for _, s := range flagsToSet {
			*s.dst = ifSet(f, s.name, *s.v)
		}
		if f.Changed("status") {
			st := gen.ApiKeyStatus(status)
			if !st.Valid() {
				return usagef(cmd, "--status: want active, revoked or expired, got %q", status)
			}
			p.Status = &st
		}
		if f.Changed("limit") && (limit < 1 || limit > 100) {
			return usagef(cmd, "--limit: want 1 to 100 keys a page, got %d", limit)
		}
		p.Limit = ifSet(f, "limit", limit)
		cl, err := c.client(cmd)
		if err != nil {
			return err
		}
		var (
			keys  []gen.ApiKey
			raw   []json.RawMessage // -o json --all: every page's items
			seen  = map[string]bool{}
			pages int
		)
		for {
			res, err := cl.ListApiKeysWithResponse(cmd.Context(), &p)
			if err := check(res, err); err != nil {
				return err
			}
			pages++
			if c.json() && !all {
				if err := c.writeRaw(res.Body); err != nil {
					return err
				}
			} else if c.json() {
				var items []json.RawMessage
				if err := json.Unmarshal(res.Body, &items); err != nil {
					return fmt.Errorf("the service's answer cannot be read: %w", err)
				}
				raw = append(raw, items...)
			} else {
				keys = append(keys, *res.JSON200...)
			}
			next, err := nextCursor(res)
			if err != nil {
				return err
			}
			if next == "" {
				break
			}
			if !all {
				fmt.Fprintf(c.stderr, "More keys match: add --cursor %s for the next page, or --all for every page.\n", next)
				break
			}
			if seen[next] {
				return fmt.Errorf("the service sent the cursor %s twice; stopped after %d pages", next, pages)
			}
			seen[next] = true
			p.Cursor = &next
		}
		switch {
		case c.json() && all:
			if raw == nil {
				raw = []json.RawMessage{}
			}
			b, err := json.Marshal(raw)
			if err != nil {
				return err
			}
			return c.writeRaw(b)
		case c.json():
			return nil
		case len(keys) == 0:
			fmt.Fprintln(c.stderr, "No keys match.")
			return nil
		}
		t := newTable(c.stdout)
		t.row("ID", "NAME", "STATUS", "TENANT", "ENVIRONMENT", "SCOPES", "EXPIRES", "LAST USED")
		for i := range keys {
			k := &keys[i]
			t.row(k.Id, k.Name, string(k.Status), orDash(k.TenantId), orDash(k.EnvironmentId),
				scopesText(scopesOf(k.Scopes)), orDash(timePtrText(k.ExpiresAt)), orDash(timePtrText(k.LastUsedAt)))
		}
		return t.Flush()
	})
	return cmd
}

// nextCursor returns the cursor of the page the Link header names as rel="next", or "" on
// the last page. The client keeps its own filters and base URL (which may carry a path the
// service does not know of) and takes only the cursor from the link.
func nextCursor(res *gen.ListApiKeysResponse) (string, error) {
	next := link.ParseResponse(res.HTTPResponse)["next"]
	if next == nil {
		return "", nil
	}
	u, err := url.Parse(next.URI)
	if err != nil || u.Query().Get("cursor") == "" {
		return "", fmt.Errorf("the service's Link header names no next cursor: %q", next.URI)
	}
	return u.Query().Get("cursor"), nil
}

func timePtrText(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := timeText(*t)
	return &s
}

func (c *cli) keysGet() *cobra.Command {
	var id string
	cmd := &cobra.Command{
		Use:     "get KEY_ID",
		Short:   "Show a key (never its secret)",
		Example: "  apikeys keys get apk_0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
		Args:    cobra.MaximumNArgs(1),
	}
	cmd.Flags().StringVar(&id, "id", "", "the key's id (or give it as the argument)")
	cmd.RunE = c.runs(func(cmd *cobra.Command, args []string) error {
		id, err := idArg(cmd, args, id, "a key id")
		if err != nil {
			return err
		}
		cl, err := c.client(cmd)
		if err != nil {
			return err
		}
		res, err := cl.GetApiKeyWithResponse(cmd.Context(), id)
		if err := check(res, err); err != nil {
			return err
		}
		return c.writeKey(res.Body)
	})
	return cmd
}

// clearable names the fields update --clear removes, as the API's null does (scopes, which
// cannot be null, is emptied).
var clearable = []string{"description", "expires-at", "intended-use", "metadata", "scopes", "permissions", "ip-allowlist"}

func (c *cli) keysUpdate() *cobra.Command {
	var (
		id, name, description, use  string
		exp                         expiry
		scopes, clear, perms, allow []string
		enabled                     bool
		metadata                    jsonObject
	)
	cmd := &cobra.Command{
		Use:   "update KEY_ID [flags]",
		Short: "Change a key's name, description, expiry, intended use, scopes or metadata",
		Long: `Sets the fields given by flags and clears those named by --clear; the others are left
as they are. --clear takes description, expires-at, intended-use, metadata, scopes,
permissions and ip-allowlist (comma-separated or repeated): the API removes the first four
(JSON null) and empties the lists.
A revoked key cannot be changed, nor the expiry of a key that has been rotated.`,
		Example: `  apikeys keys update apk_0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b --name "Nightly backup" --clear description,expires-at
  apikeys keys update apk_0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b --scopes api_keys:read,api_keys:verify`,
		Args: cobra.MaximumNArgs(1),
	}
	f := cmd.Flags()
	f.StringVar(&id, "id", "", "the key's id (or give it as the argument)")
	f.StringVar(&name, "name", "", "a new name")
	f.StringVar(&description, "description", "", "a new description")
	f.StringVar(&use, "intended-use", "", "a new intended use")
	f.StringSliceVar(&scopes, "scopes", nil, "the new scopes, replacing the old ones (comma-separated or repeated)")
	f.Var(&metadata, "metadata", "a JSON object replacing the key's metadata")
	f.StringSliceVar(&perms, "permissions", nil, "the new permissions, replacing the old ones")
	f.StringSliceVar(&allow, "ip-allowlist", nil, "the new IP allowlist (CIDRs), replacing the old one")
	f.BoolVar(&enabled, "enabled", true, "--enabled=false disables the key, --enabled enables it again")
	f.StringSliceVar(&clear, "clear", nil, "fields to remove: "+strings.Join(clearable, ", "))
	exp.flags(f, "the key")
	cmd.MarkFlagsMutuallyExclusive("expires-at", "expires-in")
	cmd.RunE = c.runs(func(cmd *cobra.Command, args []string) error {
		id, err := idArg(cmd, args, id, "a key id")
		if err != nil {
			return err
		}
		cleared := map[string]bool{}
		for _, name := range clear {
			name = strings.TrimSpace(name)
			if !contains(clearable, name) {
				return usagef(cmd, "--clear %s: want some of %s", name, strings.Join(clearable, ", "))
			}
			set := f.Changed(name) || name == "expires-at" && f.Changed("expires-in")
			if set {
				return usagef(cmd, "--%s is both set and cleared", name)
			}
			cleared[name] = true
		}
		expiresAt, err := exp.value(f)
		if err != nil {
			return usagef(cmd, "%v", err)
		}
		var body gen.UpdateApiKeyRequest
		body.Name = ifSet(f, "name", name)
		body.Description = nullableFlag(f, "description", description, cleared)
		body.IntendedUse = nullableFlag(f, "intended-use", use, cleared)
		body.Metadata = nullableFlag(f, "metadata", metadata.raw, cleared)
		switch {
		case expiresAt != nil:
			body.ExpiresAt = nullable.NewNullableWithValue(*expiresAt)
		case cleared["expires-at"]:
			body.ExpiresAt = nullable.NewNullNullable[time.Time]()
		}
		switch {
		case f.Changed("scopes"):
			s := toScopes(scopes)
			body.Scopes = &s
		case cleared["scopes"]:
			body.Scopes = &gen.Scopes{}
		}
		switch {
		case f.Changed("permissions"):
			body.Permissions = &perms
		case cleared["permissions"]:
			body.Permissions = &gen.Permissions{}
		}
		switch {
		case f.Changed("ip-allowlist"):
			body.IpAllowlist = &allow
		case cleared["ip-allowlist"]:
			body.IpAllowlist = &gen.IpAllowlist{}
		}
		body.Enabled = ifSet(f, "enabled", enabled)
		if body.Name == nil && body.Scopes == nil && !body.Description.IsSpecified() && !body.IntendedUse.IsSpecified() &&
			!body.Metadata.IsSpecified() && !body.ExpiresAt.IsSpecified() && body.Permissions == nil &&
			body.IpAllowlist == nil && body.Enabled == nil {
			return usagef(cmd, "nothing to change: give a field to set or --clear one")
		}
		cl, err := c.client(cmd)
		if err != nil {
			return err
		}
		res, err := cl.UpdateApiKeyWithResponse(cmd.Context(), id, body)
		if err := check(res, err); err != nil {
			return err
		}
		return c.writeKey(res.Body)
	})
	return cmd
}

// nullableFlag is the value of an optional field in an update: unspecified, the flag's
// value, or null when --clear names it.
func nullableFlag[T any](f interface{ Changed(string) bool }, name string, v T, cleared map[string]bool) nullable.Nullable[T] {
	switch {
	case f.Changed(name):
		return nullable.NewNullableWithValue(v)
	case cleared[name]:
		return nullable.NewNullNullable[T]()
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (c *cli) keysRevoke() *cobra.Command {
	var id, reason string
	cmd := &cobra.Command{
		Use:   "revoke KEY_ID [--reason TEXT]",
		Short: "Revoke a key; it stops working at once",
		Long: `Revokes a key: from the next verification on, it is answered REVOKED. Revoking a revoked
key changes nothing and succeeds.`,
		Example: `  apikeys keys revoke apk_0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b --reason "leaked in a build log"`,
		Args:    cobra.MaximumNArgs(1),
	}
	cmd.Flags().StringVar(&id, "id", "", "the key's id (or give it as the argument)")
	cmd.Flags().StringVar(&reason, "reason", "", "why, kept with the key")
	cmd.RunE = c.runs(func(cmd *cobra.Command, args []string) error {
		id, err := idArg(cmd, args, id, "a key id")
		if err != nil {
			return err
		}
		cl, err := c.client(cmd)
		if err != nil {
			return err
		}
		res, err := cl.RevokeApiKeyWithResponse(cmd.Context(), id, gen.RevokeApiKeyRequest{Reason: ifSet(cmd.Flags(), "reason", reason)})
		if err := check(res, err); err != nil {
			return err
		}
		return c.writeKey(res.Body)
	})
	return cmd
}

func (c *cli) keysRotate() *cobra.Command {
	var (
		id, name string
		grace    days
		exp      expiry
	)
	cmd := &cobra.Command{
		Use:   "rotate KEY_ID [flags]",
		Short: "Replace a key with a new one for the same subject; the new secret is printed once",
		Long: `Issues a new key that keeps the old one's subject, tenant, environment, name, description,
metadata, scopes, intended use and expiry (unless given here). The old key is revoked at
once, or with --grace-period keeps working for that long. The new secret (secretKey) is
printed once, on standard output only, and cannot be shown again: store it at once.`,
		Example: `  apikeys keys rotate apk_0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b --grace-period 1h`,
		Args:    cobra.MaximumNArgs(1),
	}
	f := cmd.Flags()
	f.StringVar(&id, "id", "", "the key's id (or give it as the argument)")
	f.StringVar(&name, "name", "", "a name for the new key (the old key's name when absent)")
	f.Var(&grace, "grace-period", "how long the old key keeps working, in whole seconds up to 30d (such as 1h or 7d)")
	exp.flags(f, "the new key")
	cmd.MarkFlagsMutuallyExclusive("expires-at", "expires-in")
	cmd.RunE = c.runs(func(cmd *cobra.Command, args []string) error {
		id, err := idArg(cmd, args, id, "a key id")
		if err != nil {
			return err
		}
		expiresAt, err := exp.value(f)
		if err != nil {
			return usagef(cmd, "%v", err)
		}
		body := gen.RotateApiKeyRequest{Name: ifSet(f, "name", name), ExpiresAt: expiresAt}
		if f.Changed("grace-period") {
			if grace < 0 || time.Duration(grace)%time.Second != 0 {
				return usagef(cmd, "--grace-period: want a whole number of seconds, 0 or more, such as 90s or 1h")
			}
			s := int(time.Duration(grace) / time.Second)
			body.GracePeriodSeconds = &s
		}
		cl, err := c.client(cmd)
		if err != nil {
			return err
		}
		res, err := cl.RotateApiKeyWithResponse(cmd.Context(), id, body)
		if err := check(res, err); err != nil {
			return err
		}
		if body.GracePeriodSeconds != nil && *body.GracePeriodSeconds > 0 {
			fmt.Fprintf(c.stderr, "The old key %s keeps working for %s, then expires (apikeys keys get shows its replacedById and expiresAt).\n",
				id, time.Duration(grace))
		} else {
			fmt.Fprintf(c.stderr, "The old key %s is revoked.\n", id)
		}
		return c.writeCreated(res.Body, res.JSON201.SecretKey)
	})
	return cmd
}

func (c *cli) keysVerify() *cobra.Command {
	var (
		tenant, env, clientIP string
		required              []string
		perms                 string
	)
	cmd := &cobra.Command{
		Use:   "verify [SECRET | -]",
		Short: "Ask the service whether a secret is a valid key",
		Long: `Asks the service whether a secret is a valid key, as a backend service does, and prints
the verdict. The secret is read from standard input when no argument is given (or the
argument is -), which keeps it out of shell history and of the process list; on a terminal
it is read without echo. Only the first line of standard input is read.

Exit status: 0 when the answer is VALID; 3 when it is any other code (MALFORMED, NOT_FOUND,
TENANT_MISMATCH, ENVIRONMENT_MISMATCH, REVOKED, EXPIRED, DISABLED, IP_NOT_ALLOWED,
INSUFFICIENT_SCOPES, INSUFFICIENT_PERMISSIONS), which is
printed on standard output, and named on standard error; 1 when the service answers with an
error or cannot be reached; 2 on a usage error.`,
		Example: `  printf '%s\n' "$SECRET" | apikeys keys verify --required-scopes api_keys:read
  apikeys keys verify --tenant-id tenant_acme < secret.txt`,
		Args: cobra.MaximumNArgs(1),
	}
	f := cmd.Flags()
	f.StringVar(&tenant, "tenant-id", "", "the tenant the key must belong to")
	f.StringVar(&env, "environment-id", "", "the environment the key must belong to")
	f.StringSliceVar(&required, "required-scopes", nil, "scopes the key must hold (comma-separated or repeated)")
	f.StringVar(&clientIP, "client-ip", "", "the address of the client that presented the key (checked against its IP allowlist, recorded as lastUsedIp)")
	f.StringVar(&perms, "permissions", "", `a permission query the key must satisfy, such as "documents.read AND (billing:read OR admin)"`)
	cmd.RunE = c.runs(func(cmd *cobra.Command, args []string) error {
		var secret string
		if len(args) == 1 && args[0] != "-" {
			secret = args[0]
		} else {
			s, err := c.readSecret()
			if err != nil {
				return fmt.Errorf("read the secret from standard input: %w", err)
			}
			secret = s
		}
		if secret == "" {
			return usagef(cmd, "no secret: give it on standard input or as the argument")
		}
		body := gen.VerifyApiKeyRequest{
			Key:           secret,
			TenantId:      ifSet(f, "tenant-id", tenant),
			EnvironmentId: ifSet(f, "environment-id", env),
			ClientIp:      ifSet(f, "client-ip", clientIP),
			Permissions:   ifSet(f, "permissions", perms),
		}
		if f.Changed("required-scopes") {
			s := toScopes(required)
			body.RequiredScopes = &s
		}
		cl, err := c.client(cmd)
		if err != nil {
			return err
		}
		res, err := cl.VerifyApiKeyWithResponse(cmd.Context(), body)
		if err := check(res, err); err != nil {
			return err
		}
		v := res.JSON200
		if c.json() {
			if err := c.writeRaw(res.Body); err != nil {
				return err
			}
		} else {
			t := newTable(c.stdout)
			t.row("valid", fmt.Sprint(v.Valid))
			t.row("code", string(v.Code))
			t.opt("keyId", v.KeyId)
			t.opt("subjectId", v.SubjectId)
			t.opt("tenantId", v.TenantId)
			t.opt("environmentId", v.EnvironmentId)
			if v.Scopes != nil {
				t.row("scopes", scopesText(*v.Scopes))
			}
			if v.Permissions != nil && len(*v.Permissions) > 0 {
				t.row("permissions", strings.Join(*v.Permissions, ","))
			}
			if v.Metadata != nil {
				t.row("metadata", string(*v.Metadata))
			}
			t.optTime("expiresAt", v.ExpiresAt)
			if err := t.Flush(); err != nil {
				return err
			}
		}
		if !v.Valid || v.Code != "VALID" {
			return &notValidError{code: v.Code}
		}
		return nil
	})
	return cmd
}

// readSecret reads the first line of standard input, without echo on a terminal.
func (c *cli) readSecret() (string, error) {
	if c.stdin == nil {
		return "", nil
	}
	if f, ok := c.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(c.stderr, "Secret (not echoed): ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(c.stderr)
		return strings.TrimSpace(string(b)), err
	}
	// A secret is at most 256 characters; a little more is read to find the line's end.
	b, err := io.ReadAll(io.LimitReader(c.stdin, 4096))
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(line), nil
}
