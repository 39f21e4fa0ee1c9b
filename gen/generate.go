// Package gen holds the code oapi-codegen generates from openapi.yaml: models, the Echo
// strict server, a client and the embedded spec. Nothing here is edited by hand.
package gen

//go:generate go tool oapi-codegen -config config.yaml ../openapi.yaml
