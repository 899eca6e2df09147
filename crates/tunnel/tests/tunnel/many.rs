//! Thousands of concurrent streams on one session.

use std::time::Instant;

use moat_tunnel::SessionSettings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

use crate::support::{bounded, header, session_pair};

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
