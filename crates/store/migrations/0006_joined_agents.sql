-- Agents that joined with a token (issue 15): one per name, claimed in the join's transaction, so
-- a second agent cannot join under a name (and so share its certificate name and grant).
CREATE TABLE joined_agents (
    name TEXT PRIMARY KEY,
    token_id TEXT NOT NULL,
    grant_id TEXT NOT NULL,
    serial TEXT NOT NULL,
    joined_at BIGINT NOT NULL
);

-- Facts every edge sharing the store must agree on, e.g. the SHA-256 of the agent CA that signs
-- joined agents' certificates and that join tokens pin.
CREATE TABLE edge_facts (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
