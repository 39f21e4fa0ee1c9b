// A small reader of the HTTP Link header (RFC 8288), enough for the service's paging:
// GET /api-keys answers `Link: </api-keys?…&cursor=…>; rel="next"` when more keys match.

/** One link of a Link header: its target and its relation types (lower case). */
export interface Link {
  url: string;
  rels: string[];
}

// A link-value is `<URI-Reference>` followed by `; name=value` parameters, where a value is
// a token or a quoted string; link-values are separated by commas.
const linkValue = /<([^>]*)>((?:\s*;\s*[^;,=\s]+(?:\s*=\s*(?:"(?:[^"\\]|\\.)*"|[^;,\s]*))?)*)/g;
const linkParam = /;\s*([^;,=\s]+)(?:\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;,\s]*)))?/g;

/** parseLinks returns every link of a Link header, in order; none when the header is absent. */
export function parseLinks(header: string | null): Link[] {
  if (header === null) {
    return [];
  }
  const links: Link[] = [];
  for (const m of header.matchAll(linkValue)) {
    const rels: string[] = [];
    for (const p of (m[2] ?? "").matchAll(linkParam)) {
      if (p[1]?.toLowerCase() === "rel") {
        const value = p[2]?.replace(/\\(.)/g, "$1") ?? p[3] ?? "";
        rels.push(...value.toLowerCase().split(/\s+/).filter((r) => r !== ""));
      }
    }
    links.push({ url: m[1] ?? "", rels });
  }
  return links;
}

/**
 * nextLink returns the target of the header's rel="next" link, resolved against base (the
 * service answers a path relative to itself), or undefined when there is no next page.
 */
export function nextLink(header: string | null, base: string | URL): URL | undefined {
  const next = parseLinks(header).find((l) => l.rels.includes("next"));
  return next === undefined ? undefined : new URL(next.url, base);
}
