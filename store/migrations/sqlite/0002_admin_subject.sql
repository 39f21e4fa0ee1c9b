-- The subject of the admin token, which every key the admin creates or revokes names
-- (createdBySubjectId, revokedBySubjectId): built in, so that GET /subjects/subject_admin
-- answers like any other subject. It has no key: the admin token is not stored.
INSERT INTO subjects (id, type, tenant_id, environment_id, created_at)
VALUES ('subject_admin', 'admin', NULL, NULL, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
ON CONFLICT (id) DO NOTHING;
