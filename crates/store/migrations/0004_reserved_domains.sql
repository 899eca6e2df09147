-- Hostnames reserved for one agent identity (issue 15): no other agent may publish them.
CREATE TABLE reserved_domains (
    id TEXT PRIMARY KEY,
    hostname TEXT NOT NULL UNIQUE,
    agent TEXT NOT NULL,
    description TEXT NOT NULL,
    metadata TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    version BIGINT NOT NULL
);
