//! A session's start and end: hello checks, handshake timeout, refused streams, GOAWAY; raw h2 peers break the rules.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use moat_tunnel::header::CLIENT_ADDR;
use moat_tunnel::{AgentSession, EdgeSession, HandshakeError, SessionSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::support::{bounded, header, session_pair, tcp_pair};

/// An agent's handshake over one end of a TCP pair, and a raw h2 client on the other.
async fn raw_edge(
    settings: &SessionSettings,
) -> (
    SendRequest<Bytes>,
    JoinHandle<Result<AgentSession, HandshakeError>>,
) {
    let (edge_io, agent_io): (TcpStream, TcpStream) = tcp_pair().await;
    let settings = settings.clone();
    let agent = tokio::spawn(async move { AgentSession::handshake(agent_io, &settings).await });
    let (send, connection) = h2::client::handshake(edge_io).await.expect("h2 client");
    tokio::spawn(connection);
    (send, agent)
}

fn post(uri: &'static str, headers: HeaderMap) -> Request<()> {
    let mut request = Request::new(());
    *request.method_mut() = Method::POST;
    *request.uri_mut() = http::Uri::from_static(uri);
    *request.headers_mut() = headers;
    request
}

/// One control message as the wire carries it: 4-byte big-endian length, then JSON.
fn frame(message: serde_json::Value) -> Bytes {
    let json = serde_json::to_vec(&message).expect("json");
    let mut framed = (json.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(&json);
    Bytes::from(framed)
}

/// Opens the control stream and sends `first` on it; the stream's handles come back so
/// that it stays open.
fn open_control(
    send: &mut SendRequest<Bytes>,
    first: serde_json::Value,
) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
    let (response, mut body) = send
        .send_request(post("https://moat-tunnel/control", HeaderMap::new()), false)
        .expect("control stream");
    body.send_data(frame(first), false).expect("first message");
    (response, body)
}

/// The agent's handshake error when the edge's first control message is `first`.
async fn agent_refuses_first_message(first: serde_json::Value) -> HandshakeError {
    let (mut send, agent) = raw_edge(&SessionSettings::default()).await;
    let _control = open_control(&mut send, first);
    agent
        .await
        .expect("agent task")
        .expect_err("the handshake must fail")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hello_of_another_version_fails_the_handshake() {
    bounded(async {
        let hello = serde_json::json!({ "type": "hello", "version": 2, "software": "moat 9" });
        match agent_refuses_first_message(hello).await {
            HandshakeError::Version { ours: 1, theirs: 2 } => {}
            other => panic!("expected Version {{ ours: 1, theirs: 2 }}, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_message_other_than_hello_fails_the_handshake() {
    bounded(async {
        let registered = serde_json::json!({ "type": "registered", "hostname": "a", "url": "b" });
        match agent_refuses_first_message(registered).await {
            HandshakeError::NotHello { got: "registered" } => {}
            other => panic!("expected NotHello, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_that_never_opens_the_control_stream_times_out() {
    bounded(async {
        let settings = SessionSettings {
            handshake_timeout: Duration::from_millis(300),
            ..SessionSettings::default()
        };
        let (_send, agent) = raw_edge(&settings).await;
        match agent.await.expect("agent task") {
            Err(HandshakeError::TimedOut { after }) => {
                assert_eq!(after, settings.handshake_timeout)
            }
            other => panic!("expected TimedOut, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_the_agent_cannot_take_are_refused_with_the_reason() {
    bounded(async {
        let (mut send, agent) = raw_edge(&SessionSettings::default()).await;
        let hello = serde_json::json!({ "type": "hello", "version": 1, "software": "raw" });
        let _control = open_control(&mut send, hello);
        let mut agent = agent.await.expect("agent task").expect("handshake");

        let mut no_client_addr = header("app.example.com", 1).to_headers().expect("encode");
        no_client_addr.remove(CLIENT_ADDR);
        let mut forged = header("app.example.com", 1).to_headers().expect("encode");
        forged.insert("moat-tunnel-admin", HeaderValue::from_static("yes"));
        let cases = [
            (
                "https://moat-tunnel/stream",
                no_client_addr,
                StatusCode::BAD_REQUEST,
                "stream header moat-tunnel-client-addr is missing",
            ),
            (
                "https://moat-tunnel/stream",
                forged,
                StatusCode::BAD_REQUEST,
                "stream header moat-tunnel-admin is not part of the protocol",
            ),
            (
                "https://moat-tunnel/control",
                HeaderMap::new(),
                StatusCode::CONFLICT,
                "the session already has a control stream",
            ),
            (
                "https://moat-tunnel/other",
                HeaderMap::new(),
                StatusCode::NOT_FOUND,
                "unknown tunnel stream kind",
            ),
        ];
        for (uri, headers, status, reason) in cases {
            let (response, _body) = send
                .send_request(post(uri, headers), false)
                .expect("request");
            let response = response.await.expect("a response");
            assert_eq!(response.status(), status, "{uri}");
            assert_eq!(response.headers()["moat-tunnel-refusal"], reason, "{uri}");
        }

        // None of them reached accept(): the next stream it gives is the good one.
        let good = header("app.example.com", 2);
        let (response, _body) = send
            .send_request(
                post(
                    "https://moat-tunnel/stream",
                    good.to_headers().expect("encode"),
                ),
                false,
            )
            .expect("request");
        assert_eq!(response.await.expect("a response").status(), StatusCode::OK);
        let (got, _stream) = agent.accept().await.expect("a stream");
        assert_eq!(got, good);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_open_streams_finish_then_closes_cleanly() {
    bounded(async {
        let (edge, mut agent) = session_pair(&SessionSettings::default()).await;
        let mut stream = edge
            .open_stream(&header("app.example.com", 1))
            .await
            .expect("open");
        let (_, mut accepted) = agent.accept().await.expect("a stream");

        agent.shutdown();
        // The open stream still works both ways after the GOAWAY.
        stream.write_all(b"after goaway").await.expect("edge write");
        stream.shutdown().await.expect("edge shutdown");
        let mut got = Vec::new();
        accepted.read_to_end(&mut got).await.expect("agent read");
        assert_eq!(got, b"after goaway");
        accepted.write_all(b"bye").await.expect("agent write");
        accepted.shutdown().await.expect("agent shutdown");
        got.clear();
        stream.read_to_end(&mut got).await.expect("edge read");
        assert_eq!(got, b"bye");

        // With the last streams gone the session ends cleanly on both sides.
        let (opener, edge_control) = edge.into_parts();
        let (incoming, agent_control) = agent.into_parts();
        drop((stream, accepted, edge_control, agent_control));
        assert_eq!(incoming.closed().await.map_err(|e| e.to_string()), Ok(()));
        assert_eq!(opener.closed().await.map_err(|e| e.to_string()), Ok(()));
    })
    .await;
}

/// A raw h2 agent: answers the control stream with its hello, then refuses every stream
/// with 503 and a reason, as an agent with no upstream for the endpoint might.
async fn refusing_agent(agent_io: TcpStream) {
    let mut connection = h2::server::handshake(agent_io).await.expect("h2 server");
    let (control_request, mut respond) = connection
        .accept()
        .await
        .expect("a control stream")
        .expect("no error");
    let mut control = respond
        .send_response(http::Response::new(()), false)
        .expect("control response");
    let hello = serde_json::json!({ "type": "hello", "version": 1, "software": "raw agent" });
    control.send_data(frame(hello), false).expect("hello");
    let _control = (control_request, control);
    while let Some(Ok((_request, mut respond))) = connection.accept().await {
        let mut refusal = http::Response::new(());
        *refusal.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        refusal.headers_mut().insert(
            "moat-tunnel-refusal",
            HeaderValue::from_static("no upstream for app.example.com"),
        );
        let _ = respond.send_response(refusal, true);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_stream_reads_as_connection_refused_with_the_reason() {
    bounded(async {
        let (edge_io, agent_io) = tcp_pair().await;
        tokio::spawn(refusing_agent(agent_io));
        let edge = EdgeSession::handshake(edge_io, &SessionSettings::default())
            .await
            .expect("edge handshake");
        let mut stream = edge
            .open_stream(&header("app.example.com", 1))
            .await
            .expect("open");
        let mut buffer = [0; 16];
        let error = stream.read(&mut buffer).await.expect_err("refused");
        assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused);
        assert_eq!(
            error.to_string(),
            "agent refused the stream (503 Service Unavailable): no upstream for app.example.com"
        );
    })
    .await;
}
