-- The control plane's objects (issue 15). Every row an API client can change carries a version,
-- raised by each change, for If-Match / lost-update checks. Booleans are 0/1 integers and times
-- Unix seconds, so that one text serves SQLite and PostgreSQL.
CREATE TABLE certificate_authorities (
    id TEXT PRIMARY KEY,
    ca_pem TEXT NOT NULL,
    subject_common_name TEXT NOT NULL,
    not_before BIGINT NOT NULL,
    not_after BIGINT NOT NULL,
    description TEXT NOT NULL,
    metadata TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    version BIGINT NOT NULL
);

CREATE TABLE endpoints (
    id TEXT PRIMARY KEY,
    hostname TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    terminate_at TEXT NOT NULL,
    pool BIGINT NOT NULL,
    rules TEXT NOT NULL,
    description TEXT NOT NULL,
    metadata TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    version BIGINT NOT NULL
);

-- Which CAs an endpoint trusts; a CA in use cannot be deleted.
CREATE TABLE endpoint_cas (
    endpoint_id TEXT NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
    ca_id TEXT NOT NULL REFERENCES certificate_authorities (id),
    PRIMARY KEY (endpoint_id, ca_id)
);
