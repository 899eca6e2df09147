//! Reloads of the server key, CAs and config file: under load, on a watched file, with a bad
//! config, and the warning about a server key others can read.

use crate::gateway_support;

use super::{Setup, as_client, get_as, replace, wait_for_count};

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use gateway_support::{
    ClientOptions, Moat, TestCa, Usage, client_config, rustls_exchange, start_echo_upstream,
    start_http_upstream, write_pair,
};
use rustls_pki_types::ServerName;

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
