//! The proxy behind real TLS termination, driven by curl: HTTP/2 negotiated by ALPN with a
//! client certificate, and 200 MiB streamed up and down with matching SHA-256 while the process's
//! memory stays flat. (The `moat http` binary gets the same checks in crates/cli/tests.)

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use moat_config::{EndpointConfig, EndpointKind, Timeouts, Upstream, UpstreamScheme};
use moat_gateway::connection::ConnectionInfo;
use moat_gateway::http_proxy::HttpProxy;
use moat_trust::ClientIdentity;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Runs a program in `dir`; fails the test when it cannot start.
fn run(dir: &Path, program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|error| panic!("cannot run {program}: {error}"))
}

/// Runs `openssl` with a whitespace-separated argument line; fails the test when it fails.
fn openssl(dir: &Path, line: &str) {
    let args: Vec<&str> = line.split_whitespace().collect();
    let output = run(dir, "openssl", &args);
    assert!(
        output.status.success(),
        "openssl {line} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA (`ca.crt`), a server certificate for localhost (`server.crt`/`server.key`) and a client
/// certificate (`client.crt`/`client.key`, CN=e2e-client), all P-256 to keep the test fast.
fn make_pki(dir: &Path) {
    openssl(dir, "ecparam -name prime256v1 -genkey -noout -out ca.key");
    openssl(
        dir,
        "req -x509 -new -key ca.key -subj /CN=E2E-Test-CA -days 2 -out ca.crt",
    );
    let server_ext = "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n";
    std::fs::write(dir.join("server.ext"), server_ext).unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for (name, subject) in [
        ("server", "/CN=localhost"),
        ("client", "/CN=e2e-client/O=MoatE2E"),
    ] {
        openssl(
            dir,
            &format!("ecparam -name prime256v1 -genkey -noout -out {name}.key"),
        );
        openssl(
            dir,
            &format!("req -new -key {name}.key -subj {subject} -out {name}.csr"),
        );
        openssl(
            dir,
            &format!(
                "x509 -req -in {name}.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
                 -extfile {name}.ext -out {name}.crt"
            ),
        );
    }
}

/// A minimal HTTP/1.1 upstream on its own threads, so the test needs no async runtime:
/// `/headers` echoes request headers, `/upload` answers the SHA-256 of the body (via
/// `sha256sum`), `/download` sends the file it was given.
fn start_upstream(download: PathBuf) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let download = download.clone();
            thread::spawn(move || {
                let _ = serve_upstream(stream, &download);
            });
        }
    });
    addr
}

fn serve_upstream(stream: TcpStream, download: &Path) -> io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
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
            let line = line.trim_end().to_string();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };

        let mut hasher = (path == "/upload").then(|| {
            Command::new("sha256sum")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("sha256sum runs")
        });
        {
            let mut sink: Box<dyn Write> = match hasher.as_mut() {
                Some(child) => Box::new(child.stdin.take().unwrap()),
                None => Box::new(io::sink()),
            };
            if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
                copy_chunked(&mut reader, &mut sink)?;
            } else if let Some(length) = header("content-length") {
                let length: u64 = length.parse().unwrap();
                io::copy(&mut (&mut reader).take(length), &mut sink)?;
            }
        }
        match path.as_str() {
            "/upload" => {
                let output = hasher.unwrap().wait_with_output()?;
                let digest = String::from_utf8_lossy(&output.stdout);
                let digest = digest.split_whitespace().next().unwrap_or("").to_string();
                write!(
                    writer,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{digest}",
                    digest.len()
                )?;
            }
            "/download" => {
                let mut file = std::fs::File::open(download)?;
                let size = file.metadata()?.len();
                write!(
                    writer,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {size}\r\n\r\n"
                )?;
                io::copy(&mut file, &mut writer)?;
            }
            _ => {
                let body: String = headers.iter().map(|(n, v)| format!("{n}: {v}\n")).collect();
                write!(
                    writer,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                )?;
            }
        }
        writer.flush()?;
    }
}

fn copy_chunked(reader: &mut impl BufRead, sink: &mut dyn Write) -> io::Result<()> {
    loop {
        let mut size_line = String::new();
        reader.read_line(&mut size_line)?;
        let size_hex = size_line.trim().split(';').next().unwrap_or("0");
        let size = u64::from_str_radix(size_hex, 16)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if size == 0 {
            // Trailers end with an empty line.
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
                    return Ok(());
                }
            }
        }
        io::copy(&mut reader.take(size), sink)?;
        let mut crlf = String::new();
        reader.read_line(&mut crlf)?;
    }
}

/// The proxy behind a rustls listener that requires a client certificate from `ca.crt` and
/// offers h2 and http/1.1, the way the gateway's listener hands connections over; it runs on its
/// own runtime thread for the rest of the test process.
struct Moat {
    port: u16,
}

impl Moat {
    fn start(dir: &Path, upstream: SocketAddr) -> Moat {
        let tls = Arc::new(server_config(dir));
        let (ports, port) = std::sync::mpsc::channel();
        thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(serve(tls, upstream, ports));
        });
        let port = port
            .recv_timeout(Duration::from_secs(10))
            .expect("gateway listening");
        Moat { port }
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }
}

fn server_config(dir: &Path) -> rustls::ServerConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(dir.join("ca.crt")).unwrap())
        .unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::clone(&provider),
    )
    .build()
    .unwrap();
    let chain = vec![CertificateDer::from_pem_file(dir.join("server.crt")).unwrap()];
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}

async fn serve(
    tls: Arc<rustls::ServerConfig>,
    upstream: SocketAddr,
    ports: std::sync::mpsc::Sender<u16>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local_addr = listener.local_addr().unwrap();
    let endpoint = EndpointConfig {
        name: "curl".into(),
        kind: EndpointKind::Http,
        listen: local_addr,
        domain: "localhost".into(),
        upstream: Upstream {
            scheme: UpstreamScheme::Http,
            host: upstream.ip().to_string(),
            port: upstream.port(),
        },
        upstream_ca: None,
        crt: None,
        key: None,
        mutual_tls_cas: vec!["ca.crt".into()],
        crls: vec![],
        client_auth: Default::default(),
        tls_min_version: Default::default(),
        terminate_at: Default::default(),
        timeouts: Timeouts::default(),
        rules: Vec::new(),
    };
    let proxy = Arc::new(HttpProxy::new(&endpoint).unwrap());
    let (_shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
    ports.send(local_addr.port()).unwrap();
    loop {
        let Ok((tcp, peer_addr)) = listener.accept().await else {
            return;
        };
        let (acceptor, proxy, shutdown_rx) =
            (acceptor.clone(), Arc::clone(&proxy), shutdown_rx.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let (_, connection) = tls.get_ref();
            let http2 = connection.alpn_protocol() == Some(b"h2");
            let leaf = connection.peer_certificates().unwrap()[0]
                .clone()
                .into_owned();
            let info = ConnectionInfo {
                endpoint: "curl".into(),
                peer_addr,
                local_addr,
                sni: connection.server_name().map(str::to_owned),
                tls_version: "TLSv1.3",
                http2,
                client: Some(Arc::new(identity(leaf))),
            };
            proxy.serve_connection(tls, info, shutdown_rx).await;
        });
    }
}

/// The identity of the test client certificate, as the trust layer would report it.
fn identity(leaf: CertificateDer<'static>) -> ClientIdentity {
    ClientIdentity {
        subject: "CN=e2e-client,O=MoatE2E".into(),
        common_name: Some("e2e-client".into()),
        organizations: vec!["MoatE2E".into()],
        organizational_units: vec![],
        issuer: "CN=E2E-Test-CA".into(),
        serial_hex: "01".into(),
        fingerprint_sha256: "00".repeat(32),
        not_before: 0,
        not_after: 1_800_000_000,
        sans: vec![],
        version: 3,
        certificate: leaf,
        chain: vec![],
    }
}

/// `VmRSS` of process `pid` in KiB, while it runs.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// curl with the client certificate, trusting the test CA, bounded in time.
fn curl(dir: &Path, args: &[&str]) -> Output {
    let mut all = vec!["-sS", "--max-time", "120", "--cacert", "ca.crt"];
    all.extend_from_slice(&["--cert", "client.crt", "--key", "client.key"]);
    all.extend_from_slice(args);
    let output = run(dir, "curl", &all);
    assert!(
        output.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn sha256_file(path: &Path) -> String {
    let output = run(
        path.parent().unwrap(),
        "sha256sum",
        &[path.to_str().unwrap()],
    );
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn curl_over_http2_reaches_the_upstream_with_the_client_identity() {
    let dir = tempfile::tempdir().unwrap();
    make_pki(dir.path());
    let upstream = start_upstream(dir.path().join("unused"));
    let moat = Moat::start(dir.path(), upstream);

    let output = curl(
        dir.path(),
        &[
            "--http2",
            "-H",
            "Moat-Client-Subject: CN=spoofed",
            "-w",
            "\nversion=%{http_version}",
            &moat.url("/headers"),
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.ends_with("\nversion=2"),
        "curl did not use HTTP/2: {stdout}"
    );
    let subject: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("moat-client-subject: "))
        .collect();
    assert_eq!(subject.len(), 1, "{stdout}");
    assert!(subject[0].contains("CN=e2e-client"), "{stdout}");
    assert!(!stdout.contains("spoofed"), "{stdout}");
    assert!(stdout.contains("client-cert: :"), "{stdout}");
    assert!(stdout.contains("x-forwarded-proto: https"), "{stdout}");
}

#[test]
fn two_hundred_mib_stream_up_and_down_with_matching_sha256_and_flat_memory() {
    const SIZE_MIB: u64 = 200;
    const RSS_GROWTH_LIMIT_KIB: u64 = 64 * 1024;
    let dir = tempfile::tempdir().unwrap();
    make_pki(dir.path());
    let big = dir.path().join("big.bin");
    let file = std::fs::File::create(&big).unwrap();
    let size = (SIZE_MIB * 1024 * 1024).to_string();
    let status = Command::new("head")
        .args(["-c", &size, "/dev/urandom"])
        .stdout(file)
        .status()
        .unwrap();
    assert!(status.success(), "head -c {size} /dev/urandom failed");
    let expected = sha256_file(&big);
    let upstream = start_upstream(big.clone());
    let moat = Moat::start(dir.path(), upstream);

    // Warm up: the first request sets up TLS and the upstream pool.
    curl(dir.path(), &["-o", "/dev/null", &moat.url("/headers")]);
    let baseline = rss_kib(std::process::id()).unwrap();
    let peak = Arc::new(AtomicU64::new(baseline));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (Arc::clone(&peak), Arc::clone(&done));
        let pid = std::process::id();
        thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                if let Some(kib) = rss_kib(pid) {
                    peak.fetch_max(kib, Ordering::SeqCst);
                }
                thread::sleep(Duration::from_millis(20));
            }
        })
    };

    let mut digests = Vec::new();
    for protocol in ["--http1.1", "--http2"] {
        let uploaded = curl(
            dir.path(),
            &[protocol, "-T", big.to_str().unwrap(), &moat.url("/upload")],
        );
        let downloaded = dir.path().join("downloaded.bin");
        let target = downloaded.to_str().unwrap();
        curl(
            dir.path(),
            &[protocol, "-o", target, &moat.url("/download")],
        );
        let upload_digest = String::from_utf8_lossy(&uploaded.stdout).into_owned();
        digests.push((protocol, upload_digest, sha256_file(&downloaded)));
        std::fs::remove_file(&downloaded).unwrap();
    }
    done.store(true, Ordering::SeqCst);
    sampler.join().unwrap();

    for (protocol, uploaded, downloaded) in digests {
        assert_eq!(uploaded, expected, "{protocol} upload digest differs");
        assert_eq!(downloaded, expected, "{protocol} download digest differs");
    }
    let growth = peak.load(Ordering::SeqCst).saturating_sub(baseline);
    eprintln!("RSS: baseline {baseline} KiB, peak growth {growth} KiB");
    assert!(
        growth < RSS_GROWTH_LIMIT_KIB,
        "the process's RSS grew by {growth} KiB (baseline {baseline} KiB) while streaming {SIZE_MIB} MiB each way over HTTP/1.1 and HTTP/2"
    );
}
