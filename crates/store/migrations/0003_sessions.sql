-- Agent sessions held under leases (issue 15): an edge renews the lease of each session it
-- serves; a crashed edge stops renewing, and its sessions lapse by themselves. Deleting a row
-- asks its edge to disconnect the agent (the next renewal finds it gone).
CREATE TABLE tunnel_sessions (
    id TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    edge TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    lease_until BIGINT NOT NULL
);
CREATE INDEX tunnel_sessions_by_agent ON tunnel_sessions (agent);
