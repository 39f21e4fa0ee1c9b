// Package apikeys holds the service's contract, openapi.yaml, for the server to serve and
// the tests to validate against. The code lives in gen, server, store, keys and cmd.
package apikeys

import _ "embed"

// OpenAPI is openapi.yaml as it was when the binary was built.
//
//go:embed openapi.yaml
var OpenAPI []byte
