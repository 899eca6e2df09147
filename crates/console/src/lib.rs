//! The request inspector of `moat http --inspect` (issue 16): ngrok's `127.0.0.1:4040`, with the
//! one thing a tunnel's inspector could not show — who made each request (the client
//! certificate).
//!
//! [`Inspector`] is the proxy's [`RequestObserver`](moat_proxy::http::inspect::RequestObserver)
//! and a telemetry [`Subscriber`](moat_telemetry::events::Subscriber): it keeps finished
//! exchanges and refused handshakes in bounded rings (count and bytes; nothing is written to
//! disk). [`InspectorListener`] serves them on loopback: a page that updates live (`/`), and a
//! JSON API on ngrok's paths where ngrok has one (`/api/requests/http`, `/api/tunnels`,
//! `/api/status`), with filters, replay (with changes) and a Server-Sent Events feed.
//!
//! The page's assets are compiled in (`assets/`); it loads nothing else. Everything a client
//! sent (headers, bodies, certificate fields) reaches the page as JSON and is shown as text.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod api;
mod assets;
mod entry;
mod feed;
mod filters;
mod inspector;
mod listener;
mod refusals;
mod ring;
mod stats;

pub use inspector::{EdgeLink, Inspector, InspectorLimits, ServedEndpoint};
pub use listener::{InspectorListener, ListenError, ListenPolicy};
