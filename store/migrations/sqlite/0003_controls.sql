-- The usage controls of a key (enabled, permissions, IP allowlist), one JSON object: see
-- apikeys.Controls. Counters never live here.
ALTER TABLE api_keys ADD COLUMN controls TEXT NOT NULL DEFAULT '{}';
