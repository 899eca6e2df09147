//! TLS session resumption across reloads, and without it.

use crate::gateway_support;

use super::{Setup, replace, wait_for_count};

use std::path::Path;
use std::sync::Arc;

use gateway_support::{
    ClientOptions, GET_ROOT, Moat, Usage, client_config, rustls_exchange, start_http_upstream,
    write_pair,
};

/// How a client resumes: TLS 1.3 tickets, TLS 1.2 session ids, TLS 1.2 tickets.
#[derive(Debug, Clone, Copy)]
enum Resumption {
    Tls13Ticket,
    Tls12SessionId,
    Tls12Ticket,
}

/// A client that keeps its session cache between connections.
struct ResumingClient {
    config: Arc<rustls::ClientConfig>,
    crt: std::path::PathBuf,
    key: std::path::PathBuf,
    server_ca: std::path::PathBuf,
    tls12: bool,
}

impl ResumingClient {
    fn new(dir: &Path, name: &str, mode: Resumption) -> ResumingClient {
        let (crt, key) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        let server_ca = dir.join("server-ca.pem");
        let tls12 = !matches!(mode, Resumption::Tls13Ticket);
        let options = ClientOptions {
            server_ca: &server_ca,
            identity: Some((&crt, &key)),
            tls12_only: tls12,
            send: GET_ROOT,
            half_close: false,
        };
        let mut config = (*client_config(&options)).clone();
        if let Resumption::Tls12SessionId = mode {
            config.resumption = rustls::client::Resumption::in_memory_sessions(32)
                .tls12_resumption(rustls::client::Tls12Resumption::SessionIdOnly);
        }
        ResumingClient {
            config: Arc::new(config),
            crt,
            key,
            server_ca,
            tls12,
        }
    }

    /// One GET; the outcome and whether the handshake was resumed.
    /// Asserts that one GET is answered 200 after a handshake of `kind`; `mode` names the case.
    fn assert_served(&self, port: u16, kind: rustls::HandshakeKind, mode: Resumption) {
        let (outcome, seen) = self.get(port);
        assert!(outcome.unwrap().starts_with("HTTP/1.1 200"), "{mode:?}");
        assert_eq!(seen, Some(kind), "{mode:?}");
    }

    fn get(&self, port: u16) -> (Result<String, rustls::Error>, Option<rustls::HandshakeKind>) {
        let options = ClientOptions {
            server_ca: &self.server_ca,
            identity: Some((&self.crt, &self.key)),
            tls12_only: self.tls12,
            send: GET_ROOT,
            half_close: false,
        };
        let exchange = rustls_exchange(port, Arc::clone(&self.config), Some("localhost"), &options);
        (exchange.outcome, exchange.handshake)
    }
}

#[test]
fn a_revoked_client_cannot_resume_after_reload_and_others_still_resume() {
    let setup = Setup::new();
    let path = setup.path();
    let modes = [
        Resumption::Tls13Ticket,
        Resumption::Tls12SessionId,
        Resumption::Tls12Ticket,
    ];
    // Per mode: a client of CA B to be revoked (serials 10..) and one that stays (20..).
    let mut pairs = Vec::new();
    for (index, mode) in modes.iter().enumerate() {
        let revoked = format!("revoked{index}");
        let kept = format!("kept{index}");
        write_pair(
            path,
            &revoked,
            &setup.ca_b.leaf(&revoked, Usage::Client, 10 + index as u64),
        );
        write_pair(
            path,
            &kept,
            &setup.ca_b.leaf(&kept, Usage::Client, 20 + index as u64),
        );
        pairs.push((
            *mode,
            ResumingClient::new(path, &revoked, *mode),
            ResumingClient::new(path, &kept, *mode),
        ));
    }
    let moat = setup.start(&[]);
    let port = moat.port();
    for (mode, revoked, kept) in &pairs {
        for client in [revoked, kept] {
            client.assert_served(port, rustls::HandshakeKind::Full, *mode);
            client.assert_served(port, rustls::HandshakeKind::Resumed, *mode);
        }
    }

    replace(&path.join("crl-b.pem"), setup.ca_b.crl(&[10, 11, 12]).0);
    moat.signal("HUP");
    moat.wait_for_log("reload complete");

    for (mode, revoked, kept) in &pairs {
        let (outcome, _) = revoked.get(port);
        assert_eq!(
            outcome.unwrap_err(),
            rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRevoked),
            "{mode:?}: a session from before the revocation must not let the client back in"
        );
        kept.assert_served(port, rustls::HandshakeKind::Full, *mode);
        kept.assert_served(port, rustls::HandshakeKind::Resumed, *mode);
    }

    // A reload that changes nothing keeps the sessions: clients go on resuming.
    moat.signal("HUP");
    wait_for_count(&moat, "reload complete: nothing changed", 1);
    for (mode, _, kept) in &pairs {
        kept.assert_served(port, rustls::HandshakeKind::Resumed, *mode);
    }
}

#[test]
fn no_session_resumption_makes_every_handshake_full() {
    let setup = Setup::new();
    let path = setup.path();
    let upstream = start_http_upstream().to_string();
    let modes = [
        Resumption::Tls13Ticket,
        Resumption::Tls12SessionId,
        Resumption::Tls12Ticket,
    ];
    for (flags, second) in [
        (&[][..], rustls::HandshakeKind::Resumed),
        (
            &["--no-session-resumption"][..],
            rustls::HandshakeKind::Full,
        ),
    ] {
        let moat = Moat::serve_mtls(path, "http", &upstream, flags);
        moat.wait_for_log(&format!(
            "session_resumption={}",
            second == rustls::HandshakeKind::Resumed
        ));
        for mode in modes {
            let client = ResumingClient::new(path, "alice", mode);
            for expected in [rustls::HandshakeKind::Full, second] {
                let (outcome, kind) = client.get(moat.port());
                assert!(outcome.unwrap().starts_with("HTTP/1.1 200"), "{mode:?}");
                assert_eq!(kind, Some(expected), "{flags:?} {mode:?}");
            }
        }
    }
}
