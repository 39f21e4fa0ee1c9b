// Walks through the life of API keys against a running apikeys service, with types
// generated from openapi.yaml (src/schema.d.ts) and no casts: create keys for a tenant, list
// them page by page following the Link header, verify a secret, rotate it, revoke the new key
// and verify again. It prints what it did and exits 1 at the first unexpected answer.
//
//   APIKEYS_URL    the service (default http://localhost:8080)
//   APIKEYS_TOKEN  a bearer token: the admin token, or a key with the api_keys:* scopes

import { randomUUID } from "node:crypto";
import createClient from "openapi-fetch";
import { nextLink } from "./link.js";
import type { components, paths } from "./schema.js";

type ApiKey = components["schemas"]["ApiKey"];
type CreatedApiKey = components["schemas"]["CreatedApiKey"];
type Problem = components["schemas"]["Problem"];
type Scope = components["schemas"]["Scope"];
type VerifyCode = components["schemas"]["VerifyCode"];

const KEYS = 5; // keys created
const LIMIT = 2; // page size: 5 keys make three pages
const MAX_PAGES = 10; // a server whose Link never ends is a failure, not a hang
const TIMEOUT_MS = 15_000; // each request

/** Unexpected is an answer the walkthrough did not expect; its message says what and why. */
class Unexpected extends Error {}

function check(condition: boolean, message: string): asserts condition {
  if (!condition) {
    throw new Unexpected(message);
  }
}

/**
 * describe renders an error body on one line: problem+json, or text (431, when the request's
 * headers are too large for the server to read it).
 */
function describe(error: Problem | string | undefined): string {
  if (error === undefined || error === "") {
    return "no body";
  }
  if (typeof error === "string") {
    return error.trim();
  }
  const fields = (error.errors ?? []).map((f) => `${f.in} ${f.field}: ${f.detail}`);
  return [error.title, error.detail, ...fields].filter((s) => s !== undefined && s !== "").join("; ");
}

/** ok returns the body of an answer of status want, or throws saying what came instead. */
function ok<T>(what: string, want: number, r: { data?: T; error?: Problem | string; response: Response }): T {
  if (r.response.status !== want || r.data === undefined) {
    throw new Unexpected(`${what}: want HTTP ${want}, got ${r.response.status} (${describe(r.error)})`);
  }
  return r.data;
}

/** show names a key without its secret. */
function show(k: ApiKey | CreatedApiKey): string {
  return `${k.id} (${k.prefix}…${k.lastFour})`;
}

function sameScopes(a: Scope[], b: Scope[]): boolean {
  return a.length === b.length && a.every((s) => b.includes(s));
}

async function main(): Promise<void> {
  const baseUrl = (process.env["APIKEYS_URL"] || "http://localhost:8080").replace(/\/+$/, "");
  const token = process.env["APIKEYS_TOKEN"];
  if (token === undefined || token === "") {
    throw new Unexpected("set APIKEYS_TOKEN to a bearer token (the admin token `make run` prints)");
  }
  const api = createClient<paths>({
    baseUrl,
    headers: { Authorization: `Bearer ${token}` },
    fetch: (request) => fetch(request, { signal: AbortSignal.timeout(TIMEOUT_MS) }),
  });

  // A tenant of its own, so that runs against the same service do not see each other's keys.
  const tenantId = `tenant_ts_${randomUUID().slice(0, 8)}`;
  const scopes: Scope[] = ["api_keys:verify"];
  // Permissions are the calling service's own vocabulary; verify answers whether a key has them.
  const permissions = ["documents.read", "billing:*"];

  // 1. Create a few keys for the tenant.
  const created: CreatedApiKey[] = [];
  for (let i = 1; i <= KEYS; i++) {
    const key = ok(
      `create key ${i}`,
      201,
      await api.POST("/api-keys", {
        body: { name: `TypeScript example ${i}`, tenantId, intendedUse: "ts-example", scopes, permissions },
      }),
    );
    check(key.tenantId === tenantId, `create key ${i}: tenantId is ${key.tenantId}, want ${tenantId}`);
    check(key.status === "active", `create key ${i}: status is ${key.status}, want active`);
    check(sameScopes(key.scopes, scopes), `create key ${i}: scopes are [${key.scopes.join(", ")}], want [${scopes.join(", ")}]`);
    created.push(key);
  }
  console.log(`created ${created.length} keys for ${tenantId}: ${created.map(show).join(", ")}`);

  // 2. List them, LIMIT at a time, following Link: <…>; rel="next" from page to page.
  const pages: ApiKey[][] = [];
  let cursor: string | undefined;
  for (;;) {
    check(pages.length < MAX_PAGES, `list: still a rel="next" link after ${MAX_PAGES} pages`);
    const query = cursor === undefined ? { tenantId, limit: LIMIT } : { tenantId, limit: LIMIT, cursor };
    const r = await api.GET("/api-keys", { params: { query } });
    const page = ok(`list page ${pages.length + 1}`, 200, r);
    check(page.length > 0 && page.length <= LIMIT, `list page ${pages.length + 1}: ${page.length} keys, want 1 to ${LIMIT}`);
    pages.push(page);
    const next = nextLink(r.response.headers.get("Link"), baseUrl);
    if (next === undefined) {
      break;
    }
    // The next page's link keeps the filter and the page size and adds an opaque cursor.
    check(next.pathname.endsWith("/api-keys"), `list: the next link points to ${next.pathname}`);
    check(next.searchParams.get("tenantId") === tenantId, `list: the next link lost the tenantId filter: ${next.href}`);
    check(next.searchParams.get("limit") === String(LIMIT), `list: the next link changed the page size: ${next.href}`);
    const c = next.searchParams.get("cursor");
    check(c !== null && c !== "", `list: the next link has no cursor: ${next.href}`);
    cursor = c;
  }
  check(pages.length >= 2, `list: ${pages.length} page for ${KEYS} keys at ${LIMIT} a page, want a rel="next" link`);
  const seen = new Set<string>();
  pages.forEach((page, i) => {
    for (const k of page) {
      check(!seen.has(k.id), `list: ${k.id} is on page ${i + 1} and on an earlier page`);
      check(k.tenantId === tenantId, `list: ${k.id} of tenant ${k.tenantId} is in the list of ${tenantId}`);
      seen.add(k.id);
    }
  });
  for (const k of created) {
    check(seen.has(k.id), `list: ${k.id} was created but is on no page`);
  }
  console.log(
    `listed ${seen.size} keys of ${tenantId} in ${pages.length} pages of at most ${LIMIT} ` +
      `(${pages.map((p) => p.length).join(" + ")}), following Link rel="next"; no key on two pages`,
  );

  // 3. Verify a secret, as a backend service does on every request it serves.
  const first = created[0];
  check(first !== undefined, "no key was created");
  const verify = async (what: string, secret: string, want: VerifyCode, query?: string) => {
    const body = query === undefined ? { key: secret, tenantId } : { key: secret, tenantId, permissions: query };
    const v = ok(what, 200, await api.POST("/api-keys/verify", { body }));
    check(v.code === want && v.valid === (want === "VALID"), `${what}: code ${v.code} (valid ${v.valid}), want ${want}`);
    return v;
  };
  const valid = await verify(`verify ${first.id}`, first.secretKey, "VALID");
  check(valid.keyId === first.id, `verify: keyId is ${valid.keyId}, want ${first.id}`);
  check(valid.subjectId === first.subjectId, `verify: subjectId is ${valid.subjectId}, want ${first.subjectId}`);
  console.log(`verified ${show(first)}: ${valid.code}, subject ${valid.subjectId}`);
  const q = "documents.read AND (billing:refund OR admin)";
  await verify(`verify ${first.id} for ${q}`, first.secretKey, "VALID", q);
  await verify(`verify ${first.id} for documents.write`, first.secretKey, "INSUFFICIENT_PERMISSIONS", "documents.write");
  console.log(`permissions: "${q}" VALID, "documents.write" INSUFFICIENT_PERMISSIONS`);

  // 4. Rotate it: a new secret for the same subject; the old key is revoked at once.
  const rotated = ok(
    `rotate ${first.id}`,
    201,
    await api.POST("/api-keys/{id}/rotate", { params: { path: { id: first.id } }, body: {} }),
  );
  check(rotated.id !== first.id, `rotate: the new key has the old id ${rotated.id}`);
  check(rotated.secretKey !== first.secretKey, "rotate: the new key has the old secret");
  check(rotated.subjectId === first.subjectId, `rotate: subject ${rotated.subjectId}, want ${first.subjectId}`);
  check(rotated.rotatedFromId === first.id, `rotate: rotatedFromId is ${rotated.rotatedFromId}, want ${first.id}`);
  check(sameScopes(rotated.scopes, first.scopes), `rotate: scopes [${rotated.scopes.join(", ")}], want [${first.scopes.join(", ")}]`);
  check(
    JSON.stringify(rotated.permissions) === JSON.stringify(permissions),
    `rotate: permissions [${rotated.permissions?.join(", ")}], want [${permissions.join(", ")}]`,
  );
  console.log(`rotated ${first.id} to ${show(rotated)}: new secret, same subject ${rotated.subjectId}`);

  // 5. Revoke the new key, then verify its secret again.
  const revoked = ok(
    `revoke ${rotated.id}`,
    200,
    await api.POST("/api-keys/{id}/revoke", {
      params: { path: { id: rotated.id } },
      body: { reason: "TypeScript example: done" },
    }),
  );
  check(revoked.status === "revoked", `revoke: status is ${revoked.status}, want revoked`);
  check(revoked.revokedAt !== undefined, "revoke: no revokedAt");
  // The spec leaves updatedAt optional (the documentation pages it reproduces show keys
  // without it) and says what its absence means: the key was never changed after createdAt.
  const updatedAt = revoked.updatedAt ?? revoked.createdAt;
  check(
    Date.parse(updatedAt) >= Date.parse(revoked.revokedAt) && Date.parse(revoked.revokedAt) >= Date.parse(revoked.createdAt),
    `revoke: createdAt ${revoked.createdAt}, revokedAt ${revoked.revokedAt}, updatedAt ${updatedAt}: want them in this order`,
  );
  console.log(`revoked ${show(revoked)} at ${revoked.revokedAt}`);
  const after = await verify(`verify ${rotated.id} after revoking it`, rotated.secretKey, "REVOKED");
  console.log(`verified ${rotated.id} again: ${after.code}`);
  const old = await verify(`verify the rotated-out ${first.id}`, first.secretKey, "REVOKED");
  console.log(`verified the rotated-out ${first.id}: ${old.code}`);
  console.log("ok: every answer was as expected");
}

main().catch((err: unknown) => {
  if (err instanceof Unexpected) {
    console.error(`FAIL: ${err.message}`);
  } else if (err instanceof Error) {
    // fetch reports a refused connection or a timeout as its cause.
    const cause = err.cause instanceof Error ? `: ${err.cause.message}` : "";
    console.error(`FAIL: ${err.name}: ${err.message}${cause}`);
  } else {
    console.error("FAIL:", err);
  }
  process.exitCode = 1;
});
