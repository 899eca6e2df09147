//! Audit events, Prometheus metrics and health probes of a running moat, by sub-behaviour:
//! `session` (one scripted session checked against both), `flags` (the telemetry flags of
//! `moat http` and where events go without them) and `audit` (what other kinds of connection
//! leave in the audit); `exposition` parses what `/metrics` serves. The certificates and the
//! client they all use are here.

mod audit;
pub(crate) mod exposition;
mod flags;
mod session;

use crate::gateway_support;

use std::path::Path;

use gateway_support::{
    ClientOptions, GET_ROOT, Moat, TestCa, Usage, rustls_request, start_http_upstream, write_pair,
    write_server_pki,
};

const REVOKED_SERIAL: u64 = 0x666;

/// A directory with [`write_certificates`] and `moat KIND UPSTREAM` on it with the usual mTLS
/// files and `extra` flags.
fn serve(kind: &str, upstream: &str, extra: &[&str]) -> (tempfile::TempDir, Moat) {
    let temp = tempfile::tempdir().unwrap();
    write_certificates(temp.path());
    let moat = Moat::serve_mtls(temp.path(), kind, upstream, extra);
    (temp, moat)
}

/// [`serve`] of `moat http` in front of a fresh [`start_http_upstream`].
fn serve_http(extra: &[&str]) -> (tempfile::TempDir, Moat) {
    serve("http", &start_http_upstream().to_string(), extra)
}

/// Certificates for every case of the session, written into `dir`.
fn write_certificates(dir: &Path) {
    write_server_pki(dir, "Server CA", "server-ca.crt", 1);

    let team = TestCa::new("Team CA");
    std::fs::write(dir.join("cas.pem"), &team.pem).unwrap();
    write_pair(dir, "alice", &team.leaf("alice", Usage::Client, 10));
    write_pair(
        dir,
        "mallory",
        &TestCa::new("Foreign CA").leaf("mallory", Usage::Client, 11),
    );
    let expired = team.client_dated("expired", 12, -30, -1);
    write_pair(dir, "expired", &expired);
    let future = team.client_dated("future", 13, 1, 30);
    write_pair(dir, "future", &future);
    write_pair(
        dir,
        "revoked",
        &team.leaf("revoked", Usage::Client, REVOKED_SERIAL),
    );
    write_pair(
        dir,
        "wrong-usage",
        &team.leaf("wrong-usage", Usage::Server, 14),
    );
    // Same issuer name as the trusted CA, another key: the signature cannot verify.
    write_pair(
        dir,
        "forged",
        &TestCa::new("Team CA").leaf("forged", Usage::Client, 15),
    );
    // The CRL's nextUpdate is 7 days away, inside the 14-day warning window.
    std::fs::write(dir.join("team.crl"), team.crl(&[REVOKED_SERIAL]).0).unwrap();
}

/// One TLS connection sending `GET /` as `client` (cert/key files named after it).
fn connect(
    dir: &Path,
    port: u16,
    client: Option<&str>,
    tls12_only: bool,
) -> Result<String, rustls::Error> {
    let cert = client.map(|name| dir.join(format!("{name}.crt")));
    let key = client.map(|name| dir.join(format!("{name}.key")));
    rustls_request(
        port,
        &ClientOptions {
            server_ca: &dir.join("server-ca.crt"),
            identity: cert.as_deref().zip(key.as_deref()),
            tls12_only,
            send: GET_ROOT,
            half_close: false,
        },
    )
}
