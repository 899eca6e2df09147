//! Helpers for the gateway tests: run `moat http|tls|start` on 127.0.0.1:0, a tiny upstream,
//! certificates made with rcgen or openssl, and clients (rustls in-process, curl, openssl s_client).
//! One file per concept; this one only re-exports them, so tests name `gateway_support::X`.
#![allow(dead_code)] // Each test binary uses a different subset.

mod audit;
mod certificates;
mod clients;
mod moat_process;
mod ports;
mod upstreams;
mod waiting;

pub use audit::audit_events;
pub use certificates::{
    MTLS_FILES, TestCa, Usage, client_files, gateway_pki_dir, openssl, write_pair, write_server_pki,
};
pub use clients::{
    ClientOptions, GET_ROOT, client_config, connect_from, curl, rustls_exchange,
    rustls_exchange_over, rustls_request, s_client,
};
pub use moat_process::{Moat, START_ALL, moat_output};
pub use ports::{closed_port, free_port, with_free_port};
pub use upstreams::{
    UpstreamProcess, read_request_head, start_echo_upstream, start_http_upstream, start_nginx,
    start_observed_http_upstream, start_python,
};
pub use waiting::wait_until;
