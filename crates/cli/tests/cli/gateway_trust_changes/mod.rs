//! Trust that changes while moat runs: reloads under load, resumption, stale CRLs.

use crate::gateway_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use gateway_support::{
    ClientOptions, GET_ROOT, Moat, TestCa, Usage, client_config, rustls_exchange, rustls_request,
    start_echo_upstream, start_http_upstream, write_pair, write_server_pki,
};
use rustls_pki_types::ServerName;

/// Writes `contents` to `path` the way deployment tools do: a new file renamed over the old.
fn replace(path: &Path, contents: impl AsRef<[u8]>) {
    let temporary = path.with_extension("new");
    std::fs::write(&temporary, contents).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

/// Waits up to 10 seconds until `needle` appears `count` times in moat's log.
fn wait_for_count(moat: &Moat, needle: &str, count: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = moat.log();
        if log.matches(needle).count() >= count {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "{needle:?} not {count} times in the log:\n{log}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// The client options for the key pair `name` in `dir`, trusting `server-ca.pem`.
fn as_client<'a>(dir: &'a Path, crt: &'a Path, key: &'a Path) -> ClientOptions<'a> {
    ClientOptions {
        server_ca: Box::leak(dir.join("server-ca.pem").into_boxed_path()),
        identity: Some((crt, key)),
        tls12_only: false,
        send: GET_ROOT,
        half_close: false,
    }
}

/// One GET on a new connection as `name`.
fn get_as(dir: &Path, port: u16, name: &str) -> Result<String, rustls::Error> {
    let (crt, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    rustls_request(port, &as_client(dir, &crt, &key))
}

/// A client connection kept open across reloads, sending keep-alive requests one at a time.
struct KeptAlive {
    tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
}

impl KeptAlive {
    fn open(dir: &Path, port: u16, name: &str) -> KeptAlive {
        let (crt, key) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        let config = client_config(&as_client(dir, &crt, &key));
        let connection =
            rustls::ClientConnection::new(config, ServerName::try_from("localhost").unwrap())
                .unwrap();
        let socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        KeptAlive {
            tls: rustls::StreamOwned::new(connection, socket),
        }
    }

    /// One request; returns the status line and body.
    fn get(&mut self) -> std::io::Result<(String, String)> {
        self.tls
            .write_all(b"GET /kept HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
        let mut reader = BufReader::new(&mut self.tls);
        let mut status = String::new();
        reader.read_line(&mut status)?;
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            if line.trim_end().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        Ok((
            status.trim_end().to_string(),
            String::from_utf8(body).unwrap(),
        ))
    }
}

/// Files for an http endpoint whose client CAs and CRL change: CAs A and B; alice (A), bob and
/// carol (B); a server certificate from "Server CA".
struct Setup {
    dir: tempfile::TempDir,
    server_ca: TestCa,
    ca_a: TestCa,
    ca_b: TestCa,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        let server_ca = write_server_pki(path, "Server CA", "server-ca.pem", 100);
        let ca_a = TestCa::new("Clients A");
        let ca_b = TestCa::new("Clients B");
        write_pair(path, "alice", &ca_a.leaf("alice", Usage::Client, 1));
        write_pair(path, "bob", &ca_b.leaf("bob", Usage::Client, 2));
        write_pair(path, "carol", &ca_b.leaf("carol", Usage::Client, 3));
        std::fs::write(path.join("cas.pem"), format!("{}{}", ca_a.pem, ca_b.pem)).unwrap();
        std::fs::write(path.join("crl-b.pem"), ca_b.crl(&[]).0).unwrap();
        Setup {
            dir,
            server_ca,
            ca_a,
            ca_b,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn start(&self, extra: &[&str]) -> Moat {
        let upstream = start_http_upstream();
        std::fs::write(
            self.path().join("moat.toml"),
            format!(
                "[[endpoints]]\nname = \"app\"\nkind = \"http\"\nlisten = \"127.0.0.1:0\"\n\
                 upstream = \"{upstream}\"\ncrt = \"server.crt\"\nkey = \"server.key\"\n\
                 mutual_tls_cas = [\"cas.pem\"]\ncrls = [\"crl-b.pem\"]\n"
            ),
        )
        .unwrap();
        let mut args = vec!["start", "--config", "moat.toml", "--all"];
        args.extend_from_slice(extra);
        Moat::start(self.path(), &args, 1)
    }
}

/// Sends SIGHUP and returns the log line of the reload that fails.
fn failed_reload(moat: &Moat) -> String {
    moat.signal("HUP");
    let log = moat.wait_for_log("reload failed");
    log.lines()
        .find(|line| line.contains("reload failed"))
        .unwrap()
        .to_owned()
}

#[test]
fn reload_under_load_drops_no_request_and_applies_the_new_trust() {
    let setup = Setup::new();
    let moat = setup.start(&[]);
    let port = moat.port();
    let mut kept = KeptAlive::open(setup.path(), port, "carol");
    assert_eq!(kept.get().unwrap().0, "HTTP/1.1 200 OK");

    // Two client loops over new connections, bounded in time and count.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let loops: Vec<_> = (0..2)
        .map(|_| {
            let (dir, stop, done) = (
                setup.path().to_path_buf(),
                Arc::clone(&stop),
                Arc::clone(&done),
            );
            thread::spawn(move || {
                let mut failures = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(60);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    match get_as(&dir, port, "carol") {
                        Ok(response) if response.starts_with("HTTP/1.1 200") => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        other => failures.push(format!("{other:?}")),
                    }
                }
                failures
            })
        })
        .collect();
    // Each reload happens while the loops are busy: a few requests complete between two. If
    // they do not within 10 s the loops are failing or stuck, and the reload would not be
    // under load: the test stops there.
    let requests_between_reloads = |at_least: usize| {
        let deadline = Instant::now() + Duration::from_secs(10);
        let target = done.load(Ordering::Relaxed) + at_least;
        while done.load(Ordering::Relaxed) < target {
            assert!(
                Instant::now() < deadline,
                "the client loops completed {} of {at_least} requests in 10 s; log:\n{}",
                at_least + done.load(Ordering::Relaxed) - target,
                moat.log()
            );
            thread::sleep(Duration::from_millis(5));
        }
    };

    for round in 1..=10u64 {
        let path = setup.path();
        write_pair(
            path,
            "server.next",
            &setup
                .server_ca
                .leaf("localhost", Usage::Server, 100 + round),
        );
        std::fs::rename(path.join("server.next.key"), path.join("server.key")).unwrap();
        std::fs::rename(path.join("server.next.crt"), path.join("server.crt")).unwrap();
        let extra = TestCa::new(&format!("Extra CA {round}"));
        replace(
            &path.join("cas.pem"),
            format!("{}{}{}", setup.ca_a.pem, setup.ca_b.pem, extra.pem),
        );
        replace(&path.join("crl-b.pem"), setup.ca_b.crl(&[500 + round]).0);
        requests_between_reloads(10);
        moat.signal("HUP");
        let log = wait_for_count(&moat, "reload complete", round as usize);
        // This reload's own line: one "cas.pem changed" per reload so far, not an earlier one.
        let round = round as usize;
        assert_eq!(log.matches("reload complete").count(), round, "{log}");
        assert_eq!(log.matches("cas.pem changed").count(), round, "{log}");
        // The connection opened before the first reload keeps working.
        let (status, body) = kept.get().unwrap();
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(body, "hello from upstream /kept");
    }
    requests_between_reloads(10);
    stop.store(true, Ordering::Relaxed);
    let failures: Vec<String> = loops
        .into_iter()
        .flat_map(|client| client.join().unwrap())
        .collect();
    let ok = done.load(Ordering::Relaxed);
    assert!(
        failures.is_empty(),
        "{} requests failed: {failures:?}",
        failures.len()
    );
    assert!(ok > 0, "the client loop made no request");
    eprintln!("{ok} requests on new connections, 11 on one kept-alive connection, 10 reloads");
    let log = moat.log();
    // Every one of the 10 reloads saw the new server certificate and CRL.
    assert_eq!(log.matches("server.crt changed").count(), 10, "{log}");
    assert_eq!(log.matches("crl-b.pem changed").count(), 10, "{log}");

    // CA A removed and bob revoked: both are refused from the next handshake on.
    let path = setup.path();
    replace(&path.join("cas.pem"), &setup.ca_b.pem);
    replace(&path.join("crl-b.pem"), setup.ca_b.crl(&[2]).0);
    moat.signal("HUP");
    wait_for_count(&moat, "reload complete", 11);
    assert_eq!(
        get_as(path, port, "alice").unwrap_err(),
        rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA)
    );
    assert_eq!(
        get_as(path, port, "bob").unwrap_err(),
        rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRevoked)
    );
    assert!(
        get_as(path, port, "carol")
            .unwrap()
            .starts_with("HTTP/1.1 200")
    );

    // A broken CA file: the reload fails, names the file, and the running trust stays.
    replace(&path.join("cas.pem"), "this is not a certificate\n");
    let failure = failed_reload(&moat);
    assert!(failure.contains("cas.pem"), "{failure}");
    assert!(
        failure.contains("still serving the previous configuration"),
        "{failure}"
    );
    // The cause is said once, not again as the error's source.
    assert_eq!(
        failure.matches("cas.pem: holds no certificate").count(),
        1,
        "{failure}"
    );
    assert!(
        get_as(path, port, "carol")
            .unwrap()
            .starts_with("HTTP/1.1 200")
    );
    assert_eq!(
        get_as(path, port, "alice").unwrap_err(),
        rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA)
    );
}

#[test]
fn watch_reloads_when_a_ca_file_is_replaced() {
    let setup = Setup::new();
    let moat = setup.start(&["--watch"]);
    let path = setup.path();
    assert!(
        get_as(path, moat.port(), "alice")
            .unwrap()
            .starts_with("HTTP/1.1 200")
    );
    replace(&path.join("cas.pem"), &setup.ca_b.pem);
    let log = moat.wait_for_log("reload complete");
    assert!(log.contains("trigger=\"--watch:"), "{log}");
    assert!(log.contains("cas.pem changed"), "{log}");
    assert_eq!(
        get_as(path, moat.port(), "alice").unwrap_err(),
        rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA)
    );
    assert!(
        get_as(path, moat.port(), "bob")
            .unwrap()
            .starts_with("HTTP/1.1 200")
    );
}

#[test]
fn a_config_file_reload_applies_new_keys_binds_and_releases_addresses_and_survives_bad_toml() {
    let setup = Setup::new();
    let moat = setup.start(&[]);
    let path = setup.path();
    let port = moat.port();
    std::fs::write(path.join("ca-b.pem"), &setup.ca_b.pem).unwrap();
    let echo = start_echo_upstream();
    let config = std::fs::read_to_string(path.join("moat.toml")).unwrap();
    let narrowed = config.replace(
        "mutual_tls_cas = [\"cas.pem\"]",
        "mutual_tls_cas = [\"ca-b.pem\"]",
    );
    let extra = format!(
        "[[endpoints]]\nname = \"extra\"\nkind = \"tls\"\nlisten = \"127.0.0.1:0\"\n\
         upstream = \"{echo}\"\ncrt = \"server.crt\"\nkey = \"server.key\"\n\
         mutual_tls_cas = [\"ca-b.pem\"]\n"
    );
    replace(&path.join("moat.toml"), format!("{narrowed}\n{extra}"));
    moat.signal("HUP");
    let log = moat.wait_for_log("reload complete");
    assert!(log.contains("endpoint app: configuration changed"), "{log}");
    assert_eq!(
        get_as(path, port, "alice").unwrap_err(),
        rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA)
    );
    // The added endpoint listens on a new socket.
    let added: u16 = log
        .lines()
        .find_map(|line| line.split("endpoint extra added on 127.0.0.1:").nth(1))
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no address for the added endpoint:\n{log}"));
    let (crt, key) = (path.join("bob.crt"), path.join("bob.key"));
    let options = ClientOptions {
        send: b"ping",
        half_close: true,
        ..as_client(path, &crt, &key)
    };
    let exchange = rustls_exchange(added, client_config(&options), Some("localhost"), &options);
    assert_eq!(exchange.outcome.unwrap(), "ping");

    // Broken TOML: the reload fails naming the file, and everything keeps serving.
    replace(&path.join("moat.toml"), "[[endpoints]\nname = ");
    let failure = failed_reload(&moat);
    assert!(failure.contains("moat.toml: not valid TOML"), "{failure}");
    assert!(
        get_as(path, port, "bob")
            .unwrap()
            .starts_with("HTTP/1.1 200")
    );

    // Without the app endpoint its address is released.
    replace(&path.join("moat.toml"), &extra);
    moat.signal("HUP");
    let log = wait_for_count(&moat, "reload complete", 2);
    assert!(log.contains("endpoint app removed"), "{log}");
    assert!(
        log.contains(&format!(
            "stopped listening on 127.0.0.1:{port}: no endpoint is configured there any more; \
             its open connections go on"
        )),
        "{log}"
    );
    moat.wait_for_log("stopped listening: the address left the configuration");
    assert_eq!(
        TcpStream::connect(("127.0.0.1", port)).unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused
    );
    let exchange = rustls_exchange(added, client_config(&options), Some("localhost"), &options);
    assert_eq!(exchange.outcome.unwrap(), "ping");
}

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

/// A `--policy` file letting in only the client whose CN is `name`.
fn policy_allowing(name: &str) -> String {
    format!(
        "[[rules]]\nname = \"only-{name}\"\naction = \"allow\"\ninclude = [{{ common_name = \"{name}\" }}]\n"
    )
}

/// The status line of one GET as `name`.
fn status_as(dir: &Path, port: u16, name: &str) -> String {
    let response = get_as(dir, port, name).unwrap();
    response.lines().next().unwrap_or_default().to_owned()
}

/// `moat http --policy policy.toml EXTRA` letting in alice, and bob refused.
fn start_with_policy(setup: &Setup, extra: &[&str]) -> Moat {
    let path = setup.path();
    std::fs::write(path.join("policy.toml"), policy_allowing("alice")).unwrap();
    let upstream = start_http_upstream().to_string();
    let mut flags = vec!["--policy", "policy.toml"];
    flags.extend_from_slice(extra);
    let moat = Moat::serve_mtls(path, "http", &upstream, &flags);
    assert_eq!(status_as(path, moat.port(), "alice"), "HTTP/1.1 200 OK");
    assert_eq!(
        status_as(path, moat.port(), "bob"),
        "HTTP/1.1 403 Forbidden"
    );
    moat
}

/// After a reload that switched the policy from alice to bob.
fn assert_policy_switched_to_bob(path: &Path, moat: &Moat) {
    let log = moat.wait_for_log("reload complete");
    assert!(
        log.contains("reload: endpoint http: policy.toml changed"),
        "{log}"
    );
    // The rules are the file's change, not a change of the flags.
    assert!(!log.contains("configuration changed"), "{log}");
    assert_eq!(
        status_as(path, moat.port(), "alice"),
        "HTTP/1.1 403 Forbidden"
    );
    assert_eq!(status_as(path, moat.port(), "bob"), "HTTP/1.1 200 OK");
}

#[test]
fn sighup_rereads_the_policy_file_of_moat_http() {
    let setup = Setup::new();
    let path = setup.path();
    let moat = start_with_policy(&setup, &[]);
    replace(&path.join("policy.toml"), policy_allowing("bob"));
    moat.signal("HUP");
    assert_policy_switched_to_bob(path, &moat);
}

#[test]
fn watch_reloads_moat_http_when_its_policy_file_changes() {
    let setup = Setup::new();
    let path = setup.path();
    let moat = start_with_policy(&setup, &["--watch"]);
    replace(&path.join("policy.toml"), policy_allowing("bob"));
    assert_policy_switched_to_bob(path, &moat);
    let log = moat.log();
    assert!(log.contains("trigger=\"--watch: policy.toml\""), "{log}");
}

#[test]
fn a_broken_policy_file_on_reload_keeps_the_old_rules() {
    let setup = Setup::new();
    let path = setup.path();
    let moat = start_with_policy(&setup, &[]);
    replace(
        &path.join("policy.toml"),
        "[[rules]]\nname = \"typo\"\naction = \"allow\"\ninclude = [{ commonname = \"bob\" }]\n",
    );
    moat.signal("HUP");
    let log = moat.wait_for_log("reload failed");
    let failure: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("reload failed"))
        .collect();
    assert_eq!(failure.len(), 1, "{log}");
    assert!(
        failure[0].contains(
            "reload failed, still serving the previous configuration: moat http: --policy \
             policy.toml: rules[0] (\"typo\").include[0]: unknown selector \"commonname\""
        ),
        "{log}"
    );
    assert_eq!(status_as(path, moat.port(), "alice"), "HTTP/1.1 200 OK");
    assert_eq!(
        status_as(path, moat.port(), "bob"),
        "HTTP/1.1 403 Forbidden"
    );
}

#[test]
fn a_server_key_readable_by_others_is_warned_about_at_load_and_reload() {
    use std::os::unix::fs::PermissionsExt as _;
    let setup = Setup::new();
    let path = setup.path();
    let key = path.join("server.key");
    let set_mode = |mode: u32| {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    let warning = |mode: &str| {
        format!(
            "WARN moat_gateway::tls: server.key: private key is readable by group or others \
             (mode {mode}); run chmod 600 server.key"
        )
    };
    set_mode(0o644);
    let upstream = start_http_upstream().to_string();
    let moat = Moat::serve_mtls(path, "http", &upstream, &[]);
    moat.wait_for_log(&warning("0644"));

    // A new certificate and key, the key kept private: loaded without a warning.
    write_pair(
        path,
        "server",
        &setup.server_ca.leaf("localhost", Usage::Server, 101),
    );
    set_mode(0o600);
    moat.signal("HUP");
    let log = wait_for_count(&moat, "reload complete", 1);
    assert_eq!(log.matches("private key is readable").count(), 1, "{log}");

    write_pair(
        path,
        "server",
        &setup.server_ca.leaf("localhost", Usage::Server, 102),
    );
    set_mode(0o640);
    moat.signal("HUP");
    wait_for_count(&moat, "reload complete", 2);
    moat.wait_for_log(&warning("0640"));
}

/// `moat http` with a CRL of CA A whose nextUpdate passed yesterday.
fn start_with_stale_crl(setup: &Setup, extra: &[&str]) -> Moat {
    let path = setup.path();
    let yesterday = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    std::fs::write(
        path.join("stale.crl"),
        setup.ca_a.crl_until(&[], yesterday).0,
    )
    .unwrap();
    let upstream = start_http_upstream().to_string();
    let args = [&["--crl", "stale.crl"][..], extra].concat();
    Moat::serve_mtls(path, "http", &upstream, &args)
}

#[test]
fn a_stale_crl_is_logged_at_load_and_by_default_its_clients_still_pass() {
    let setup = Setup::new();
    let moat = start_with_stale_crl(&setup, &[]);
    let log = moat.wait_for_log("CRL is past its nextUpdate");
    let line = log
        .lines()
        .find(|line| line.contains("CRL is past its nextUpdate"))
        .unwrap();
    assert!(
        line.contains("ERROR") && line.contains("stale.crl"),
        "{line}"
    );
    assert!(line.contains("crl_expired = \"warn\""), "{line}");
    assert!(
        get_as(setup.path(), moat.port(), "alice")
            .unwrap()
            .starts_with("HTTP/1.1 200")
    );
}

#[test]
fn crl_expired_refuse_refuses_the_clients_of_that_ca_with_unknown_ca() {
    let setup = Setup::new();
    let moat = start_with_stale_crl(&setup, &["--crl-expired", "refuse"]);
    let port = moat.port();
    assert_eq!(
        get_as(setup.path(), port, "alice").unwrap_err(),
        rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA)
    );
    // CA B has no stale CRL, so its clients pass.
    assert!(
        get_as(setup.path(), port, "bob")
            .unwrap()
            .starts_with("HTTP/1.1 200")
    );

    // A fresh CRL and a SIGHUP (moat http re-reads the files its flags name) let them back in.
    replace(&setup.path().join("stale.crl"), setup.ca_a.crl(&[]).0);
    moat.signal("HUP");
    let log = moat.wait_for_log("reload complete");
    assert!(log.contains("stale.crl changed"), "{log}");
    assert!(
        get_as(setup.path(), port, "alice")
            .unwrap()
            .starts_with("HTTP/1.1 200")
    );
}
