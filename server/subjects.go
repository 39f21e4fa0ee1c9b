package server

import (
	"context"

	"github.com/qs/apikeys/gen"
)

// GetSubject returns the subject behind a key.
func (s *Server) GetSubject(ctx context.Context, req gen.GetSubjectRequestObject) (gen.GetSubjectResponseObject, error) {
	sub, err := s.svc.GetSubject(ctx, principal(ctx), req.Id)
	if err != nil {
		return nil, err
	}
	return gen.GetSubject200JSONResponse{
		Id: sub.ID, Type: gen.SubjectType(sub.Type), CreatedAt: sub.CreatedAt,
		TenantId: optional(sub.TenantID), EnvironmentId: optional(sub.EnvironmentID),
	}, nil
}
