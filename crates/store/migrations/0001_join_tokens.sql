-- Join tokens (issue 15): only the SHA-256 of each secret, redeemed at most once.
CREATE TABLE join_tokens (
    id TEXT PRIMARY KEY,
    secret_sha256 TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    grant_json TEXT NOT NULL,
    used_at BIGINT,
    used_by TEXT
);
