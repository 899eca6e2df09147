-- What agents may publish (issue 15): agents whose certificate name matches `agents` (a glob) may
-- publish the hostnames in `hostnames` (a JSON array of hostname globs, as the edge reads them).
CREATE TABLE agent_grants (
    id TEXT PRIMARY KEY,
    agents TEXT NOT NULL,
    hostnames TEXT NOT NULL,
    description TEXT NOT NULL,
    metadata TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    version BIGINT NOT NULL
);
