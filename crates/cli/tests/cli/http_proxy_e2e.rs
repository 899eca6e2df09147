//! `moat http` end to end: curl over HTTP/2 with a client certificate, and 200 MiB streamed up
//! and down with matching SHA-256 while moat's memory stays flat.
//!
//! Drives the real binary through the `moat http` flags and its ready line
//! `moat: endpoint NAME listening on https://127.0.0.1:PORT`, so the memory measured is moat's alone.

use crate::gateway_support;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

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
    while let Some((path, headers)) = gateway_support::read_request_head(&mut reader)? {
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
    Ok(())
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

/// The moat process; killed when the test ends, however it ends.
struct Moat {
    child: Child,
    port: u16,
}

impl Drop for Moat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moat {
    /// `moat http UPSTREAM` on a free port with the test PKI, once it says it is listening
    /// (`moat: endpoint NAME listening on https://127.0.0.1:PORT`). Its log goes to `moat.log`.
    fn start(dir: &Path, upstream: SocketAddr) -> Moat {
        let log = std::fs::File::create(dir.join("moat.log")).unwrap();
        let upstream = upstream.to_string();
        let mut child = Command::new(env!("CARGO_BIN_EXE_moat"))
            .args([
                "http",
                &upstream,
                "--listen",
                "127.0.0.1:0",
                "--domain",
                "localhost",
            ])
            .args([
                "--crt",
                "server.crt",
                "--key",
                "server.key",
                "--mutual-tls-cas",
                "ca.crt",
            ])
            .current_dir(dir)
            .env("MOAT_HOME", dir.join("moat-home"))
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("moat starts");
        let stdout = child.stdout.take().unwrap();
        let (ports, port) = std::sync::mpsc::channel();
        thread::spawn(move || {
            // Keeps reading to the end so moat never blocks on a full pipe.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Some(url) = line.split("listening on https://").nth(1) {
                    let port = url
                        .trim()
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse::<u16>().ok());
                    let _ = ports.send(port);
                }
            }
        });
        let mut moat = Moat { child, port: 0 };
        match port.recv_timeout(Duration::from_secs(20)) {
            Ok(Some(port)) => moat.port = port,
            outcome => {
                let status = moat.child.try_wait().unwrap();
                let log = std::fs::read_to_string(dir.join("moat.log")).unwrap_or_default();
                panic!(
                    "moat did not report a listening port ({outcome:?}, exit {status:?}); log:\n{log}"
                );
            }
        }
        moat
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    /// Resident memory of the moat process in KiB.
    fn rss_kib(&self) -> u64 {
        rss_kib(self.child.id()).expect("VmRSS in /proc/PID/status")
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
    curl_as(dir, "client", args)
}

/// [`curl`] presenting `NAME.crt` / `NAME.key` of the test directory.
fn curl_as(dir: &Path, name: &str, args: &[&str]) -> Output {
    let (cert, key) = (format!("{name}.crt"), format!("{name}.key"));
    let mut all = vec!["-sS", "--max-time", "120", "--cacert", "ca.crt"];
    all.extend_from_slice(&["--cert", &cert, "--key", &key]);
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

/// What `openssl x509 -noout FLAG -in FILE` prints after its `=`, e.g. the `0A1B` of
/// `serial=0A1B` or the `AB:CD:…` of `sha256 Fingerprint=AB:CD:…`.
fn openssl_x509_reading(dir: &Path, file: &str, flags: &[&str]) -> String {
    let mut args = vec!["x509", "-noout", "-in", file];
    args.extend_from_slice(flags);
    let output = run(dir, "openssl", &args);
    assert!(output.status.success(), "openssl {args:?}: {output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    let (_, value) = text
        .trim()
        .split_once('=')
        .unwrap_or_else(|| panic!("openssl {args:?} printed {text:?}"));
    value.to_owned()
}

#[test]
fn identity_headers_carry_openssls_serial_and_sha256_fingerprint_of_the_real_certificate() {
    let dir = tempfile::tempdir().unwrap();
    make_pki(dir.path());
    // A second client whose serial has its top bit set, so DER stores it with a leading 00 byte
    // that is no part of the number (openssl's -CAcreateserial serials are random either way).
    openssl(
        dir.path(),
        "ecparam -name prime256v1 -genkey -noout -out high-serial.key",
    );
    openssl(
        dir.path(),
        "req -new -key high-serial.key -subj /CN=high-serial -out high-serial.csr",
    );
    openssl(
        dir.path(),
        "x509 -req -in high-serial.csr -CA ca.crt -CAkey ca.key -set_serial \
         0x8d000000000000000000000000c1 -days 2 -extfile client.ext -out high-serial.crt",
    );
    let upstream = start_upstream(dir.path().join("unused"));
    let moat = Moat::start(dir.path(), upstream);

    for name in ["client", "high-serial"] {
        let output = curl_as(
            dir.path(),
            name,
            &[
                "-H",
                "Moat-Client-Serial: 01",
                "-H",
                "Moat-Client-Fingerprint-Sha256: spoofed",
                &moat.url("/headers"),
            ],
        );
        let received = String::from_utf8(output.stdout).unwrap();
        let header = |header: &str| -> Vec<&str> {
            received
                .lines()
                .filter_map(|line| line.strip_prefix(header)?.strip_prefix(": "))
                .collect()
        };
        let file = format!("{name}.crt");
        // moat's documented form (README: "Moat-Client-Serial (hex)"): lowercase hex, no
        // colons, no sign-padding zero byte; openssl prints the same digits in uppercase.
        let serial = openssl_x509_reading(dir.path(), &file, &["-serial"]).to_ascii_lowercase();
        let fingerprint = openssl_x509_reading(dir.path(), &file, &["-fingerprint", "-sha256"])
            .replace(':', "")
            .to_ascii_lowercase();
        assert_eq!(
            header("moat-client-serial"),
            [serial.as_str()],
            "{name}: {received}"
        );
        assert_eq!(
            header("moat-client-fingerprint-sha256"),
            [fingerprint.as_str()],
            "{name}: {received}"
        );
    }
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
    let baseline = moat.rss_kib();
    let peak = Arc::new(AtomicU64::new(baseline));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (Arc::clone(&peak), Arc::clone(&done));
        let pid = moat.child.id();
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
    eprintln!("moat RSS: baseline {baseline} KiB, peak growth {growth} KiB");
    assert!(
        growth < RSS_GROWTH_LIMIT_KIB,
        "moat's RSS grew by {growth} KiB (baseline {baseline} KiB) while streaming {SIZE_MIB} MiB each way over HTTP/1.1 and HTTP/2"
    );
}
