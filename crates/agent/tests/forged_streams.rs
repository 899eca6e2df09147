//! The agent serves streams only as it registered them: a stream whose header contradicts the
//! registration (TLS claimed ended at the edge for an endpoint the agent terminates, or the
//! reverse, or an endpoint it does not publish) never reaches an upstream. A real edge side
//! (agent listener TLS, join, tunnel session) opens the streams.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use moat_agent::{Agent, AgentEvent};
use moat_config::{Config, EndpointSpec, FieldStyle};
use moat_edge::{AgentListenerTls, Arrival, EdgeState, HostnameGlob};
use moat_tunnel::{AgentMessage, EdgeMessage, EdgeSession, SessionSettings, StreamHeader};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// An upstream that counts the connections it accepts.
async fn counting_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&count);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buffer = [0u8; 1024];
                while let Ok(read) = stream.read(&mut buffer).await {
                    if read == 0 || stream.write_all(&buffer[..read]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (address, count)
}

fn endpoint(name: &str, domain: &str, upstream: SocketAddr, terminate_at: &str) -> EndpointSpec {
    EndpointSpec {
        name: Some(name.to_owned()),
        kind: Some("tls".to_owned()),
        listen: Some("127.0.0.1:0".to_owned()),
        domain: Some(domain.to_owned()),
        upstream: Some(upstream.to_string()),
        terminate_at: Some(terminate_at.to_owned()),
        ..EndpointSpec::default()
    }
}

fn header(endpoint: &str, terminated_at_edge: bool) -> StreamHeader {
    StreamHeader {
        endpoint: endpoint.to_owned(),
        client_addr: "203.0.113.7:40000".parse().unwrap(),
        server_addr: "127.0.0.1:443".parse().unwrap(),
        sni: Some(endpoint.to_owned()),
        terminated_at_edge,
        client_identity: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_that_contradict_the_registration_never_reach_an_upstream() {
    let scratch = tempfile::tempdir().unwrap();
    let edge_dir = scratch.path().join("edge");
    std::fs::create_dir_all(&edge_dir).unwrap();
    let store = moat_store::Store::open(&edge_dir.join("store.db").display().to_string())
        .await
        .unwrap();
    let state = Arc::new(EdgeState::open(&edge_dir, None, store).await.unwrap());
    let listener_tls = AgentListenerTls::open(&state, &[]).unwrap();
    let agent_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let edge_address = agent_listener.local_addr().unwrap().to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = state
        .new_token(
            &edge_address,
            vec![HostnameGlob::parse("*.tunnel.test").unwrap()],
            Duration::from_secs(600),
            now,
        )
        .await
        .unwrap()
        .0;

    // The edge's side: one join, then one session whose registrations are all accepted.
    let acceptor = listener_tls.acceptor();
    let edge_state = Arc::clone(&state);
    let edge = tokio::spawn(async move {
        let (tcp, _) = agent_listener.accept().await.unwrap();
        let Arrival::Join(stream) = moat_edge::accept(&acceptor, tcp, Duration::from_secs(10))
            .await
            .unwrap()
        else {
            panic!("expected a join");
        };
        moat_edge::serve_join(stream, edge_state).await.unwrap();
        let (tcp, _) = agent_listener.accept().await.unwrap();
        let Arrival::Tunnel { stream, .. } =
            moat_edge::accept(&acceptor, tcp, Duration::from_secs(10))
                .await
                .unwrap()
        else {
            panic!("expected a tunnel");
        };
        let mut session = EdgeSession::handshake(stream, &SessionSettings::default())
            .await
            .unwrap();
        let Some(AgentMessage::Register { endpoints }) = session.control().recv().await.unwrap()
        else {
            panic!("expected a registration");
        };
        for spec in endpoints {
            let answer = EdgeMessage::Registered {
                url: format!("tls://{}", spec.hostname),
                hostname: spec.hostname,
            };
            session.control().send(&answer).await.unwrap();
        }
        session
    });

    let credentials = scratch.path().join("agent");
    moat_edge::join(&token.to_text(), &credentials, Some("agent-1"))
        .await
        .unwrap();
    let (at_edge_upstream, at_edge_count) = counting_upstream().await;
    let (at_agent_upstream, at_agent_count) = counting_upstream().await;
    let mut config = Config::from_specs(
        vec![
            endpoint("plain", "plain.tunnel.test", at_edge_upstream, "edge"),
            endpoint("guarded", "guarded.tunnel.test", at_agent_upstream, "agent"),
        ],
        None,
        "test",
        FieldStyle::Flags,
    )
    .unwrap();
    for endpoint in &mut config.endpoints {
        endpoint.publish = true;
    }
    let agent = Agent::new(
        vec![edge_address],
        credentials,
        &config,
        scratch.path().join("agent-home"),
        moat_telemetry::Telemetry::default(),
        None,
    )
    .await
    .unwrap();
    let (events, mut reports) = tokio::sync::mpsc::unbounded_channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(agent.run(
        async {
            let _ = stopped.await;
        },
        events,
    ));
    let mut published = 0;
    while published < 2 {
        if let Some(AgentEvent::Published { .. }) = reports.recv().await {
            published += 1;
        }
    }
    let session = edge.await.unwrap();

    // Forged: plaintext for the endpoint the agent terminates (it would skip the agent's own
    // client verification), TLS bytes for one the edge terminates, and an unknown endpoint.
    for (forged, terminated_at_edge) in [
        ("guarded.tunnel.test", true),
        ("plain.tunnel.test", false),
        ("elsewhere.tunnel.test", true),
    ] {
        let mut stream = session
            .open_stream(&header(forged, terminated_at_edge))
            .await
            .unwrap();
        let _ = stream.write_all(b"GET /secret HTTP/1.1\r\n\r\n").await;
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
            .await
            .expect("the agent ends a forged stream");
        assert!(
            read.is_err() || answer.is_empty(),
            "{forged}: the forged stream got {:?}",
            String::from_utf8_lossy(&answer)
        );
    }
    assert_eq!(
        at_agent_count.load(Ordering::SeqCst),
        0,
        "the guarded upstream was reached"
    );
    assert_eq!(
        at_edge_count.load(Ordering::SeqCst),
        0,
        "the plain upstream was reached"
    );

    // The registered form does reach the upstream: the checks above could have failed.
    let mut stream = session
        .open_stream(&header("plain.tunnel.test", true))
        .await
        .unwrap();
    stream.write_all(b"ping").await.unwrap();
    let mut echoed = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echoed, b"ping");
    assert_eq!(at_edge_count.load(Ordering::SeqCst), 1);

    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), running).await;
}
