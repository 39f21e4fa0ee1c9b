package server

import (
	"context"
	"errors"

	"github.com/qs/apikeys/gen"
)

// GetMetrics serves the metrics. (Being built: issue 8.)
func (s *Server) GetMetrics(context.Context, gen.GetMetricsRequestObject) (gen.GetMetricsResponseObject, error) {
	return nil, errors.New("metrics are not built yet")
}
