//! Every request leaves one log line with what an operator needs to trace it.

mod http_proxy_support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use http::{Method, StatusCode};
use http_proxy_support::*;
use moat_config::ClientAuthMode;
use tracing::subscriber::DefaultGuard;

/// Log output collected in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Collects this thread's log output, as JSON lines, until the guard is dropped.
    fn install() -> (Captured, DefaultGuard) {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(move || writer.clone())
            .finish();
        (captured, tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    fn request_lines(&self) -> Vec<String> {
        self.text()
            .lines()
            .filter(|line| line.contains("\"message\":\"request\""))
            .map(str::to_owned)
            .collect()
    }
}

// The default single-threaded test runtime keeps every spawned task on this thread, so the
// thread-local subscriber sees the proxy's events.
#[tokio::test]
async fn each_request_logs_one_line_with_method_host_path_status_timing_and_client() {
    let (captured, _guard) = Captured::install();

    bounded(async {
        let (upstream, gateway) = start_proxied(false).await;
        let response = send_http1(gateway.addr, get("/headers?token=secret")).await;
        assert_eq!(response.status, StatusCode::OK);

        let mut config = endpoint(upstream.addr);
        config.client_auth = ClientAuthMode::Request;
        let anonymous = Gateway::start(config, None, false).await;
        let request = app_request(Method::POST, "/denied", &[]);
        let response = send_http1(anonymous.addr, request).await;
        assert_eq!(response.status, StatusCode::FORBIDDEN);
    })
    .await;

    let lines = captured.request_lines();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    let forwarded: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(forwarded["level"], "INFO");
    assert_eq!(forwarded["endpoint"], "test");
    assert_eq!(forwarded["method"], "GET");
    assert_eq!(forwarded["host"], "app.example.com");
    assert_eq!(forwarded["path"], "/headers");
    assert_eq!(forwarded["status"], 200);
    assert!(
        forwarded["upstream_ms"].as_f64().unwrap() >= 0.0,
        "{forwarded}"
    );
    assert_eq!(forwarded["client"], "CN=Test Client,O=Moat Tests");
    assert!(
        !lines[0].contains("secret"),
        "the query string was logged: {}",
        lines[0]
    );

    let refused: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(refused["method"], "POST");
    assert_eq!(refused["path"], "/denied");
    assert_eq!(refused["status"], 403);
    assert_eq!(refused["client"], "-");
    assert!(refused.get("upstream_ms").is_none(), "{refused}");
}

#[tokio::test]
async fn an_upstream_that_cuts_its_response_short_is_logged() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (captured, _guard) = Captured::install();

    bounded(async {
        // Promises 100 bytes, sends 10, closes.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = vec![0u8; 4096];
            let _ = socket.read(&mut head).await;
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
                .await;
        });
        let gateway = Gateway::in_front_of(upstream, false).await;
        let mut client = send_raw(
            gateway.addr,
            b"GET /short HTTP/1.1\r\nHost: app.example.com\r\n\r\n",
        )
        .await;
        let mut received = Vec::new();
        let _ = client.read_to_end(&mut received).await;
        let received = String::from_utf8_lossy(&received);
        assert!(received.ends_with("0123456789"), "{received}");
    })
    .await;

    let log = captured.text();
    assert!(
        log.contains("upstream response cut short: the upstream closed or broke the connection before the end of its body"),
        "{log}"
    );
}
