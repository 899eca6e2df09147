//! The admin API's tests, one binary with one kit (`support`): every route through the real TLS
//! listener, the handshake's refusals, versions under concurrent changes on SQLite and
//! PostgreSQL, and the OpenAPI document held to the real answers.

mod handshake;
mod openapi;
/// The throwaway PostgreSQL of moat-store's tests, shared rather than copied.
#[path = "../../../store/tests/support/mod.rs"]
mod postgres;
mod routes;
mod schema;
mod support;
mod versions;
