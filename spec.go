// Package apikeys is the domain of the API-key service: keys, subjects and their status,
// the principal (who is calling) and its rules, identifiers, the one error vocabulary and
// the storage interface the use cases need. It knows nothing of HTTP or SQL: the use cases
// live in service, the HTTP edge in server, persistence in store, tokens and hashing in keys.
//
// It also embeds the service's contract, openapi.yaml, for the server to serve and the
// tests to validate against.
package apikeys

import _ "embed"

// OpenAPI is openapi.yaml as it was when the binary was built.
//
//go:embed openapi.yaml
var OpenAPI []byte
