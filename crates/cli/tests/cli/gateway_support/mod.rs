//! Helpers for the gateway tests: run `moat http|tls|start` on 127.0.0.1:0, a tiny upstream,
//! certificates made with rcgen or openssl, and clients (rustls in-process, curl, openssl s_client).
#![allow(dead_code)] // Each test binary uses a different subset.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SerialNumber,
};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// A running moat process; killed when dropped.
pub struct Moat {
    child: Child,
    /// `(endpoint name, address)` from each ready line, in order.
    pub endpoints: Vec<(String, SocketAddr)>,
    /// Every stdout line read up to the last ready line.
    pub stdout: Vec<String>,
    /// The stdout lines after those, as moat prints them.
    later_stdout: mpsc::Receiver<String>,
    log: PathBuf,
}

impl Moat {
    /// Starts `moat ARGS` in `dir` (MOAT_HOME = dir/home, log in dir/moat.log) and waits for one
    /// ready line per expected endpoint.
    pub fn start(dir: &Path, args: &[&str], endpoints: usize) -> Moat {
        Moat::start_with_env(dir, args, endpoints, &[])
    }

    /// `moat KIND UPSTREAM --listen 127.0.0.1:0 EXTRA...` in `dir`: one endpoint on a free port.
    pub fn serve(dir: &Path, kind: &str, upstream: &str, extra: &[&str]) -> Moat {
        let mut args = vec![kind, upstream, "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        Moat::start(dir, &args, 1)
    }

    /// [`Moat::serve`] with the usual mTLS files of a test directory: `server.crt`,
    /// `server.key` and the client CAs in `cas.pem`.
    pub fn serve_mtls(dir: &Path, kind: &str, upstream: &str, extra: &[&str]) -> Moat {
        Moat::serve(dir, kind, upstream, &[&MTLS_FILES[..], extra].concat())
    }

    /// Like [`Moat::start`], with extra environment variables.
    pub fn start_with_env(
        dir: &Path,
        args: &[&str],
        endpoints: usize,
        env: &[(&str, &str)],
    ) -> Moat {
        Moat::launch(dir, args, endpoints, env).unwrap_or_else(|failure| panic!("{failure}"))
    }

    /// Starts moat with arguments that name a fixed port (a config where several endpoints
    /// share one address cannot use port 0): `args_for(port)` returns the arguments, writing
    /// any config file that names the port first. The port comes from [`with_free_port`], so
    /// if another process binds it before moat does, moat is started again on another one.
    pub fn start_on_free_port(
        dir: &Path,
        endpoints: usize,
        mut args_for: impl FnMut(u16) -> Vec<String>,
    ) -> Moat {
        with_free_port("moat", |port| {
            let args = args_for(port);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Moat::launch(dir, &args, endpoints, &[])
        })
    }

    /// Starts moat and waits for its ready lines; `Err` when it could not bind an address
    /// because another process holds it (the caller may retry on another port), a panic for
    /// any other failure.
    fn launch(
        dir: &Path,
        args: &[&str],
        endpoints: usize,
        env: &[(&str, &str)],
    ) -> Result<Moat, String> {
        let log = dir.join("moat.log");
        let child = Command::new(env!("CARGO_BIN_EXE_moat"))
            .args(args)
            .current_dir(dir)
            .env("MOAT_HOME", dir.join("home"))
            .env_remove("RUST_LOG")
            .env_remove("GLIBC_TUNABLES")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("moat starts");
        let (lines, received) = mpsc::channel();
        let mut moat = Moat {
            child,
            endpoints: Vec::new(),
            stdout: Vec::new(),
            later_stdout: received,
            log,
        };
        let stdout = moat.child.stdout.take().unwrap();
        thread::spawn(move || {
            // Keeps reading to the end so moat never blocks on a full pipe (its audit events go
            // to stdout by default), even after the test stopped listening.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let _ = lines.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while moat.endpoints.len() < endpoints {
            let left = deadline.saturating_duration_since(Instant::now());
            match moat.later_stdout.recv_timeout(left) {
                Ok(line) => {
                    if let Some((name, address)) = parse_ready_line(&line) {
                        moat.endpoints.push((name, address));
                    }
                    moat.stdout.push(line);
                }
                Err(_) => {
                    // Its stdout closes as it exits; give the exit a moment to be reaped.
                    let mut status = moat.child.try_wait().unwrap();
                    let reaped_by = Instant::now() + Duration::from_secs(2);
                    while status.is_none() && Instant::now() < reaped_by {
                        thread::sleep(Duration::from_millis(20));
                        status = moat.child.try_wait().unwrap();
                    }
                    let log = moat.log();
                    let failure = format!(
                        "moat {args:?} did not report {endpoints} listening endpoint(s) (exit {status:?}); stdout: {:?}; log:\n{log}",
                        moat.stdout,
                    );
                    if status.is_some() && log.contains(ADDRESS_IN_USE) {
                        return Err(failure);
                    }
                    panic!("{failure}");
                }
            }
        }
        Ok(moat)
    }

    /// The next stdout line after the ready lines, waiting at most `limit` for it.
    pub fn next_stdout_line(&self, limit: Duration) -> Option<String> {
        self.later_stdout.recv_timeout(limit).ok()
    }

    /// The port of the first endpoint.
    pub fn port(&self) -> u16 {
        self.endpoints[0].1.port()
    }

    /// What moat logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to 5 seconds for `needle` to appear in the log (lines are written as events
    /// happen, a moment after the client sees their effect); returns the log.
    pub fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "{needle:?} not in the log:\n{log}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process id, for signals.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends the named signal (`TERM`, `INT`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, failing the test after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "moat did not exit within {limit:?}; log:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Moat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `moat start` with every endpoint of `moat.toml` in the test directory.
pub const START_ALL: [&str; 4] = ["start", "--config", "moat.toml", "--all"];

/// `moat: endpoint NAME listening on SCHEME://ADDR` → (NAME, ADDR).
fn parse_ready_line(line: &str) -> Option<(String, SocketAddr)> {
    let rest = line.strip_prefix("moat: endpoint ")?;
    let (name, url) = rest.split_once(" listening on ")?;
    let address = url.split_once("://")?.1.trim().parse().ok()?;
    Some((name.to_string(), address))
}

/// Runs moat to completion (for startup errors) with MOAT_HOME in `dir`.
pub fn moat_output(dir: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(args)
        .current_dir(dir)
        .env("MOAT_HOME", dir.join("home"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("moat {args:?} kept running; it should have failed at startup");
        }
        thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Waits (at most 10 s) until the audit file holds `count` events, and returns them parsed.
pub fn audit_events(path: &Path, count: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() >= count || Instant::now() > deadline {
            return lines
                .iter()
                .map(|line| {
                    serde_json::from_str(line)
                        .unwrap_or_else(|e| panic!("audit line is not JSON ({e}): {line}"))
                })
                .collect();
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// A minimal HTTP/1.1 upstream: answers every request with `200` and body
/// `hello from upstream <path>`; `/slow` waits 2 seconds first.
pub fn start_http_upstream() -> SocketAddr {
    start_observed_http_upstream().0
}

/// [`start_http_upstream`], with a count of the requests whose head it has read (counted
/// before `/slow` starts waiting, so a test can tell when a request is in flight upstream).
pub fn start_observed_http_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&requests);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let counter = Arc::clone(&counter);
            thread::spawn(move || {
                let _ = serve_http(stream, &counter);
            });
        }
    });
    (address, requests)
}

/// Polls `condition` every 10 ms until it holds; fails the test naming `what` after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// A request's path and its headers (names in lower case), as [`read_request_head`] reads them.
pub type RequestHead = (String, Vec<(String, String)>);

/// Reads one HTTP/1.1 request head. `None` when the connection ends before a request line.
pub fn read_request_head(reader: &mut impl BufRead) -> std::io::Result<Option<RequestHead>> {
    let mut request_line = String::new();
    if reader.read_line(&mut request_line)? == 0 {
        return Ok(None);
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    Ok(Some((path, headers)))
}

fn serve_http(stream: TcpStream, requests: &AtomicUsize) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    while let Some((path, _headers)) = read_request_head(&mut reader)? {
        requests.fetch_add(1, Ordering::SeqCst);
        if path == "/slow" {
            thread::sleep(Duration::from_secs(2));
        }
        let body = format!("hello from upstream {path}");
        write!(
            writer,
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )?;
        writer.flush()?;
    }
    Ok(())
}

/// A TCP echo server: every connection gets back what it sends, and a half-close once the
/// client half-closes.
pub fn start_echo_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            thread::spawn(move || {
                let mut buffer = [0u8; 16 * 1024];
                loop {
                    match stream.read(&mut buffer) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if stream.write_all(&buffer[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = stream.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    address
}

/// A CA made with rcgen, able to sign leaves and CRLs.
pub struct TestCa {
    /// The CA certificate, PEM.
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// Whether a leaf is for a client or a server.
#[derive(Clone, Copy)]
pub enum Usage {
    Client,
    Server,
}

impl TestCa {
    /// A self-signed ECDSA P-256 CA.
    pub fn new(common_name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.key_identifier_method = KeyIdMethod::Sha256;
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// An intermediate CA signed by this one; it signs leaves and CRLs like a root.
    pub fn intermediate(&self, common_name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.key_identifier_method = KeyIdMethod::Sha256;
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf valid from a day ago for a year, with the given serial.
    pub fn leaf(&self, common_name: &str, usage: Usage, serial: u64) -> (String, String) {
        let now = time::OffsetDateTime::now_utc();
        self.leaf_valid(
            common_name,
            usage,
            serial,
            now - time::Duration::days(1),
            now + time::Duration::days(365),
        )
    }

    /// A client leaf valid from `from_days` to `to_days` days from now (negative: in the past).
    pub fn client_dated(
        &self,
        common_name: &str,
        serial: u64,
        from_days: i64,
        to_days: i64,
    ) -> (String, String) {
        let now = time::OffsetDateTime::now_utc();
        let (not_before, not_after) = (
            now + time::Duration::days(from_days),
            now + time::Duration::days(to_days),
        );
        self.leaf_valid(common_name, Usage::Client, serial, not_before, not_after)
    }

    /// A leaf with an explicit validity period; returns (certificate PEM, key PEM).
    pub fn leaf_valid(
        &self,
        common_name: &str,
        usage: Usage,
        serial: u64,
        not_before: time::OffsetDateTime,
        not_after: time::OffsetDateTime,
    ) -> (String, String) {
        let names = match usage {
            Usage::Server => vec!["localhost".to_string(), "127.0.0.1".to_string()],
            Usage::Client => Vec::new(),
        };
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.serial_number = Some(SerialNumber::from(serial.to_be_bytes().to_vec()));
        params.not_before = not_before;
        params.not_after = not_after;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![match usage {
            Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
            Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
        }];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A server certificate for the DNS `names`; returns (certificate PEM, key PEM).
    pub fn server_leaf_for(&self, names: &[&str], serial: u64) -> (String, String) {
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, &names[0]);
        params.is_ca = IsCa::ExplicitNoCa;
        params.serial_number = Some(SerialNumber::from(serial.to_be_bytes().to_vec()));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A CRL revoking `serials`; returns (PEM, DER).
    pub fn crl(&self, serials: &[u64]) -> (String, Vec<u8>) {
        let now = time::OffsetDateTime::now_utc();
        self.crl_until(serials, now + time::Duration::days(7))
    }

    /// A CRL revoking `serials` whose nextUpdate is `next_update` (in the past: a stale CRL).
    pub fn crl_until(
        &self,
        serials: &[u64],
        next_update: time::OffsetDateTime,
    ) -> (String, Vec<u8>) {
        let now = time::OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: next_update.min(now) - time::Duration::days(8),
            next_update,
            crl_number: SerialNumber::from(1u64.to_be_bytes().to_vec()),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|serial| RevokedCertParams {
                    serial_number: SerialNumber::from(serial.to_be_bytes().to_vec()),
                    revocation_time: now - time::Duration::minutes(30),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer).unwrap();
        (crl.pem().unwrap(), crl.der().to_vec())
    }
}

/// The flags of the usual mTLS files of a test directory: `server.crt`, `server.key` and the
/// client CAs in `cas.pem`.
pub const MTLS_FILES: [&str; 6] = [
    "--crt",
    "server.crt",
    "--key",
    "server.key",
    "--mutual-tls-cas",
    "cas.pem",
];

/// The server side of a test directory: a CA named `ca_name` written as `ca_file` (for the
/// clients to trust) and its certificate for localhost with `serial` as `server.crt` and
/// `server.key`. Returns the CA.
pub fn write_server_pki(dir: &Path, ca_name: &str, ca_file: &str, serial: u64) -> TestCa {
    let server_ca = TestCa::new(ca_name);
    std::fs::write(dir.join(ca_file), &server_ca.pem).unwrap();
    write_pair(
        dir,
        "server",
        &server_ca.leaf("localhost", Usage::Server, serial),
    );
    server_ca
}

/// The smallest mTLS test directory: [`write_server_pki`] ("Server CA" in `server-ca.crt`), a
/// "Client CA" in `cas.pem` and its client `client_cn` as `client.crt` and `client.key`.
pub fn gateway_pki_dir(client_cn: &str) -> tempfile::TempDir {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    write_server_pki(dir, "Server CA", "server-ca.crt", 1);
    let client_ca = TestCa::new("Client CA");
    std::fs::write(dir.join("cas.pem"), &client_ca.pem).unwrap();
    write_pair(dir, "client", &client_ca.leaf(client_cn, Usage::Client, 2));
    scratch
}

/// The files the client of [`gateway_pki_dir`] uses: `server-ca.crt`, `client.crt`, `client.key`.
pub fn client_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    (
        dir.join("server-ca.crt"),
        dir.join("client.crt"),
        dir.join("client.key"),
    )
}

/// Writes a certificate and key pair as NAME.crt / NAME.key in `dir`.
pub fn write_pair(dir: &Path, name: &str, pair: &(String, String)) {
    std::fs::write(dir.join(format!("{name}.crt")), &pair.0).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), &pair.1).unwrap();
}

/// What a TLS client saw: the response text, or the rustls error (e.g. the alert received).
pub type ClientOutcome = Result<String, rustls::Error>;

/// Options of [`rustls_request`].
pub struct ClientOptions<'a> {
    /// CA file that verifies moat's server certificate.
    pub server_ca: &'a Path,
    /// Client certificate and key files.
    pub identity: Option<(&'a Path, &'a Path)>,
    /// Offer only TLS 1.2.
    pub tls12_only: bool,
    /// Bytes to send after the handshake.
    pub send: &'a [u8],
    /// Send close_notify after them (a half-close for byte-stream protocols; an HTTP/1.1
    /// server treats it as the end of the connection).
    pub half_close: bool,
}

impl<'a> ClientOptions<'a> {
    /// One `GET /` (TLS 1.2 or 1.3, no half-close) trusting `server_ca`, presenting `identity`.
    pub fn get(server_ca: &'a Path, identity: Option<(&'a Path, &'a Path)>) -> Self {
        ClientOptions {
            server_ca,
            identity,
            tls12_only: false,
            send: GET_ROOT,
            half_close: false,
        }
    }
}

/// Connects to 127.0.0.1:`port` with an in-process rustls client, sends `options.send`
/// (optionally half-closing with close_notify) and reads until the server closes.
pub fn rustls_request(port: u16, options: &ClientOptions<'_>) -> ClientOutcome {
    let config = client_config(options);
    rustls_exchange(port, config, Some("localhost"), options).outcome
}

/// The rustls client configuration of [`rustls_request`]; reuse one to resume sessions.
pub fn client_config(options: &ClientOptions<'_>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(options.server_ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions: &[&'static rustls::SupportedProtocolVersion] = if options.tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let config = match options.identity {
        Some((cert, key)) => {
            let chain: Vec<_> = CertificateDer::pem_file_iter(cert)
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let key = PrivateKeyDer::from_pem_file(key).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// What one connection of [`rustls_exchange`] saw.
pub struct Exchange {
    /// The response, or the TLS error (e.g. the alert received).
    pub outcome: ClientOutcome,
    /// Full or resumed, when the handshake finished.
    pub handshake: Option<rustls::HandshakeKind>,
    /// The client socket's own address (what a PROXY protocol header must name).
    pub local_addr: SocketAddr,
}

/// Like [`rustls_request`] with a given client configuration and server name; `None` sends no
/// SNI (the server certificate is then checked for "localhost").
pub fn rustls_exchange(
    port: u16,
    config: Arc<rustls::ClientConfig>,
    server_name: Option<&str>,
    options: &ClientOptions<'_>,
) -> Exchange {
    let socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
    rustls_exchange_over(socket, config, server_name, options)
}

/// A TCP connection to 127.0.0.1:`port` from the address `source` (any of 127.0.0.0/8 is
/// this machine), for rules on the client's address.
pub fn connect_from(source: std::net::IpAddr, port: u16) -> TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    let stream = runtime
        .block_on(socket.connect(SocketAddr::from(([127, 0, 0, 1], port))))
        .unwrap()
        .into_std()
        .unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
}

/// [`rustls_exchange`] over a connection the caller opened (e.g. with [`connect_from`]).
pub fn rustls_exchange_over(
    socket: TcpStream,
    config: Arc<rustls::ClientConfig>,
    server_name: Option<&str>,
    options: &ClientOptions<'_>,
) -> Exchange {
    let config = match server_name {
        Some(_) => config,
        None => {
            let mut without_sni = (*config).clone();
            without_sni.enable_sni = false;
            Arc::new(without_sni)
        }
    };
    let name = ServerName::try_from(server_name.unwrap_or("localhost").to_string()).unwrap();
    let connection = rustls::ClientConnection::new(config, name).unwrap();
    let local_addr = socket.local_addr().unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(connection, socket);
    let as_tls_error = |error: std::io::Error| -> rustls::Error {
        match error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(tls_error) => tls_error.clone(),
            None => rustls::Error::General(format!("I/O: {error}")),
        }
    };
    // A refused client only learns why when it reads the server's alert, and a write may fail
    // first because the server already closed; so the read decides the outcome.
    let written = tls.write_all(options.send).and_then(|()| tls.flush());
    if options.half_close && written.is_ok() {
        tls.conn.send_close_notify();
        let _ = tls.flush();
    }
    let mut received = Vec::new();
    let read = tls.read_to_end(&mut received);
    let handshake = tls.conn.handshake_kind();
    let outcome = match (read, written) {
        (Ok(_), _) => Ok(String::from_utf8_lossy(&received).into_owned()),
        // A server that closes without close_notify after answering still answered.
        (Err(error), _)
            if error.kind() == std::io::ErrorKind::UnexpectedEof && !received.is_empty() =>
        {
            Ok(String::from_utf8_lossy(&received).into_owned())
        }
        (Err(error), Ok(())) => Err(as_tls_error(error)),
        (Err(error), Err(write_error)) => match as_tls_error(error) {
            alert @ rustls::Error::AlertReceived(_) => Err(alert),
            _ => Err(as_tls_error(write_error)),
        },
    };
    Exchange {
        outcome,
        handshake: if tls.conn.is_handshaking() {
            None
        } else {
            handshake
        },
        local_addr,
    }
}

/// A one-shot HTTP/1.1 GET that asks the server to close afterwards.
pub const GET_ROOT: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

/// Runs `openssl s_client` against 127.0.0.1:`port` with extra args, sending an HTTP request,
/// and returns its combined output.
pub fn s_client(dir: &Path, port: u16, extra: &[&str]) -> String {
    let connect = format!("127.0.0.1:{port}");
    let mut args = vec![
        "10",
        "openssl",
        "s_client",
        "-connect",
        &connect,
        "-servername",
        "localhost",
        "-ign_eof",
    ];
    args.extend_from_slice(extra);
    let mut child = Command::new("timeout")
        .args(&args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs `curl -sS --max-time 10 ARGS` in `dir`; returns (exit code, stdout, stderr).
pub fn curl(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs openssl in `dir` with whitespace-separated arguments; fails the test if it fails.
pub fn openssl(dir: &Path, line: &str) {
    let args: Vec<&str> = line.split_whitespace().collect();
    let output = Command::new("openssl")
        .args(&args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "openssl {line} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A real upstream process (nginx, a Python server) on 127.0.0.1; killed when dropped.
pub struct UpstreamProcess {
    child: Child,
    /// Where it listens.
    pub port: u16,
}

impl Drop for UpstreamProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl UpstreamProcess {
    /// Waits until this process listens on its port (at most 15 s). `Err` when it exited
    /// because another one took the port (its `log` says so), for [`with_free_port`] to retry.
    /// "This process": a port that merely accepts connections may be the other one's.
    fn wait_ready(mut self, what: &str, log: &Path) -> Result<UpstreamProcess, String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !listens_on(self.child.id(), self.port) {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(log).unwrap_or_default();
                let failure = format!("{what} exited before listening ({status}):\n{log}");
                if log.contains(ADDRESS_IN_USE) {
                    return Err(failure);
                }
                panic!("{failure}");
            }
            assert!(
                Instant::now() < deadline,
                "{what} did not listen on port {}",
                self.port
            );
            thread::sleep(Duration::from_millis(50));
        }
        Ok(self)
    }
}

/// Whether process `pid` holds the socket listening on 127.0.0.1:`port` (or on any address),
/// read from `/proc/net/tcp` (its inode) and `/proc/PID/fd` (the process's sockets).
fn listens_on(pid: u32, port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let local = [
        format!("0100007F:{port:04X}"),
        format!("00000000:{port:04X}"),
    ];
    // Columns: sl local_address rem_address st ... inode (10th); state 0A is LISTEN.
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|fields| fields.len() > 9 && local.contains(&fields[1].to_string()))
        .filter(|fields| fields[3] == "0A")
        .map(|fields| format!("socket:[{}]", fields[9]))
        .collect();
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|target| {
            inodes
                .iter()
                .any(|inode| target.as_os_str() == inode.as_str())
        })
    })
}

/// How Linux words `EADDRINUSE` (errno 98) in moat's, nginx's and Python's bind errors.
const ADDRESS_IN_USE: &str = "Address already in use";

/// A port on 127.0.0.1 that was free a moment ago, for servers that must be told a port.
///
/// Between this check and the server's own bind another process may take the port, so start
/// the server through [`with_free_port`], which retries. The port is drawn at random from
/// below the kernel's ephemeral range (`ip_local_port_range`, 32768-60999 by default): every
/// port-0 listener and outgoing connection of the tests running in parallel gets its port from
/// that range, so none of them can take this one; only another draw of this function (or
/// another process told a fixed port) can, and the retry covers that.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher as _, Hasher as _};
    const LOWEST: u16 = 10_000;
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let span = ephemeral_start.saturating_sub(LOWEST);
    // A machine whose ephemeral range starts low leaves no room below it: let the kernel pick.
    if span < 1_000 {
        return TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
    }
    for _ in 0..100 {
        // RandomState is seeded randomly per process and per call, a small RNG without a crate.
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let port = LOWEST + (random % u64::from(span)) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below {ephemeral_start} after 100 tries");
}

/// A port on 127.0.0.1 where nothing listens while the socket lives, e.g. for an upstream
/// that is down: bound and never listening, so connections are refused and the kernel hands
/// the port to no other bind (a port bound and dropped it could hand out again). Returns the
/// socket and its address.
pub fn closed_port() -> (tokio::net::TcpSocket, SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let address = socket.local_addr().unwrap();
    (socket, address)
}

/// Starts a server on a port from [`free_port`]: `start(port)` returns the server, or `Err`
/// when the port was taken before the server could bind it; then it starts again on another
/// port, up to 5 times.
pub fn with_free_port<T>(what: &str, mut start: impl FnMut(u16) -> Result<T, String>) -> T {
    let mut failures = Vec::new();
    for _ in 0..5 {
        match start(free_port()) {
            Ok(server) => return server,
            Err(failure) => failures.push(failure),
        }
    }
    panic!(
        "{what} found its port taken 5 times:\n{}",
        failures.join("\n")
    );
}

/// Starts nginx (Debian's package; `.ci/run` installs it) in `dir` with `server_body` as the
/// body of one `server { listen 127.0.0.1:PORT; ... }` block: a real upstream that resolves
/// paths as nginx does (percent-decoding, dot segments, merged slashes) before choosing a
/// location.
pub fn start_nginx(dir: &Path, server_body: &str) -> UpstreamProcess {
    with_free_port("nginx", |port| try_start_nginx(dir, server_body, port))
}

fn try_start_nginx(dir: &Path, server_body: &str, port: u16) -> Result<UpstreamProcess, String> {
    let prefix = dir.join("nginx");
    std::fs::create_dir_all(prefix.join("tmp")).unwrap();
    let p = prefix.display();
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {p}/nginx.pid;\n\
         error_log {p}/error.log;\nevents {{ worker_connections 64; }}\nhttp {{\n\
         access_log off;\ndefault_type text/plain;\nclient_body_temp_path {p}/tmp/body;\n\
         proxy_temp_path {p}/tmp/proxy;\nfastcgi_temp_path {p}/tmp/fastcgi;\n\
         uwsgi_temp_path {p}/tmp/uwsgi;\nscgi_temp_path {p}/tmp/scgi;\n\
         server {{\nlisten 127.0.0.1:{port};\n{server_body}\n}}\n}}\n"
    );
    std::fs::write(prefix.join("nginx.conf"), conf).unwrap();
    // nginx appends; a bind error of an earlier try must not be read as this one's.
    let _ = std::fs::remove_file(prefix.join("error.log"));
    let nginx = ["/usr/sbin/nginx", "nginx"]
        .into_iter()
        .find(|candidate| Path::new(candidate).exists())
        .unwrap_or("nginx");
    let child = Command::new(nginx)
        .args(["-p", &p.to_string(), "-e", &format!("{p}/error.log"), "-c"])
        .arg(prefix.join("nginx.conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx starts (apt-get install nginx)");
    UpstreamProcess { child, port }.wait_ready("nginx", &prefix.join("error.log"))
}

/// Runs `python3 ARGS` in `dir` with `{port}` in ARGS replaced by a free port, and waits for it
/// to listen there.
pub fn start_python(dir: &Path, args: &[&str]) -> UpstreamProcess {
    with_free_port("python3", |port| try_start_python(dir, args, port))
}

fn try_start_python(dir: &Path, args: &[&str], port: u16) -> Result<UpstreamProcess, String> {
    let log = dir.join("python-upstream.log");
    let args: Vec<String> = args
        .iter()
        .map(|arg| arg.replace("{port}", &port.to_string()))
        .collect();
    let child = Command::new("python3")
        .args(&args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("python3 starts");
    UpstreamProcess { child, port }.wait_ready(&format!("python3 {args:?}"), &log)
}
