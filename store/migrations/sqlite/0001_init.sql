-- SQLite keeps timestamps as fixed-width RFC 3339 UTC text (so they compare as strings) and JSON as text.
-- Subjects are the identities behind keys; a rotated key keeps its subject.
CREATE TABLE subjects (
    id             TEXT PRIMARY KEY,
    type           TEXT NOT NULL,
    tenant_id      TEXT,
    environment_id TEXT,
    created_at     TEXT NOT NULL
);

CREATE TABLE api_keys (
    id                    TEXT PRIMARY KEY,
    subject_id            TEXT NOT NULL REFERENCES subjects (id),
    tenant_id             TEXT,
    environment_id        TEXT,
    name                  TEXT NOT NULL,
    description           TEXT,
    lookup_handle         TEXT NOT NULL,
    prefix                TEXT NOT NULL,
    last_four             TEXT NOT NULL,
    secret_hash           TEXT NOT NULL,
    hash_algo             TEXT NOT NULL,
    created_by_subject_id TEXT NOT NULL,
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL,
    expires_at            TEXT,
    intended_use          TEXT,
    metadata              TEXT, -- kept as sent (JSONB would re-space and re-order it)
    scopes                TEXT NOT NULL DEFAULT '[]',
    last_used_at          TEXT,
    last_used_ip          TEXT,
    revoked_at            TEXT,
    revoked_by_subject_id TEXT,
    revoked_reason        TEXT,
    rotated_from_id       TEXT REFERENCES api_keys (id),
    replaced_by_id        TEXT REFERENCES api_keys (id),
    CONSTRAINT api_keys_lookup_handle_key UNIQUE (lookup_handle)
);

-- Lists are newest first with keyset pagination on (created_at, id); every filter has an
-- index that serves both the filter and the order.
CREATE INDEX api_keys_created_idx ON api_keys (created_at DESC, id DESC);
CREATE INDEX api_keys_tenant_idx ON api_keys (tenant_id, created_at DESC, id DESC);
CREATE INDEX api_keys_environment_idx ON api_keys (environment_id, created_at DESC, id DESC);
CREATE INDEX api_keys_subject_idx ON api_keys (subject_id, created_at DESC, id DESC);
CREATE INDEX api_keys_created_by_idx ON api_keys (created_by_subject_id, created_at DESC, id DESC);
CREATE INDEX api_keys_intended_use_idx ON api_keys (intended_use, created_at DESC, id DESC);
-- status: revoked keys, and unrevoked keys (active or expired, told apart by expires_at).
CREATE INDEX api_keys_revoked_idx ON api_keys (created_at DESC, id DESC) WHERE revoked_at IS NOT NULL;
CREATE INDEX api_keys_unrevoked_idx ON api_keys (created_at DESC, id DESC) WHERE revoked_at IS NULL;
CREATE INDEX api_keys_expires_idx ON api_keys (expires_at) WHERE revoked_at IS NULL;
