//! `moat http --inspect`: the request inspector, through its JSON API (`api.rs`) and in headless
//! Chromium (`page.rs`). The kit here starts a mutual-TLS `moat http` with its inspector on a
//! free loopback port in front of an upstream that records every request it receives, so a
//! test can tell what a replay really delivered.

mod api;
mod page;
mod tunnel;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::gateway_support::{
    MTLS_FILES, Moat, TestCa, Usage, curl, wait_until, write_pair, write_server_pki,
};

/// Access rules of the inspected endpoint: `/admin/*` is alice's; any valid client may use the
/// rest.
const POLICY: &str = r#"
[[rules]]
name = "admins"
paths = ["/admin/*"]
action = "allow"
include = [{ common_name = "alice" }]

[[rules]]
name = "everyone"
action = "allow"
include = [{ valid_certificate = true }]
"#;

/// A certificate CN that is markup: it must reach every page as text.
pub const XSS_CN: &str = "<script>alert('cn')</script>";

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub target: String,
    /// Names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.as_str())
    }
}

/// An HTTP/1.1 upstream that records each request and answers `200` with
/// `{"seen": "<target>"}` (JSON, so the page pretty-prints it).
pub struct RecordingUpstream {
    pub address: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
}

impl RecordingUpstream {
    pub fn start() -> RecordingUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&received);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let log = Arc::clone(&log);
                thread::spawn(move || serve(stream, &log));
            }
        });
        RecordingUpstream { address, received }
    }

    /// Every request received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits up to 10 s for a request that `matches`.
    pub fn wait_for(&self, what: &str, matches: impl Fn(&Received) -> bool) -> Received {
        let mut found = None;
        wait_until(what, Duration::from_secs(10), || {
            found = self.received().into_iter().find(|r| matches(r));
            found.is_some()
        });
        found.unwrap()
    }
}

fn serve(stream: TcpStream, log: &Mutex<Vec<Received>>) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_owned();
        let target = parts.next().unwrap_or("").to_owned();
        let mut headers = Vec::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        let length: usize = headers
            .iter()
            .find(|(name, _)| name == "content-length")
            .and_then(|(_, value)| value.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let answer = serde_json::json!({ "seen": target }).to_string();
        log.lock().unwrap().push(Received {
            method,
            target,
            headers,
            body,
        });
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// A `moat http` with mutual TLS, the access rules above and its inspector on a free port;
/// clients `alice`, `bob` and [`XSS_CN`] of the trusted CA, and `stranger` of another CA, in
/// the test directory.
pub struct Inspected {
    pub moat: Moat,
    /// `http://127.0.0.1:PORT`
    pub inspector: String,
    pub upstream: RecordingUpstream,
    pub dir: PathBuf,
}

impl Inspected {
    /// Starts it in `dir`, with `extra` flags.
    pub fn start(dir: &Path, extra: &[&str]) -> Inspected {
        write_server_pki(dir, "Server CA", "server-ca.crt", 1);
        let clients = TestCa::new("Client CA");
        std::fs::write(dir.join("cas.pem"), &clients.pem).unwrap();
        for (name, cn, serial) in [("alice", "alice", 2), ("bob", "bob", 3), ("xss", XSS_CN, 4)] {
            write_pair(dir, name, &clients.leaf(cn, Usage::Client, serial));
        }
        let strangers = TestCa::new("Stranger CA");
        write_pair(
            dir,
            "stranger",
            &strangers.leaf("stranger", Usage::Client, 5),
        );
        std::fs::write(dir.join("policy.toml"), POLICY).unwrap();
        let upstream = RecordingUpstream::start();
        let upstream_address = upstream.address.to_string();
        let mut args = vec!["http", upstream_address.as_str(), "--listen", "127.0.0.1:0"];
        args.extend_from_slice(&MTLS_FILES);
        args.extend_from_slice(&[
            "--client-auth",
            "request",
            "--policy",
            "policy.toml",
            "--audit-log",
            "audit.jsonl",
            "--inspect",
            "127.0.0.1:0",
        ]);
        args.extend_from_slice(extra);
        let moat = Moat::start(dir, &args, 1);
        let inspector = inspector_url(&moat.stdout)
            .unwrap_or_else(|| panic!("no inspector line in {:?}", moat.stdout));
        Inspected {
            moat,
            inspector,
            upstream,
            dir: dir.to_owned(),
        }
    }

    /// curl to the endpoint as `client` (`None`: no certificate) with `extra` arguments and
    /// `path`; returns (HTTP status, body).
    pub fn request(&self, client: Option<&str>, path: &str, extra: &[&str]) -> (u16, String) {
        let url = format!("https://localhost:{}{path}", self.moat.port());
        let (cert, key) = client.map_or((None, None), |name| {
            (Some(format!("{name}.crt")), Some(format!("{name}.key")))
        });
        let mut args = vec!["--cacert", "server-ca.crt", "-w", "\n%{http_code}"];
        if let (Some(cert), Some(key)) = (&cert, &key) {
            args.extend_from_slice(&["--cert", cert, "--key", key]);
        }
        args.extend_from_slice(extra);
        args.push(&url);
        let (code, stdout, stderr) = curl(&self.dir, &args);
        assert_eq!(code, 0, "curl {url} failed: {stderr}");
        let (body, status) = stdout.rsplit_once('\n').unwrap();
        (status.trim().parse().unwrap(), body.to_owned())
    }

    /// A client whose handshake is refused (a certificate of a CA the endpoint does not trust);
    /// returns curl's exit code.
    pub fn refused_handshake(&self) -> i32 {
        let url = format!("https://localhost:{}/", self.moat.port());
        curl(
            &self.dir,
            &[
                "--cacert",
                "server-ca.crt",
                "--cert",
                "stranger.crt",
                "--key",
                "stranger.key",
                &url,
            ],
        )
        .0
    }

    /// `GET` on the inspector's API; (status, JSON body or `Null`).
    pub fn api(&self, path: &str) -> (u16, Value) {
        self.api_with(&[], &format!("{}{path}", self.inspector))
    }

    /// curl on the inspector with `args` before `url`; (status, JSON body or `Null`).
    pub fn api_with(&self, args: &[&str], url: &str) -> (u16, Value) {
        call(&self.dir, args, url)
    }

    /// `POST /api/requests/http` with `body` (a replay); (status, JSON).
    pub fn replay(&self, body: &Value) -> (u16, Value) {
        replay(&self.dir, &self.inspector, body)
    }

    /// The captured requests (newest first) for `query`, waiting up to 10 s until there are
    /// `count`.
    pub fn captured(&self, query: &str, count: usize) -> Vec<Value> {
        let mut list = Vec::new();
        wait_until(
            &format!("{count} captured requests for {query:?}"),
            Duration::from_secs(10),
            || {
                let (status, body) = self.api(&format!("/api/requests/http?{query}"));
                assert_eq!(status, 200, "{body}");
                list = body["requests"].as_array().unwrap().clone();
                list.len() >= count
            },
        );
        list
    }
}

/// curl in `dir` on an inspector's `url` with `args` before it; (status, JSON body or `Null`).
pub fn call(dir: &Path, args: &[&str], url: &str) -> (u16, Value) {
    let mut all = vec!["-w", "\n%{http_code}"];
    all.extend_from_slice(args);
    all.push(url);
    let (code, stdout, stderr) = curl(dir, &all);
    assert_eq!(code, 0, "curl {url} failed: {stderr}");
    let (body, status) = stdout.rsplit_once('\n').unwrap();
    let json = serde_json::from_str(body).unwrap_or(Value::Null);
    (status.trim().parse().unwrap(), json)
}

/// `POST /api/requests/http` (a replay of `body`) to the inspector at `inspector`.
pub fn replay(dir: &Path, inspector: &str, body: &Value) -> (u16, Value) {
    let body = body.to_string();
    call(
        dir,
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &body,
        ],
        &format!("{inspector}/api/requests/http"),
    )
}

/// The inspector's URL from moat's `moat: request inspector on http://ADDR` line.
pub fn inspector_url(stdout: &[String]) -> Option<String> {
    stdout.iter().find_map(|line| {
        line.strip_prefix("moat: request inspector on ")
            .map(|url| url.trim().to_owned())
    })
}
