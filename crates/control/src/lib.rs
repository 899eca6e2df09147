//! The edge's admin API (issue 15): JSON over HTTPS on its own listener, for operators and their
//! scripts. Admins are known by their client certificates, checked in the TLS handshake against
//! the admin CAs (moat's own medicine), so a client without one never reaches a route.
//!
//! The resources follow ngrok's API where it has one: `/certificate_authorities`, `/endpoints`,
//! `/reserved_domains`, `/agent_grants`, `/join_tokens` and `/tunnel_sessions`, listed in pages
//! (`?limit=&after=`, answered with `next_page_uri`), changed against a version (`ETag` out,
//! `If-Match` or a `version` field in; a stale one is 412), refused with
//! `{error_code, status_code, msg, details}` naming the field. `/openapi.json` documents every
//! route, and the tests hold it to the real answers.
//!
//! The same listener serves the edge console (`/console`, [`Console`]): a page over the API and
//! the edge's telemetry.
//!
//! The API writes the store ([`moat_store::Store`]) itself; what needs the running edge (making
//! a join token, re-reading the store after a change) goes through [`EdgeHooks`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod api;
mod api_error;
mod body;
mod client;
mod console;
mod error;
mod hooks;
mod ids;
mod listener;
mod names;
mod openapi;
mod paging;
mod preconditions;
mod reply;
mod resources;
mod times;

pub use api::{AdminApi, MAX_BODY_BYTES, ROUTES, Route};
pub use client::AdminClient;
pub use console::{AdminBody, Console};
pub use error::ControlError;
pub use hooks::{EdgeHooks, HookError, IssuedToken, TokenRequest};
pub use listener::{AdminListener, AdminTls, DEFAULT_ADMIN_LISTEN};
pub use openapi::OPENAPI_JSON;
