package server

import (
	"context"
	"errors"

	"github.com/qs/apikeys/gen"
)

// GetDocs serves the API reference page. (Being built: issue 8.)
func (s *Server) GetDocs(context.Context, gen.GetDocsRequestObject) (gen.GetDocsResponseObject, error) {
	return nil, errors.New("the reference page is not built yet")
}
