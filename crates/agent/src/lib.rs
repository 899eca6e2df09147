//! The agent: publishes a gateway's endpoints through an edge over one outbound connection.
//!
//! The agent dials the edge (TLS 1.3, its joined certificate, the edge's CA pinned at join),
//! registers each endpoint on the session's control channel and serves the streams the edge
//! opens: for an endpoint whose TLS ends at the edge, a stream is a connection to the local
//! upstream; for one whose TLS ends here, the stream carries the client's TLS bytes and goes
//! through the agent's own gateway (the [`moat_gateway::Entrance`] of its address) exactly as
//! an accepted socket would, with the client's address from the stream header. A stream whose
//! header claims the other kind of termination is refused, so an edge cannot skip the agent's
//! own client verification. When the session ends the agent reconnects with exponential
//! backoff and jitter (0.5 s doubling to 30 s) and registers the same hostnames again.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod agent;
mod backoff;
mod publish;

pub use agent::{Agent, AgentError, AgentEvent};
