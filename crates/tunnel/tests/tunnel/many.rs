//! Thousands of concurrent streams on one session.

use std::sync::Arc;
use std::time::Instant;

use moat_tunnel::SessionSettings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use crate::support::{bounded, header, pattern, session_pair};

const STREAMS: u16 = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_concurrent_streams_are_all_answered() {
    bounded(async {
        let (edge, mut agent) = session_pair(&SessionSettings::default()).await;
        let started = Instant::now();

        // The agent answers each stream "pong <n>" to "ping <n>", where n is the client's port.
        let answering = tokio::spawn(async move {
            let mut handlers = JoinSet::new();
            for _ in 0..STREAMS {
                let (header, mut stream) = agent.accept().await.expect("a stream");
                handlers.spawn(async move {
                    let mut request = String::new();
                    stream
                        .read_to_string(&mut request)
                        .await
                        .expect("agent read");
                    assert_eq!(request, format!("ping {}", header.client_addr.port()));
                    let answer = format!("pong {}", header.client_addr.port());
                    stream
                        .write_all(answer.as_bytes())
                        .await
                        .expect("agent write");
                    stream.shutdown().await.expect("agent shutdown");
                });
            }
            let answered = handlers.join_all().await.len();
            (answered, agent)
        });

        let mut clients = JoinSet::new();
        for n in 0..STREAMS {
            let opener = edge.opener();
            clients.spawn(async move {
                let header = header("app.example.com", n);
                let port = header.client_addr.port();
                let mut stream = opener.open_stream(&header).await.expect("open");
                stream
                    .write_all(format!("ping {port}").as_bytes())
                    .await
                    .expect("write");
                stream.shutdown().await.expect("shutdown");
                let mut answer = String::new();
                stream.read_to_string(&mut answer).await.expect("read");
                assert_eq!(answer, format!("pong {port}"));
            });
        }
        let asked = clients.join_all().await.len();
        let (answered, _agent) = answering.await.expect("agent task");
        assert_eq!(asked, usize::from(STREAMS));
        assert_eq!(answered, usize::from(STREAMS));
        eprintln!(
            "{STREAMS} concurrent streams opened, answered and closed in {} ms",
            started.elapsed().as_millis()
        );
    })
    .await;
}

/// Each stream's message, either way: 2,000 of them (31 MiB) are nearly twice what a 16 MiB
/// connection window would let the streams hold unread.
const MESSAGE: usize = 16 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_streams_over_one_session() {
    bounded(async {
        let (edge, mut agent) = session_pair(&SessionSettings::default()).await;
        let started = Instant::now();
        let streams = usize::from(STREAMS);
        // All 2,000 requests are written before the agent reads any, and all 2,000 echoes
        // before the edge reads any: every stream is open at once, its message unread on
        // the far side.
        let asked = Arc::new(Barrier::new(streams + 1));
        let answered = Arc::new(Barrier::new(2 * streams));

        let agent_asked = Arc::clone(&asked);
        let agent_answered = Arc::clone(&answered);
        let answering = tokio::spawn(async move {
            let mut accepted = Vec::with_capacity(streams);
            for _ in 0..STREAMS {
                accepted.push(agent.accept().await.expect("a stream"));
            }
            agent_asked.wait().await;
            let mut handlers = JoinSet::new();
            for (header, mut stream) in accepted {
                let answered = Arc::clone(&agent_answered);
                handlers.spawn(async move {
                    let mut request = Vec::new();
                    stream.read_to_end(&mut request).await.expect("agent read");
                    assert!(
                        request == pattern(MESSAGE, u32::from(header.client_addr.port())),
                        "a request differs from what its client sent"
                    );
                    stream.write_all(&request).await.expect("agent write");
                    stream.shutdown().await.expect("agent shutdown");
                    answered.wait().await;
                });
            }
            let answered = handlers.join_all().await.len();
            (answered, agent)
        });

        let mut clients = JoinSet::new();
        for n in 0..STREAMS {
            let opener = edge.opener();
            let asked = Arc::clone(&asked);
            let answered = Arc::clone(&answered);
            clients.spawn(async move {
                let header = header("app.example.com", n);
                let message = pattern(MESSAGE, u32::from(header.client_addr.port()));
                let mut stream = opener.open_stream(&header).await.expect("open");
                stream.write_all(&message).await.expect("write");
                stream.shutdown().await.expect("shutdown");
                asked.wait().await;
                answered.wait().await;
                let mut echo = Vec::new();
                stream.read_to_end(&mut echo).await.expect("read");
                assert!(echo == message, "an echo differs from its request");
            });
        }
        let asked = clients.join_all().await.len();
        let (answered, _agent) = answering.await.expect("agent task");
        assert_eq!(asked, streams);
        assert_eq!(answered, streams);
        eprintln!(
            "{STREAMS} streams open at once, 16 KiB echoed on each, in {} ms",
            started.elapsed().as_millis()
        );
    })
    .await;
}
