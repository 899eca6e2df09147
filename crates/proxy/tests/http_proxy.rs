//! The HTTP reverse proxy served over plain loopback TCP (TLS is the listener's job): what reaches
//! the upstream, what the client gets back, and how the proxy fails.

mod http_proxy_support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use http_proxy_support::*;
use moat_config::{ClientAuthMode, EndpointConfig, UpstreamProtocol};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// A response timeout far shorter than `/slow` takes.
fn short_response_timeout(config: &mut EndpointConfig) {
    config.timeouts.upstream_response = Duration::from_millis(300);
}

/// A header timeout shorter, and an idle timeout longer, than the client's pauses.
fn short_header_and_idle_timeouts(config: &mut EndpointConfig) {
    config.timeouts.request_header = Duration::from_millis(200);
    config.timeouts.idle = Duration::from_millis(800);
}

#[tokio::test]
async fn identity_headers_reach_the_upstream_and_spoofed_ones_do_not() {
    bounded(async {
        let identity = client_identity();
        let (_upstream, gateway) =
            start_proxied_as(Some(Arc::clone(&identity)), false, |_| {}).await;
        let request = app_request(
            Method::GET,
            "/headers",
            &[
                ("Client-Cert", ":c3Bvb2Y=:"),
                ("client-cert-chain", ":c3Bvb2Y=:"),
                ("Moat-Client-Subject", "CN=admin"),
                ("MOAT-CLIENT-ROLE", "root"),
            ],
        );
        let response = send_http1(gateway.addr, request).await;
        assert_eq!(response.status, StatusCode::OK);
        let seen = response.echoed_headers();

        let cert = format!(":{}:", BASE64.encode(identity.certificate.as_ref()));
        let chain = format!(":{}:", BASE64.encode(identity.chain[0].as_ref()));
        seen.assert_once(&[
            ("client-cert", &cert),
            ("client-cert-chain", &chain),
            ("moat-client-subject", "CN=Test Client,O=Moat Tests"),
            ("moat-client-issuer", "CN=Test CA"),
            ("moat-client-serial", &identity.serial_hex),
            (
                "moat-client-fingerprint-sha256",
                &identity.fingerprint_sha256,
            ),
            ("moat-client-not-after", "2027-01-15T08:00:00Z"),
            (
                "moat-client-san",
                "DNS:client.example.com, URI:spiffe://example.com/client, IP:10.1.2.3, \
                 email:ops@example.com",
            ),
        ]);
        // The client's own Moat-Client-Role is not forwarded.
        seen.assert_absent(&["moat-client-role"]);
    })
    .await;
}

#[tokio::test]
async fn anonymous_client_cannot_smuggle_identity_headers_when_certificates_are_not_asked_for() {
    bounded(async {
        let (_upstream, gateway) =
            start_proxied_as(None, false, |config| config.mutual_tls_cas.clear()).await;
        let request = app_request(
            Method::GET,
            "/headers",
            &[
                ("client-cert", ":c3Bvb2Y=:"),
                ("moat-client-subject", "CN=admin"),
            ],
        );
        let response = send_http1(gateway.addr, request).await;
        assert_eq!(response.status, StatusCode::OK);
        let seen = response.echoed_headers();
        seen.assert_absent(&["client-cert", "moat-client-subject"]);
    })
    .await;
}

#[tokio::test]
async fn forwarding_headers_are_set_and_hop_by_hop_headers_removed() {
    bounded(async {
        let (_upstream, gateway) = start_proxied(false).await;
        let mut stream = send_raw(
            gateway.addr,
            b"GET /headers HTTP/1.1\r\nHost: app.example.com\r\nConnection: close, X-Hop\r\n\
              X-Hop: secret\r\nKeep-Alive: timeout=5\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\n\
              TE: trailers\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: http\r\n\
              X-End-To-End: kept\r\n\r\n",
        )
        .await;
        let raw = read_to_close(&mut stream).await;
        assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"), "{raw}");
        let seen = EchoedHeaders::in_raw_response(&raw);

        // moat is the first hop: what the client claimed is replaced, not appended to.
        seen.assert_once(&[
            ("x-forwarded-for", "127.0.0.1"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "app.example.com"),
            (
                "forwarded",
                "for=127.0.0.1;host=app.example.com;proto=https",
            ),
            ("host", "app.example.com"),
            ("x-end-to-end", "kept"),
            ("te", "trailers"),
        ]);
        seen.assert_absent(&["x-hop", "keep-alive", "proxy-authorization"]);
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
        let (_upstream, gateway) = start_proxied(true).await;
        let request = Request::get("https://app.example.com/headers?x=1")
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .header("moat-client-subject", "CN=admin")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = send_http2(gateway.addr, request).await;
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(response.version, http::Version::HTTP_2);
        response.echoed_headers().assert_once(&[
            ("host", "app.example.com"),
            ("cookie", "a=1; b=2"),
            ("moat-client-subject", "CN=Test Client,O=Moat Tests"),
            ("x-request-target", "/headers?x=1"),
        ]);
    })
    .await;
}

#[tokio::test]
async fn absolute_form_target_names_the_host_over_the_host_header() {
    bounded(async {
        let (_upstream, gateway) = start_proxied(false).await;
        let response = exchange_raw(
            gateway.addr,
            b"GET http://app.example.com/headers HTTP/1.1\r\nHost: other.example\r\n\r\n",
        )
        .await;
        EchoedHeaders::in_raw_response(&response).assert_once(&[
            ("host", "app.example.com"),
            ("x-forwarded-host", "app.example.com"),
            ("x-request-target", "/headers"),
        ]);
    })
    .await;
}

#[tokio::test]
async fn request_and_response_bodies_stream_through_both_protocols() {
    bounded(async {
        let (upstream, gateway) = start_proxied(false).await;
        let gateway2 = Gateway::in_front_of(upstream.addr, true).await;
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
        let (upstream, gateway) = start_proxied(false).await;
        for _ in 0..3 {
            let response = send_http1(gateway.addr, get("/headers")).await;
            assert_eq!(response.status, StatusCode::OK);
        }
        assert_eq!(upstream.connections.load(Ordering::SeqCst), 1);
    })
    .await;
}

/// A WebSocket handshake request (RFC 6455 4.1's example key) for the test upstream's echo.
const WEBSOCKET_UPGRADE: &[u8] = b"GET /upgrade HTTP/1.1\r\nHost: app.example.com\r\n\
    Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

#[tokio::test]
async fn websocket_style_upgrade_is_tunnelled_both_ways() {
    bounded(async {
        let (_upstream, gateway) = start_proxied(false).await;
        let mut stream = send_raw(gateway.addr, WEBSOCKET_UPGRADE).await;
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

/// An HTTP/2 WebSocket request (RFC 8441): CONNECT with `:protocol`.
fn extended_connect(path: &str, protocol: &'static str) -> Request<Full<Bytes>> {
    let mut request = Request::builder()
        .method(Method::CONNECT)
        .uri(format!("https://app.example.com{path}"))
        .header("sec-websocket-version", "13")
        .body(Full::new(Bytes::new()))
        .unwrap();
    request
        .extensions_mut()
        .insert(hyper::ext::Protocol::from_static(protocol));
    request
}

#[tokio::test]
async fn an_http2_websocket_reaches_an_http1_upstream_as_an_upgrade_and_carries_bytes() {
    bounded(async {
        let (_upstream, gateway) = start_proxied(true).await;
        let (mut client, _) = Client::connect(gateway.addr, true).await;
        // The server's SETTINGS, which enable extended CONNECT, come with the first exchange.
        let first = client.send(get_h2("/headers")).await;
        assert_eq!(first.status(), StatusCode::OK);
        let response = client.send(extended_connect("/upgrade", "websocket")).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().get("sec-websocket-accept").is_none());
        let mut stream = hyper_util::rt::TokioIo::new(hyper::upgrade::on(response).await.unwrap());
        for message in [&b"hello over h2"[..], b"and again"] {
            stream.write_all(message).await.unwrap();
            let mut echoed = vec![0; message.len()];
            stream.read_exact(&mut echoed).await.unwrap();
            assert_eq!(echoed, message);
        }
        // The connection still carries ordinary requests beside the WebSocket.
        let beside = client.send(get_h2("/headers")).await;
        assert_eq!(beside.status(), StatusCode::OK);
    })
    .await;
}

#[tokio::test]
async fn other_connects_and_a_forged_websocket_accept_are_refused() {
    bounded(async {
        let (_upstream, gateway) = start_proxied(true).await;
        let (mut client, _) = Client::connect(gateway.addr, true).await;
        let _ = client.send(get_h2("/headers")).await;
        let plain_connect = Request::builder()
            .method(Method::CONNECT)
            .uri("app.example.com:443")
            .body(Full::new(Bytes::new()))
            .unwrap();
        for (case, request, status) in [
            (
                "a plain CONNECT",
                plain_connect,
                StatusCode::NOT_IMPLEMENTED,
            ),
            (
                "an extended CONNECT to another protocol",
                extended_connect("/upgrade", "connect-udp"),
                StatusCode::NOT_IMPLEMENTED,
            ),
            (
                "an upstream whose accept does not answer moat's key",
                extended_connect("/upgrade-forged", "websocket"),
                StatusCode::BAD_GATEWAY,
            ),
            (
                "an upstream that answers 200 without switching",
                extended_connect("/headers", "websocket"),
                StatusCode::BAD_GATEWAY,
            ),
        ] {
            let response = client.send(request).await;
            assert_eq!(response.status(), status, "{case}");
        }
    })
    .await;
}

#[tokio::test]
async fn websocket_bytes_sent_right_behind_the_upgrade_request_reach_the_upstream() {
    bounded(async {
        let (_upstream, gateway) = start_proxied(false).await;
        // The first frame rides in the same write as the request, before the 101: moat reads
        // it with the request and must hand it to the tunnel, not drop it.
        let mut stream =
            send_raw(gateway.addr, &[WEBSOCKET_UPGRADE, b"early frame"].concat()).await;
        let head = read_head(&mut stream).await;
        assert!(
            head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
            "{head}"
        );
        let mut echoed = vec![0u8; b"early frame".len()];
        stream.read_exact(&mut echoed).await.unwrap();
        assert_eq!(echoed, b"early frame");
        stream.write_all(b"later frame").await.unwrap();
        stream.read_exact(&mut echoed).await.unwrap();
        assert_eq!(echoed, b"later frame");
    })
    .await;
}

#[tokio::test]
async fn unreachable_upstream_gets_a_502_page() {
    bounded(async {
        let (_held, closed) = closed_port();
        let gateway = Gateway::in_front_of(closed, false).await;
        let response = send_http1(gateway.addr, get("/")).await;
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
        let (_upstream, gateway) = start_proxied_with(false, short_response_timeout).await;
        let started = Instant::now();
        let response = send_http1(gateway.addr, json_get("/slow")).await;
        assert_eq!(response.status, StatusCode::GATEWAY_TIMEOUT);
        assert_took(started, ..Duration::from_secs(2), "the 504");
        let json: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(json["code"], "upstream_timeout");
        assert_eq!(json["status"], 504);
    })
    .await;
}

#[tokio::test]
async fn upstream_that_stalls_mid_body_is_cut_off_after_the_response_timeout() {
    bounded(async {
        let (_upstream, gateway) = start_proxied_with(false, short_response_timeout).await;
        let started = Instant::now();

        let mut stream = send_raw(
            gateway.addr,
            b"GET /stall HTTP/1.1\r\nHost: app.example.com\r\n\r\n",
        )
        .await;
        let head = read_head(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains("content-length: 1000"), "{head}");
        let mut rest = Vec::new();
        // The proxy closes the connection short of the promised length instead of hanging.
        let _ = stream.read_to_end(&mut rest).await;
        assert_eq!(rest, b"first");
        assert_took(
            started,
            Duration::from_millis(300)..Duration::from_secs(3),
            "cut off",
        );
    })
    .await;
}

#[tokio::test]
async fn request_mode_without_certificate_gets_a_403_page_naming_the_certificate() {
    bounded(async {
        let (upstream, gateway) = start_proxied_as(None, false, |config| {
            config.client_auth = ClientAuthMode::Request;
        })
        .await;

        let request = app_request(
            Method::GET,
            "/headers",
            &[("accept", "text/html,application/xhtml+xml,*/*;q=0.8")],
        );
        let response = send_http1(gateway.addr, request).await;
        assert_eq!(response.status, StatusCode::FORBIDDEN);
        assert_eq!(response.headers["content-type"], "text/html; charset=utf-8");
        let body = String::from_utf8(response.body.to_vec()).unwrap();
        assert!(body.contains("<h1>403 Forbidden</h1>"), "{body}");
        assert!(body.contains("A client certificate is required"), "{body}");

        let response = send_http1(gateway.addr, json_get("/headers")).await;
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
        let (_upstream, gateway) = start_proxied_with(false, |config| {
            config.client_auth = ClientAuthMode::Request;
        })
        .await;
        let response = send_http1(gateway.addr, get("/headers")).await;
        assert_eq!(response.status, StatusCode::OK);
        response
            .echoed_headers()
            .assert_once(&[("moat-client-subject", "CN=Test Client,O=Moat Tests")]);
    })
    .await;
}

#[tokio::test]
async fn client_that_never_finishes_its_headers_is_disconnected() {
    bounded(async {
        let (_upstream, gateway) = start_proxied_with(false, |config| {
            config.timeouts.request_header = Duration::from_millis(300);
        })
        .await;
        let mut stream = send_raw(gateway.addr, b"GET / HTTP/1.1\r\nHost: app").await;
        assert_closes(
            &mut stream,
            Duration::from_millis(250)..Duration::from_secs(3),
            "the connection",
        )
        .await;
    })
    .await;
}

#[tokio::test]
async fn idle_keep_alive_connection_is_closed_after_the_idle_timeout_only() {
    bounded(async {
        let (_upstream, gateway) = start_proxied_with(false, short_header_and_idle_timeouts).await;
        let request = b"GET /headers HTTP/1.1\r\nHost: app.example.com\r\n\r\n";
        let mut stream = send_raw(gateway.addr, request).await;
        read_response_with_length(&mut stream).await;

        // Longer than the header timeout but shorter than the idle timeout: still open.
        tokio::time::sleep(Duration::from_millis(400)).await;
        stream.write_all(request).await.unwrap();
        let second = read_response_with_length(&mut stream).await;
        assert!(second.starts_with("HTTP/1.1 200"), "{second}");

        assert_closes(
            &mut stream,
            Duration::from_millis(600)..,
            "the idle connection",
        )
        .await;
    })
    .await;
}

#[tokio::test]
async fn shutdown_lets_the_in_flight_request_finish_and_then_closes() {
    bounded(async {
        let (upstream, gateway) = start_proxied(false).await;
        let mut stream = send_raw(
            gateway.addr,
            b"GET /slow HTTP/1.1\r\nHost: app.example.com\r\n\r\n",
        )
        .await;
        shut_down_once_requested(&upstream, &gateway).await;
        let raw = read_to_close(&mut stream).await;
        assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"), "{raw}");
        assert!(raw.ends_with("late"), "{raw}");
    })
    .await;
}

#[tokio::test]
async fn connect_requests_are_not_tunnelled() {
    bounded(async {
        let (upstream, gateway) = start_proxied(false).await;
        let response = exchange_raw(
            gateway.addr,
            b"CONNECT internal.example:22 HTTP/1.1\r\nHost: internal.example:22\r\n\r\n",
        )
        .await;
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
        let started = Instant::now();
        let response = send_http1(gateway.addr, get("/")).await;
        assert_eq!(response.status, StatusCode::BAD_GATEWAY);
        assert_took(started, ..Duration::from_secs(3), "the 502");
        drop(stuck);
    })
    .await;
}

#[tokio::test]
async fn idle_http2_connection_is_closed_after_the_idle_timeout() {
    bounded(async {
        let (_upstream, gateway) = start_proxied_with(true, short_header_and_idle_timeouts).await;
        let (mut client, connection) = Client::connect(gateway.addr, true).await;
        let started = Instant::now();
        for _ in 0..2 {
            let response = client.send(get_h2("/headers")).await;
            assert_eq!(response.status(), StatusCode::OK);
            // Longer than the header timeout, shorter than the idle timeout.
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        connection.await.unwrap().unwrap();
        assert_took(
            started,
            Duration::from_millis(1200)..,
            "the HTTP/2 connection closed",
        );
    })
    .await;
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_http2_request_finish() {
    bounded(async {
        let (upstream, gateway) = start_proxied(true).await;
        let in_flight = tokio::spawn(send_http2(gateway.addr, get_h2("/slow")));
        shut_down_once_requested(&upstream, &gateway).await;
        let response = in_flight.await.unwrap();
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(&response.body[..], b"late");
    })
    .await;
}

/// A gRPC call over HTTP/2 (unary, an empty message) to `path`.
fn grpc_call(path: &str) -> Request<Full<Bytes>> {
    let mut request = get_h2(path);
    *request.method_mut() = Method::POST;
    let headers = request.headers_mut();
    headers.insert("content-type", "application/grpc".parse().unwrap());
    headers.insert("te", "trailers".parse().unwrap());
    *request.body_mut() = Full::new(Bytes::from_static(&[0, 0, 0, 0, 0]));
    request
}

#[tokio::test]
async fn each_upstream_protocol_reaches_the_upstream_in_the_version_it_names() {
    bounded(async {
        use UpstreamProtocol::{Auto, Http1, Http2};
        // (setting, client over HTTP/2, a gRPC call, the version the upstream sees)
        let table = [
            (Auto, false, false, "HTTP/1.1"),
            (Auto, true, false, "HTTP/1.1"),
            (Auto, true, true, "HTTP/2.0"),
            (Http1, false, false, "HTTP/1.1"),
            (Http1, true, true, "HTTP/1.1"),
            (Http2, false, false, "HTTP/2.0"),
            (Http2, true, false, "HTTP/2.0"),
            (Http2, true, true, "HTTP/2.0"),
        ];
        for (protocol, http2, grpc, expected) in table {
            let case = format!("{protocol:?}, client HTTP/2 {http2}, gRPC {grpc}");
            let (_upstream, gateway) =
                start_proxied_with(http2, |config| config.upstream_protocol = protocol).await;
            let mut request = if http2 {
                get_h2("/headers")
            } else {
                get("/headers")
            };
            if grpc {
                request
                    .headers_mut()
                    .insert("content-type", "application/grpc".parse().unwrap());
            }
            let response = if http2 {
                send_http2(gateway.addr, request).await
            } else {
                send_http1(gateway.addr, request).await
            };
            assert_eq!(response.status, StatusCode::OK, "{case}");
            let echoed = response.echoed_headers();
            echoed.assert_once(&[("x-request-version", expected)]);
            if expected == "HTTP/2.0" {
                // The host the client addressed is the :authority, and Host agrees with it.
                echoed.assert_once(&[
                    ("x-request-authority", "app.example.com"),
                    ("host", "app.example.com"),
                ]);
            } else {
                echoed.assert_once(&[("host", "app.example.com")]);
            }
        }
    })
    .await;
}

#[tokio::test]
async fn a_body_still_dripping_after_the_response_has_ended_is_cut_off_as_slow() {
    bounded(async {
        // The slow-body limit is suspended only while the upstream answers: once a response is
        // complete, a client dripping the rest of its body is a slow upload again, whichever
        // protocol the upstream speaks.
        for protocol in [UpstreamProtocol::Http1, UpstreamProtocol::Http2] {
            let (_upstream, gateway) = start_proxied_with(false, |config| {
                config.timeouts.request_body = Duration::from_millis(800);
                config.timeouts.request_body_min_rate = 0;
                config.timeouts.idle = Duration::from_secs(20);
                config.upstream_protocol = protocol;
            })
            .await;
            let mut stream = send_raw(
                gateway.addr,
                b"POST /answer-then-read HTTP/1.1\r\nHost: app.example.com\r\n\
                  Content-Length: 100\r\n\r\nx",
            )
            .await;
            let head = read_head(&mut stream).await;
            assert!(head.starts_with("HTTP/1.1 200"), "{protocol:?}: {head}");
            let started = Instant::now();
            let mut closed_after = None;
            let mut buf = [0u8; 4096];
            // A byte every 300 ms for up to 4 s: never 800 ms of silence in a row, more in all.
            while started.elapsed() < Duration::from_secs(4) {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let wrote = stream.write_all(b"x").await;
                let read =
                    tokio::time::timeout(Duration::from_millis(1), stream.read(&mut buf)).await;
                if wrote.is_err() || matches!(read, Ok(Ok(0)) | Ok(Err(_))) {
                    closed_after = Some(started.elapsed());
                    break;
                }
            }
            let closed_after = closed_after
                .unwrap_or_else(|| panic!("{protocol:?}: the dripping body was never cut off"));
            assert!(
                closed_after >= Duration::from_millis(700)
                    && closed_after < Duration::from_millis(2500),
                "{protocol:?}: cut after {closed_after:?}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn identity_claims_in_request_trailers_never_reach_the_upstream() {
    bounded(async {
        let (_upstream, gateway) = start_proxied_with(true, |config| {
            config.upstream_protocol = UpstreamProtocol::Http2;
        })
        .await;
        let claims = [
            "moat-client-subject",
            "moat_client_subject",
            "client-cert",
            "client_cert_chain",
            "x-forwarded-for",
            "forwarded",
        ];
        let mut trailers = http::HeaderMap::new();
        for name in claims.iter().chain(&["x-checksum"]) {
            trailers.insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                "claimed".parse().unwrap(),
            );
        }
        let body = Full::new(Bytes::from_static(b"payload"))
            .with_trailers(std::future::ready(Some(Ok(trailers))));
        let mut request = get_h2("/echo").map(|_| body);
        *request.method_mut() = Method::POST;
        // The upstream's /echo sends back the body and trailers it received.
        let (mut client, _) = Client::connect(gateway.addr, true).await;
        let response = client.send(request).await;
        assert_eq!(response.status(), StatusCode::OK);
        let collected = response.into_body().collect().await.unwrap();
        let echoed = collected.trailers().cloned().unwrap_or_default();
        assert_eq!(collected.to_bytes(), "payload");
        assert_eq!(echoed.get("x-checksum").unwrap(), "claimed", "{echoed:?}");
        for name in claims {
            assert!(
                echoed.get(name).is_none(),
                "{name} reached the upstream: {echoed:?}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn refused_grpc_calls_get_a_grpc_status_not_a_page() {
    bounded(async {
        // No upstream: UNAVAILABLE, with the cause in grpc-message.
        let (_held, closed) = closed_port();
        let gateway = Gateway::in_front_of(closed, true).await;
        let response = send_http2(gateway.addr, grpc_call("/pkg.Service/Method")).await;
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(response.headers["content-type"], "application/grpc");
        assert_eq!(response.headers["grpc-status"], "14");
        let message = response.headers["grpc-message"].to_str().unwrap();
        assert!(message.contains("could not reach the service"), "{message}");
        assert!(response.body.is_empty());

        // No certificate where one is required: UNAUTHENTICATED, and the upstream is not reached.
        let (upstream, gateway) = start_proxied_as(None, true, |config| {
            config.client_auth = ClientAuthMode::Request;
        })
        .await;
        let response = send_http2(gateway.addr, grpc_call("/pkg.Service/Method")).await;
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(response.headers["grpc-status"], "16");
        let message = response.headers["grpc-message"].to_str().unwrap();
        assert!(
            message.contains("client certificate is required"),
            "{message}"
        );
        assert_eq!(upstream.connections.load(Ordering::SeqCst), 0);
    })
    .await;
}
