package server

import (
	"bytes"
	"context"

	"github.com/qs/apikeys/gen"
)

// Healthz answers while the process runs.
func (s *Server) Healthz(context.Context, gen.HealthzRequestObject) (gen.HealthzResponseObject, error) {
	return gen.Healthz200JSONResponse{Status: gen.Ok}, nil
}

// Readyz answers 200 when the database does, 503 otherwise.
func (s *Server) Readyz(ctx context.Context, _ gen.ReadyzRequestObject) (gen.ReadyzResponseObject, error) {
	if err := s.svc.Ready(ctx); err != nil {
		return nil, err
	}
	return gen.Readyz200JSONResponse{Status: gen.Ok}, nil
}

// GetOpenApiSpec serves the document the server was built from.
func (s *Server) GetOpenApiSpec(context.Context, gen.GetOpenApiSpecRequestObject) (gen.GetOpenApiSpecResponseObject, error) {
	return gen.GetOpenApiSpec200ApplicationyamlResponse{Body: bytes.NewReader(s.spec), ContentLength: int64(len(s.spec))}, nil
}
