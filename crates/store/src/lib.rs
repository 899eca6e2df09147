//! The edge's control-plane store (issue 15): what must outlive a restart and be shared by several
//! edges, over embedded SQLite (the default, one edge) or PostgreSQL (several edges).
//!
//! One query API serves both through sqlx's `Any` driver: the SQL is written to mean the same on
//! both (integer Unix seconds, text ids made by moat, `UPDATE … RETURNING`), and only the schema
//! files differ where the dialects do. Every write is one statement or one transaction, so a crash
//! leaves either the old state or the new one.

#![forbid(unsafe_code)]

mod authorities;
mod changes;
mod endpoints;
mod error;
mod grants;
mod joins;
mod records;
mod reservations;
mod schema;
mod sessions;
mod state;
mod store;
mod tokens;

pub use authorities::CaRow;
pub use changes::ChangeFeed;
pub use endpoints::{EndpointRefusal, EndpointRow};
pub use error::StoreError;
pub use grants::GrantRow;
pub use joins::{AgentJoin, JoinRefusal, JoinedAgentRow};
pub use records::{Change, Page};
pub use reservations::{AlreadyReserved, ReservationRow};
pub use schema::SCHEMA_VERSION;
pub use sessions::SessionRow;
pub use state::ControlState;
pub use store::{Backend, Store};
pub use tokens::{JoinTokenRow, RedeemRefusal};
