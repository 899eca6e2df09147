//! The `moat` binary end to end, as one test binary (as ripgrep's `tests/tests.rs`): each module
//! is one behaviour users see; `common` (scratch directories, running moat, openssl and cfssl),
//! `gateway_support` (a running moat, test CAs, upstreams, TLS clients), `pki_support` (openssl
//! keys, CSRs and certificates, checks of what `moat pki` wrote) and `browser` (headless
//! Chromium for moat's pages) are the shared kit.

mod browser;
mod common;
mod gateway_support;
mod pki_support;

mod access_policy;
mod audit_report;
mod config_check;
mod demo;
mod edge_console;
mod gateway_ngrok_guide;
mod gateway_operating;
mod gateway_proxy_protocol;
mod gateway_refusals;
mod gateway_sni;
mod gateway_start;
mod gateway_trust_changes;
mod grpc;
mod hostile_requests;
mod http_proxy_e2e;
mod inspector;
mod memcpy_tuning;
mod monitoring;
mod pki_ca;
mod pki_cfssl;
mod pki_concurrency;
mod pki_crl;
mod pki_errors;
mod pki_inspect;
mod pki_issue;
mod pki_p12;
mod pki_sign;
mod readme;
mod telemetry;
mod tls_forward;
mod tunnel;
mod verify_agrees;
