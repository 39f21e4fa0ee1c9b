package main

import (
	"strings"
	"testing"
)

// TestCLIControls: create with permissions, an allowlist and disabled; verify answers
// DISABLED (exit 3); update --enabled restores it; verify with a permission query and a
// client address passes or names the control that refused; a bad query names its position.
func TestCLIControls(t *testing.T) {
	h := newCLIHarness(t)
	created := decode[keyJSON](t, h.ok("", "keys", "create", "--name", "fenced", "-o", "json",
		"--permissions", "documents.read,billing:*", "--ip-allowlist", "192.0.2.0/24", "--disabled"))
	h.secrets = append(h.secrets, created.SecretKey)
	got := h.ok("", "keys", "get", created.ID).stdout
	if field(t, got, "enabled") != "false" || field(t, got, "permissions") != "documents.read,billing:*" || field(t, got, "ipAllowlist") != "192.0.2.0/24" {
		t.Errorf("get:\n%s", got)
	}
	if r := h.fails(3, created.SecretKey+"\n", "keys", "verify", "--client-ip", "192.0.2.1"); field(t, r.stdout, "code") != "DISABLED" {
		t.Errorf("verify a disabled key:\n%s", r.stdout)
	}
	h.ok("", "keys", "update", created.ID, "--enabled")
	q := "documents.read AND (billing:read OR admin)"
	if r := h.ok(created.SecretKey+"\n", "keys", "verify", "--client-ip", "192.0.2.1", "--permissions", q); field(t, r.stdout, "code") != "VALID" {
		t.Errorf("verify:\n%s", r.stdout)
	}
	if r := h.fails(3, created.SecretKey+"\n", "keys", "verify", "--client-ip", "198.51.100.1"); field(t, r.stdout, "code") != "IP_NOT_ALLOWED" {
		t.Errorf("verify from outside:\n%s", r.stdout)
	}
	if r := h.fails(3, created.SecretKey+"\n", "keys", "verify", "--client-ip", "192.0.2.1", "--permissions", "admin"); field(t, r.stdout, "code") != "INSUFFICIENT_PERMISSIONS" {
		t.Errorf("verify without the permission:\n%s", r.stdout)
	}
	if r := h.fails(1, created.SecretKey+"\n", "keys", "verify", "--permissions", "a AND"); !strings.Contains(r.stderr, "position 6") {
		t.Errorf("a bad query: %s", r.stderr)
	}
	h.ok("", "keys", "update", created.ID, "--clear", "permissions,ip-allowlist", "--enabled=false")
	got = h.ok("", "keys", "get", created.ID).stdout
	if field(t, got, "enabled") != "false" || field(t, got, "permissions") != "-" || field(t, got, "ipAllowlist") != "-" {
		t.Errorf("after clearing:\n%s", got)
	}
}
