//! The HTTP reverse proxy served over plain loopback TCP (TLS is the listener's job): what reaches
//! the upstream, what the client gets back, and how the proxy fails.

mod http_proxy_support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use http_proxy_support::*;
use moat_config::ClientAuthMode;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

#[tokio::test]
async fn identity_headers_reach_the_upstream_and_spoofed_ones_do_not() {
    bounded(async {
        let upstream = Upstream::start().await;
        let identity = client_identity();
        let gateway = Gateway::start(endpoint(upstream.addr), Some(Arc::clone(&identity)), false).await;
        let request = Request::get("/headers")
            .header("host", "app.example.com")
            .header("Client-Cert", ":c3Bvb2Y=:")
            .header("client-cert-chain", ":c3Bvb2Y=:")
            .header("Moat-Client-Subject", "CN=admin")
            .header("MOAT-CLIENT-ROLE", "root")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = send_http1(gateway.addr, request).await;
        assert_eq!(response.status, StatusCode::OK);
        let seen = response.echoed_headers();

        let cert = format!(":{}:", BASE64.encode(identity.certificate.as_ref()));
        let chain = format!(":{}:", BASE64.encode(identity.chain[0].as_ref()));
        assert_eq!(seen.all("client-cert"), vec![cert.as_str()]);
        assert_eq!(seen.all("client-cert-chain"), vec![chain.as_str()]);
        assert_eq!(seen.all("moat-client-subject"), vec!["CN=Test Client,O=Moat Tests"]);
        assert_eq!(seen.all("moat-client-issuer"), vec!["CN=Test CA"]);
        assert_eq!(seen.all("moat-client-serial"), vec![identity.serial_hex.as_str()]);
        assert_eq!(
            seen.all("moat-client-fingerprint-sha256"),
            vec![identity.fingerprint_sha256.as_str()]
        );
        assert_eq!(seen.all("moat-client-not-after"), vec!["2027-01-15T08:00:00Z"]);
        assert_eq!(
            seen.all("moat-client-san"),
            vec!["DNS:client.example.com, URI:spiffe://example.com/client, IP:10.1.2.3, email:ops@example.com"]
        );
        assert!(seen.all("moat-client-role").is_empty(), "spoofed Moat-Client-Role was forwarded");
    })
    .await;
}

#[tokio::test]
async fn anonymous_client_cannot_smuggle_identity_headers_when_certificates_are_not_asked_for() {
    bounded(async {
        let upstream = Upstream::start().await;
        let mut config = endpoint(upstream.addr);
        config.mutual_tls_cas.clear();
        let gateway = Gateway::start(config, None, false).await;
        let request = Request::get("/headers")
            .header("host", "app.example.com")
            .header("client-cert", ":c3Bvb2Y=:")
            .header("moat-client-subject", "CN=admin")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = send_http1(gateway.addr, request).await;
        assert_eq!(response.status, StatusCode::OK);
        let seen = response.echoed_headers();
        assert!(seen.all("client-cert").is_empty());
        assert!(seen.all("moat-client-subject").is_empty());
    })
    .await;
}

#[tokio::test]
async fn forwarding_headers_are_set_and_hop_by_hop_headers_removed() {
    bounded(async {
        let upstream = Upstream::start().await;
        let gateway = Gateway::start(endpoint(upstream.addr), Some(client_identity()), false).await;
        let mut stream = TcpStream::connect(gateway.addr).await.unwrap();
        stream
            .write_all(
                b"GET /headers HTTP/1.1\r\nHost: app.example.com\r\nConnection: close, X-Hop\r\n\
                  X-Hop: secret\r\nKeep-Alive: timeout=5\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\n\
                  TE: trailers\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: http\r\n\
                  X-End-To-End: kept\r\n\r\n",
            )
            .await
            .unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let raw = String::from_utf8(raw).unwrap();
        assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"), "{raw}");
        let body = raw.split_once("\r\n\r\n").unwrap().1;
        let seen = EchoedHeaders::parse(body);

        // moat is the first hop: what the client claimed is replaced, not appended to.
        assert_eq!(seen.all("x-forwarded-for"), vec!["127.0.0.1"]);
        assert_eq!(seen.all("x-forwarded-proto"), vec!["https"]);
        assert_eq!(seen.all("x-forwarded-host"), vec!["app.example.com"]);
        assert_eq!(seen.all("forwarded"), vec!["for=127.0.0.1;host=app.example.com;proto=https"]);
        assert_eq!(seen.all("host"), vec!["app.example.com"]);
        assert_eq!(seen.all("x-end-to-end"), vec!["kept"]);
        assert_eq!(seen.all("te"), vec!["trailers"]);
        for hop in ["x-hop", "keep-alive", "proxy-authorization"] {
            assert!(seen.all(hop).is_empty(), "{hop} reached the upstream");
        }
        // The upstream's own hop-by-hop header does not reach the client either.
        let head = raw.split_once("\r\n\r\n").unwrap().0.to_ascii_lowercase();
        assert!(!head.contains("x-upstream-hop"), "{head}");
        assert!(head.contains("x-upstream: yes"), "{head}");
    })
    .await;
}

#[tokio::test]
async fn http2_client_reaches_an_http1_upstream_with_host_and_identity() {
    bounded(async {
        let upstream = Upstream::start().await;
        let identity = client_identity();
        let gateway = Gateway::start(endpoint(upstream.addr), Some(identity), true).await;
        let request = Request::get("https://app.example.com/headers?x=1")
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .header("moat-client-subject", "CN=admin")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = send_http2(gateway.addr, request).await;
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(response.version, http::Version::HTTP_2);
        let seen = response.echoed_headers();
        assert_eq!(seen.all("host"), vec!["app.example.com"]);
        assert_eq!(seen.all("cookie"), vec!["a=1; b=2"]);
        assert_eq!(
            seen.all("moat-client-subject"),
            vec!["CN=Test Client,O=Moat Tests"]
        );
        assert_eq!(seen.all("x-request-target"), vec!["/headers?x=1"]);
    })
    .await;
}

#[tokio::test]
async fn absolute_form_target_names_the_host_over_the_host_header() {
    bounded(async {
        let upstream = Upstream::start().await;
        let gateway = Gateway::start(endpoint(upstream.addr), Some(client_identity()), false).await;
        let mut stream = TcpStream::connect(gateway.addr).await.unwrap();
        stream
            .write_all(
                b"GET http://app.example.com/headers HTTP/1.1\r\nHost: other.example\r\n\r\n",
            )
            .await
            .unwrap();
        let response = read_response_with_length(&mut stream).await;
        let body = response.split_once("\r\n\r\n").unwrap().1;
        let seen = EchoedHeaders::parse(body);
        assert_eq!(seen.all("host"), vec!["app.example.com"]);
        assert_eq!(seen.all("x-forwarded-host"), vec!["app.example.com"]);
        assert_eq!(seen.all("x-request-target"), vec!["/headers"]);
    })
    .await;
}

#[tokio::test]
async fn request_and_response_bodies_stream_through_both_protocols() {
    bounded(async {
        let upstream = Upstream::start().await;
        let gateway = Gateway::start(endpoint(upstream.addr), Some(client_identity()), false).await;
        let gateway2 = Gateway::start(endpoint(upstream.addr), Some(client_identity()), true).await;
        let payload: Bytes = (0..4 * 1024 * 1024u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<_>>()
            .into();

        let request = Request::post("/echo")
            .header("host", "app.example.com")
            .body(Full::new(payload.clone()))
            .unwrap();
        let response = send_http1(gateway.addr, request).await;
        assert_eq!(response.status, StatusCode::OK);
        assert!(response.body == payload, "HTTP/1.1 echo differs");

        let request = Request::post("https://app.example.com/echo")
            .body(Full::new(payload.clone()))
            .unwrap();
        let response = send_http2(gateway2.addr, request).await;
        assert_eq!(response.status, StatusCode::OK);
        assert!(response.body == payload, "HTTP/2 echo differs");
    })
    .await;
}

#[tokio::test]
async fn upstream_connections_are_pooled_and_reused() {
    bounded(async {
        let upstream = Upstream::start().await;
        let gateway = Gateway::start(endpoint(upstream.addr), Some(client_identity()), false).await;
        for _ in 0..3 {
            let request = Request::get("/headers")
                .header("host", "app.example.com")
                .body(Full::new(Bytes::new()))
                .unwrap();
            assert_eq!(
                send_http1(gateway.addr, request).await.status,
                StatusCode::OK
            );
        }
        assert_eq!(upstream.connections.load(Ordering::SeqCst), 1);
    })
    .await;
}

#[tokio::test]
async fn websocket_style_upgrade_is_tunnelled_both_ways() {
    bounded(async {
        let upstream = Upstream::start().await;
        let gateway = Gateway::start(endpoint(upstream.addr), Some(client_identity()), false).await;
        let mut stream = TcpStream::connect(gateway.addr).await.unwrap();
        stream
            .write_all(
                b"GET /upgrade HTTP/1.1\r\nHost: app.example.com\r\nConnection: Upgrade\r\n\
                  Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                  Sec-WebSocket-Version: 13\r\n\r\n",
            )
            .await
            .unwrap();
        let head = read_head(&mut stream).await;
        assert!(
            head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
            "{head}"
        );
        let lower = head.to_ascii_lowercase();
        assert!(lower.contains("upgrade: websocket"), "{head}");
        assert!(lower.contains("connection: upgrade"), "{head}");
        assert!(
            lower.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
            "{head}"
        );

        for message in [&b"hello through moat"[..], &b"second frame"[..]] {
            stream.write_all(message).await.unwrap();
            let mut echoed = vec![0u8; message.len()];
            stream.read_exact(&mut echoed).await.unwrap();
            assert_eq!(echoed, message);
        }
    })
    .await;
}

#[tokio::test]
async fn unreachable_upstream_gets_a_502_page() {
    bounded(async {
        let (_held, closed) = closed_port();
        let gateway = Gateway::start(endpoint(closed), Some(client_identity()), false).await;
        let request = Request::get("/")
            .header("host", "app.example.com")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = send_http1(gateway.addr, request).await;
        assert_eq!(response.status, StatusCode::BAD_GATEWAY);
        let body = String::from_utf8(response.body.to_vec()).unwrap();
        assert!(body.contains("<h1>502 Bad Gateway</h1>"), "{body}");
        assert!(body.contains("could not reach the service"), "{body}");
    })
    .await;
}

#[tokio::test]
async fn slow_upstream_gets_a_504_page_after_the_response_timeout() {
    bounded(async {
        let upstream = Upstream::start().await;
        let mut config = endpoint(upstream.addr);
        config.timeouts.upstream_response = Duration::from_millis(300);
        let gateway = Gateway::start(config, Some(client_identity()), false).await;
        let started = std::time::Instant::now();
        let request = json_get("/slow");
        let response = send_http1(gateway.addr, request).await;
        assert_eq!(response.status, StatusCode::GATEWAY_TIMEOUT);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
        let json: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(json["code"], "upstream_timeout");
        assert_eq!(json["status"], 504);
    })
    .await;
}

#[tokio::test]
async fn upstream_that_stalls_mid_body_is_cut_off_after_the_response_timeout() {
    bounded(async {
        let upstream = Upstream::start().await;
        let mut config = endpoint(upstream.addr);
        config.timeouts.upstream_response = Duration::from_millis(300);
        let gateway = Gateway::start(config, Some(client_identity()), false).await;
        let started = std::time::Instant::now();

        let mut stream = TcpStream::connect(gateway.addr).await.unwrap();
        stream
            .write_all(b"GET /stall HTTP/1.1\r\nHost: app.example.com\r\n\r\n")
            .await
            .unwrap();
        let head = read_head(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains("content-length: 1000"), "{head}");
        let mut rest = Vec::new();
        // The proxy closes the connection short of the promised length instead of hanging.
        let _ = stream.read_to_end(&mut rest).await;
        assert_eq!(rest, b"first");
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(3),
            "cut off after {elapsed:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn request_mode_without_certificate_gets_a_403_page_naming_the_certificate() {
    bounded(async {
        let upstream = Upstream::start().await;
        let mut config = endpoint(upstream.addr);
        config.client_auth = ClientAuthMode::Request;
        let gateway = Gateway::start(config, None, false).await;

        let request = Request::get("/headers")
            .header("host", "app.example.com")
            .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = send_http1(gateway.addr, request).await;
        assert_eq!(response.status, StatusCode::FORBIDDEN);
        assert_eq!(response.headers["content-type"], "text/html; charset=utf-8");
        let body = String::from_utf8(response.body.to_vec()).unwrap();
        assert!(body.contains("<h1>403 Forbidden</h1>"), "{body}");
        assert!(body.contains("A client certificate is required"), "{body}");

        let request = json_get("/headers");
        let response = send_http1(gateway.addr, request).await;
        assert_eq!(response.status, StatusCode::FORBIDDEN);
        let json: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(json["code"], "client_certificate_required");
        assert!(
            json["error"]
                .as_str()
                .unwrap()
                .contains("client certificate is required")
        );
        assert_eq!(
            upstream.connections.load(Ordering::SeqCst),
            0,
            "refused request reached the upstream"
        );
    })
    .await;
}

#[tokio::test]
async fn request_mode_with_certificate_is_forwarded() {
    bounded(async {
        let upstream = Upstream::start().await;
        let mut config = endpoint(upstream.addr);
        config.client_auth = ClientAuthMode::Request;
        let gateway = Gateway::start(config, Some(client_identity()), false).await;
        let request = Request::get("/headers")
            .header("host", "app.example.com")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = send_http1(gateway.addr, request).await;
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(
            response.echoed_headers().all("moat-client-subject"),
            vec!["CN=Test Client,O=Moat Tests"]
        );
    })
    .await;
}

#[tokio::test]
async fn client_that_never_finishes_its_headers_is_disconnected() {
    bounded(async {
        let upstream = Upstream::start().await;
        let mut config = endpoint(upstream.addr);
        config.timeouts.request_header = Duration::from_millis(300);
        let gateway = Gateway::start(config, Some(client_identity()), false).await;
        let mut stream = TcpStream::connect(gateway.addr).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: app")
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let mut buf = [0u8; 64];
        let read = stream.read(&mut buf).await.unwrap_or(0);
        assert_eq!(read, 0, "expected the connection to close");
        assert!(
            started.elapsed() >= Duration::from_millis(250),
            "closed too early: {:?}",
            started.elapsed()
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "closed too late: {:?}",
            started.elapsed()
        );
    })
    .await;
}

#[tokio::test]
async fn idle_keep_alive_connection_is_closed_after_the_idle_timeout_only() {
    bounded(async {
        let upstream = Upstream::start().await;
        let mut config = endpoint(upstream.addr);
        config.timeouts.request_header = Duration::from_millis(200);
        config.timeouts.idle = Duration::from_millis(800);
        let gateway = Gateway::start(config, Some(client_identity()), false).await;
        let mut stream = TcpStream::connect(gateway.addr).await.unwrap();
        let request = b"GET /headers HTTP/1.1\r\nHost: app.example.com\r\n\r\n";
        stream.write_all(request).await.unwrap();
        read_response_with_length(&mut stream).await;

        // Longer than the header timeout but shorter than the idle timeout: still open.
        tokio::time::sleep(Duration::from_millis(400)).await;
        stream.write_all(request).await.unwrap();
        let second = read_response_with_length(&mut stream).await;
        assert!(second.starts_with("HTTP/1.1 200"), "{second}");

        let started = std::time::Instant::now();
        let mut buf = [0u8; 64];
        let read = stream.read(&mut buf).await.unwrap_or(0);
        assert_eq!(read, 0, "expected the idle connection to close");
        assert!(
            started.elapsed() >= Duration::from_millis(600),
            "closed too early: {:?}",
            started.elapsed()
        );
    })
    .await;
}

#[tokio::test]
async fn shutdown_lets_the_in_flight_request_finish_and_then_closes() {
    bounded(async {
        let upstream = Upstream::start().await;
        let gateway = Gateway::start(endpoint(upstream.addr), Some(client_identity()), false).await;
        let mut stream = TcpStream::connect(gateway.addr).await.unwrap();
        stream
            .write_all(b"GET /slow HTTP/1.1\r\nHost: app.example.com\r\n\r\n")
            .await
            .unwrap();
        eventually("/slow reaches the upstream", || {
            upstream.requests.load(Ordering::SeqCst) == 1
        })
        .await;
        gateway.shutdown.send(true).unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let raw = String::from_utf8(raw).unwrap();
        assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"), "{raw}");
        assert!(raw.ends_with("late"), "{raw}");
    })
    .await;
}

#[tokio::test]
async fn connect_requests_are_not_tunnelled() {
    bounded(async {
        let upstream = Upstream::start().await;
        let gateway = Gateway::start(endpoint(upstream.addr), Some(client_identity()), false).await;
        let mut stream = TcpStream::connect(gateway.addr).await.unwrap();
        stream
            .write_all(b"CONNECT internal.example:22 HTTP/1.1\r\nHost: internal.example:22\r\n\r\n")
            .await
            .unwrap();
        let response = read_response_with_length(&mut stream).await;
        assert!(
            response.starts_with("HTTP/1.1 501 Not Implemented\r\n"),
            "{response}"
        );
        assert!(
            response.contains("does not open CONNECT tunnels"),
            "{response}"
        );
        assert_eq!(upstream.connections.load(Ordering::SeqCst), 0);
    })
    .await;
}

#[tokio::test]
async fn upstream_that_never_completes_the_tcp_handshake_gets_a_502_after_the_connect_timeout() {
    bounded(async {
        // A listener that never accepts, with its backlog filled: further SYNs go unanswered.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let stuck = socket.listen(0).unwrap();
        let stuck_addr = stuck.local_addr().unwrap();
        let mut fillers = Vec::new();
        for _ in 0..4 {
            if let Ok(Ok(stream)) =
                tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(stuck_addr))
                    .await
            {
                fillers.push(stream);
            }
        }
        let mut config = endpoint(stuck_addr);
        config.timeouts.upstream_connect = Duration::from_millis(300);
        config.timeouts.upstream_response = Duration::from_secs(20);
        let gateway = Gateway::start(config, Some(client_identity()), false).await;
        let started = std::time::Instant::now();
        let request = Request::get("/")
            .header("host", "app.example.com")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = send_http1(gateway.addr, request).await;
        assert_eq!(response.status, StatusCode::BAD_GATEWAY);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "took {:?}",
            started.elapsed()
        );
        drop(stuck);
    })
    .await;
}

#[tokio::test]
async fn idle_http2_connection_is_closed_after_the_idle_timeout() {
    bounded(async {
        let upstream = Upstream::start().await;
        let mut config = endpoint(upstream.addr);
        config.timeouts.request_header = Duration::from_millis(200);
        config.timeouts.idle = Duration::from_millis(800);
        let gateway = Gateway::start(config, Some(client_identity()), true).await;
        let stream = TcpStream::connect(gateway.addr).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .unwrap();
        let connection = tokio::spawn(connection);
        let started = std::time::Instant::now();
        for _ in 0..2 {
            let request = Request::get("https://app.example.com/headers")
                .body(Full::new(Bytes::new()))
                .unwrap();
            let response = sender.send_request(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            // Longer than the header timeout, shorter than the idle timeout.
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        connection.await.unwrap().unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(1200),
            "closed too early: {:?}",
            started.elapsed()
        );
    })
    .await;
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_http2_request_finish() {
    bounded(async {
        let upstream = Upstream::start().await;
        let gateway = Gateway::start(endpoint(upstream.addr), Some(client_identity()), true).await;
        let request = Request::get("https://app.example.com/slow")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let in_flight = tokio::spawn(send_http2(gateway.addr, request));
        eventually("/slow reaches the upstream", || {
            upstream.requests.load(Ordering::SeqCst) == 1
        })
        .await;
        gateway.shutdown.send(true).unwrap();
        let response = in_flight.await.unwrap();
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(&response.body[..], b"late");
    })
    .await;
}
