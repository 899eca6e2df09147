//! gRPC through `moat http` (issue 14), with tonic as the client and the server: every kind of
//! call over h2c and over TLS upstreams, statuses and trailers intact, the client's identity as
//! metadata, refusals as gRPC statuses, a long stream, and the same through an edge.

mod peers;
mod through_edge;

use std::path::Path;
use std::time::Duration;

use http::uri::PathAndQuery;
use tonic::Code;
use tonic::transport::Channel;

use crate::gateway_support::{Moat, Usage, closed_port, gateway_pki_dir, write_pair};
use peers::{
    FAIL_MESSAGE, RawCodec, client, connect, payload, request, start_h2c_upstream,
    start_tls_upstream, text, unary,
};

/// Opens a `Chat` stream whose first message is `first`: returns where to send the next ones
/// (`buffer` may wait unsent) and the replies.
async fn chat(
    channel: &Channel,
    buffer: usize,
    first: Vec<u8>,
) -> (
    tokio::sync::mpsc::Sender<Vec<u8>>,
    tonic::Streaming<Vec<u8>>,
) {
    let (outgoing, incoming) = tokio::sync::mpsc::channel::<Vec<u8>>(buffer);
    let requests = futures_util::stream::unfold(incoming, |mut incoming| async move {
        incoming.recv().await.map(|message| (message, incoming))
    });
    outgoing.send(first).await.unwrap();
    let response = client(channel)
        .await
        .streaming(
            request(requests, &[]),
            PathAndQuery::from_static("/moat.test.Echo/Chat"),
            RawCodec,
        )
        .await
        .expect("bidirectional call");
    (outgoing, response.into_inner())
}

/// A runtime for the clients (moat and the upstream run on their own).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The usual test directory (after `prepare` writes its own files), an h2c echo service, and
/// `moat http` in front of it with the mTLS files and `extra` flags.
fn moat_in_front_of_h2c(prepare: impl FnOnce(&Path), extra: &[&str]) -> (tempfile::TempDir, Moat) {
    let scratch = gateway_pki_dir("grpc-client");
    prepare(scratch.path());
    let upstream = start_h2c_upstream();
    let moat = Moat::serve_mtls(scratch.path(), "http", &format!("http://{upstream}"), extra);
    (scratch, moat)
}

/// Unary, server-, client- and bidirectional streaming calls, and a failing one, all answered
/// as the upstream answered them.
async fn assert_calls_of_every_kind(channel: &Channel) {
    let echoed = unary(channel, "/moat.test.Echo/Unary", b"hello", &[]).await;
    assert_eq!(text(echoed.expect("unary call")), "hello");

    // Server streaming: every message in order, then the upstream's own trailers.
    let response = client(channel)
        .await
        .server_streaming(
            request(b"500".to_vec(), &[]),
            PathAndQuery::from_static("/moat.test.Echo/Count"),
            RawCodec,
        )
        .await
        .expect("server-streaming call");
    let mut stream = response.into_inner();
    for expected in 0..500 {
        let message = stream
            .message()
            .await
            .expect("a message")
            .expect("500 messages");
        assert_eq!(message, expected.to_string().into_bytes());
    }
    assert_eq!(stream.message().await.expect("a clean end"), None);
    let trailers = stream.trailers().await.unwrap().expect("trailers");
    assert_eq!(trailers.get("x-test-trailer").unwrap(), "kept");

    // Client streaming: 1,000 messages of 100 bytes counted by the upstream.
    let messages = futures_util::stream::iter((0..1000).map(|_| payload(100).to_vec()));
    let summed = client(channel)
        .await
        .client_streaming(
            request(messages, &[]),
            PathAndQuery::from_static("/moat.test.Echo/Sum"),
            RawCodec,
        )
        .await
        .expect("client-streaming call");
    assert_eq!(text(summed), "1000 100000");

    // Bidirectional: each answer arrives before the next message is sent, so neither direction
    // waits for the other's end.
    let (outgoing, mut replies) = chat(channel, 1, b"ping 0".to_vec()).await;
    for round in 0..20 {
        let reply = tokio::time::timeout(Duration::from_secs(5), replies.message())
            .await
            .unwrap_or_else(|_| panic!("round {round}: no answer while the stream is open"))
            .expect("a reply")
            .expect("the stream is open");
        assert_eq!(reply, format!("ping {round}").into_bytes());
        outgoing
            .send(format!("ping {}", round + 1).into_bytes())
            .await
            .unwrap();
    }
    drop(outgoing);
    // The last ping sent is answered too, then the stream ends cleanly.
    assert_eq!(replies.message().await.unwrap().unwrap(), b"ping 20");
    assert_eq!(replies.message().await.unwrap(), None);

    // A status of the upstream's own, its message and its custom trailer intact.
    let failed = unary(channel, "/moat.test.Echo/Fail", b"", &[])
        .await
        .expect_err("NOT_FOUND");
    assert_eq!(failed.code(), Code::NotFound, "{failed:?}");
    assert_eq!(failed.message(), FAIL_MESSAGE);
    assert_eq!(failed.metadata().get("x-test-trailer").unwrap(), "kept");
}

#[test]
fn every_kind_of_grpc_call_reaches_an_h2c_upstream_by_default() {
    // No --upstream-protocol: under auto, a client's HTTP/2 gRPC call goes to a plain
    // upstream as h2c.
    let (scratch, moat) = moat_in_front_of_h2c(|_| {}, &[]);
    let dir = scratch.path();
    runtime().block_on(async {
        let channel = connect(dir, moat.port(), "localhost", Some("client")).await;
        assert_calls_of_every_kind(&channel).await;
    });
}

/// The CA `upstream-ca.crt` and a TLS echo service with its certificate for localhost and
/// 127.0.0.1; returns its address.
fn tls_upstream(dir: &Path) -> std::net::SocketAddr {
    let ca = crate::gateway_support::TestCa::new("Upstream CA");
    std::fs::write(dir.join("upstream-ca.crt"), &ca.pem).unwrap();
    write_pair(dir, "upstream", &ca.leaf("localhost", Usage::Server, 3));
    start_tls_upstream(&dir.join("upstream.crt"), &dir.join("upstream.key"))
}

#[test]
fn every_kind_of_grpc_call_reaches_a_tls_upstream_by_alpn() {
    let scratch = gateway_pki_dir("grpc-client");
    let dir = scratch.path();
    let upstream = tls_upstream(dir);
    // The upstream offers only h2 by ALPN: http2 forces it, auto finds it.
    for protocol in ["http2", "auto"] {
        let moat = Moat::serve_mtls(
            dir,
            "http",
            &format!("https://localhost:{}", upstream.port()),
            &[
                "--upstream-ca",
                "upstream-ca.crt",
                "--upstream-protocol",
                protocol,
            ],
        );
        runtime().block_on(async {
            let channel = connect(dir, moat.port(), "localhost", Some("client")).await;
            assert_calls_of_every_kind(&channel).await;
        });
    }
}

#[test]
fn grpc_services_see_the_verified_identity_as_metadata_and_never_a_forged_one() {
    let (scratch, moat) = moat_in_front_of_h2c(|_| {}, &["--upstream-protocol", "http2"]);
    let dir = scratch.path();
    let port = moat.port();
    runtime().block_on(async {
        let channel = connect(dir, port, "localhost", Some("client")).await;
        let forged = [
            ("moat-client-subject", "CN=forged"),
            ("moat_client_subject", "CN=forged"),
            ("moat-client-serial", "0bad"),
            ("client-cert", ":Zm9yZ2Vk:"),
            ("client_cert", ":Zm9yZ2Vk:"),
            ("x-forwarded-for", "203.0.113.9"),
        ];
        let seen = text(
            unary(&channel, "/moat.test.Echo/Whoami", b"", &forged)
                .await
                .expect("whoami"),
        );
        assert!(
            seen.contains("moat-client-subject: CN=grpc-client\n"),
            "{seen}"
        );
        assert!(seen.contains("client-cert: :"), "{seen}");
        assert!(seen.contains("x-forwarded-for: 127.0.0.1\n"), "{seen}");
        for (name, value) in forged {
            assert!(
                !seen.contains(value),
                "the client's {name} reached the service:\n{seen}"
            );
        }
        // The service learns the host the client addressed.
        let host = format!("x-forwarded-host: localhost:{port}\n");
        assert!(seen.contains(&host), "{seen}");
    });
}

/// Path rules over gRPC methods: one service for some clients only, one method for nobody.
const GRPC_POLICY: &str = r#"
[[rules]]
name = "admin-service"
paths = ["/moat.test.Admin/*"]
action = "allow"
include = [{ common_name = "ops-*" }]

[[rules]]
name = "no-failing"
paths = ["/moat.test.Echo/Fail"]
action = "deny"

[[rules]]
name = "everyone"
action = "allow"
include = [{ valid_certificate = true }]
"#;

#[test]
fn a_refused_grpc_call_gets_permission_denied_naming_the_rule() {
    // Rules match gRPC services and methods by path: /package.Service/Method.
    let write_policy = |dir: &Path| {
        std::fs::write(dir.join("policy.toml"), GRPC_POLICY).unwrap();
    };
    let (scratch, moat) = moat_in_front_of_h2c(
        write_policy,
        &["--policy", "policy.toml", "--audit-log", "audit.jsonl"],
    );
    let dir = scratch.path();
    runtime().block_on(async {
        let channel = connect(dir, moat.port(), "localhost", Some("client")).await;
        for (path, rule) in [
            ("/moat.test.Admin/Reset", "admin-service"),
            ("/moat.test.Echo/Fail", "no-failing"),
        ] {
            let refused = unary(&channel, path, b"", &[]).await.expect_err("refused");
            assert_eq!(
                refused.code(),
                Code::PermissionDenied,
                "{path}: {refused:?}"
            );
            assert!(
                refused.message().contains(rule),
                "{path}: the message names the rule: {refused:?}"
            );
        }
        // The rest of the service is allowed.
        let allowed = unary(&channel, "/moat.test.Echo/Unary", b"ok", &[]).await;
        assert_eq!(text(allowed.expect("allowed")), "ok");
    });
    // The audit keeps the HTTP status moat decided.
    let events: Vec<_> = crate::gateway_support::audit_events(&dir.join("audit.jsonl"), 4)
        .into_iter()
        .filter(|event| event["event"] == "http_request")
        .collect();
    let statuses: Vec<_> = events.iter().map(|event| event["status"].clone()).collect();
    assert_eq!(statuses, [403, 403, 200], "{events:?}");
    assert_eq!(events[0]["rule"], "admin-service");
}

#[test]
fn a_grpc_call_to_a_service_that_is_down_gets_unavailable() {
    let scratch = gateway_pki_dir("grpc-client");
    let dir = scratch.path();
    let (_held, closed) = closed_port();
    let moat = Moat::serve_mtls(
        dir,
        "http",
        &format!("http://{closed}"),
        &["--upstream-protocol", "http2"],
    );
    runtime().block_on(async {
        let channel = connect(dir, moat.port(), "localhost", Some("client")).await;
        let refused = unary(&channel, "/moat.test.Echo/Unary", b"", &[])
            .await
            .expect_err("UNAVAILABLE");
        assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    });
}

#[test]
fn a_long_bidirectional_stream_loses_nothing_and_moat_memory_stays_flat() {
    const MESSAGES: usize = 100_000;
    const WARM: usize = 10_000;
    // A client that pauses longer than the slow-body limit, once the service answers, is
    // having a conversation, not uploading slowly.
    let (scratch, moat) = moat_in_front_of_h2c(
        |_| {},
        &[
            "--request-body-timeout",
            "1s",
            "--request-body-min-rate",
            "0",
        ],
    );
    let dir = scratch.path();
    let pid = moat.pid();
    runtime().block_on(async move {
        let channel = connect(dir, moat.port(), "localhost", Some("client")).await;
        let (outgoing, mut replies) = chat(&channel, 64, b"first".to_vec()).await;
        let sender = tokio::spawn(async move {
            // 1.5 s of silence from the client, past the 1 s slow-body limit.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            for n in 1..MESSAGES {
                let mut message = format!("{n:08}").into_bytes();
                message.extend_from_slice(&payload(92));
                outgoing.send(message).await.unwrap();
            }
        });
        assert_eq!(replies.message().await.unwrap().unwrap(), b"first");
        let mut warm_rss = 0;
        let mut received = 1;
        while let Some(reply) = replies.message().await.expect("no error mid-stream") {
            assert_eq!(&reply[..8], format!("{received:08}").as_bytes(), "in order");
            assert_eq!(reply.len(), 100);
            received += 1;
            if received == WARM {
                warm_rss = rss_kib(pid);
            }
        }
        sender.await.unwrap();
        assert_eq!(received, MESSAGES, "every message answered once");
        let end_rss = rss_kib(pid);
        eprintln!(
            "moat RSS after {WARM} messages: {warm_rss} KiB; after {MESSAGES}: {end_rss} KiB"
        );
        // 90,000 more messages (9 MB each way): a leak of 50 bytes per message would show.
        assert!(
            end_rss < warm_rss + 4 * 1024,
            "moat grew from {warm_rss} KiB to {end_rss} KiB over {} messages",
            MESSAGES - WARM
        );
    });
}

/// The resident memory of process `pid`, KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn grpc_answers_arrive_for_a_client_without_certificate_as_unauthenticated() {
    let (scratch, moat) = moat_in_front_of_h2c(|_| {}, &["--client-auth", "request"]);
    let dir = scratch.path();
    runtime().block_on(async {
        let channel = connect(dir, moat.port(), "localhost", None).await;
        let refused = unary(&channel, "/moat.test.Echo/Unary", b"", &[])
            .await
            .expect_err("UNAUTHENTICATED");
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    });
}
