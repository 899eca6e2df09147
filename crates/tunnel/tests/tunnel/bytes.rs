//! Bytes both ways over one stream, half-close in either order, and a reset as an io error.

use std::io;

use moat_tunnel::SessionSettings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{bounded, header, pattern, session_pair};

const MIB: usize = 1024 * 1024;

/// What the agent writes after the edge's end of stream: the agent → edge direction
/// still works once edge → agent is closed.
const AFTER_EOF: &[u8] = b"written after your EOF";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoes_a_mebibyte_each_way_and_the_edge_half_closes_first() {
    bounded(async {
        let (edge, mut agent) = session_pair(&SessionSettings::default()).await;
        let sent_header = header("app.example.com", 1);
        let stream = edge.open_stream(&sent_header).await.expect("open");
        let (got_header, accepted) = agent.accept().await.expect("a stream");
        assert_eq!(got_header, sent_header);

        // The agent echoes until the edge's EOF, then writes once more and ends.
        let echo = tokio::spawn(async move {
            let (mut reader, mut writer) = accepted.into_split();
            let echoed = tokio::io::copy(&mut reader, &mut writer)
                .await
                .expect("echo");
            writer.write_all(AFTER_EOF).await.expect("write after EOF");
            writer.shutdown().await.expect("shutdown");
            echoed
        });

        let data = pattern(MIB, 1);
        let (mut reader, mut writer) = stream.into_split();
        let sent = data.clone();
        let send = tokio::spawn(async move {
            writer.write_all(&sent).await.expect("write");
            writer.shutdown().await.expect("shutdown");
            writer
        });
        let mut received = Vec::new();
        reader.read_to_end(&mut received).await.expect("read");
        let _writer = send.await.expect("sender");

        assert_eq!(echo.await.expect("echo task"), MIB as u64);
        assert_eq!(received.len(), MIB + AFTER_EOF.len());
        assert!(
            received[..MIB] == data[..],
            "the echo differs from what was sent"
        );
        assert_eq!(&received[MIB..], AFTER_EOF);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_half_closes_first_and_the_edge_still_sends() {
    bounded(async {
        let (edge, mut agent) = session_pair(&SessionSettings::default()).await;
        let mut stream = edge
            .open_stream(&header("app.example.com", 2))
            .await
            .expect("open");
        let (_, mut accepted) = agent.accept().await.expect("a stream");

        let to_edge = pattern(MIB, 2);
        let to_agent = pattern(MIB, 3);
        let expected = to_agent.clone();
        let agent_side = tokio::spawn(async move {
            accepted.write_all(&to_edge).await.expect("agent write");
            accepted.shutdown().await.expect("agent shutdown");
            let mut received = Vec::new();
            accepted
                .read_to_end(&mut received)
                .await
                .expect("agent read");
            received
        });

        let mut received = Vec::new();
        stream.read_to_end(&mut received).await.expect("edge read");
        assert_eq!(
            received.len(),
            MIB,
            "the edge reads the agent's MiB, then EOF"
        );
        assert!(received == pattern(MIB, 2));
        // The agent's EOF closed only its direction: the edge's MiB still arrives whole.
        stream
            .write_all(&to_agent)
            .await
            .expect("edge write after the agent's EOF");
        stream.shutdown().await.expect("edge shutdown");
        let at_agent = agent_side.await.expect("agent task");
        assert_eq!(at_agent.len(), MIB);
        assert!(at_agent == expected);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_dropped_by_the_agent_reads_as_a_reset_at_the_edge() {
    bounded(async {
        let (edge, mut agent) = session_pair(&SessionSettings::default()).await;
        let mut stream = edge
            .open_stream(&header("app.example.com", 3))
            .await
            .expect("open");
        stream.write_all(b"hello").await.expect("write");
        let (_, accepted) = agent.accept().await.expect("a stream");
        drop(accepted);

        let mut buffer = [0; 16];
        let error = stream
            .read(&mut buffer)
            .await
            .expect_err("a reset, not data or EOF");
        assert_eq!(error.kind(), io::ErrorKind::ConnectionReset, "{error}");
        let error = stream
            .write_all(&[0; 1024])
            .await
            .expect_err("writing to a reset stream");
        assert_eq!(error.kind(), io::ErrorKind::ConnectionReset, "{error}");
        let error = stream.shutdown().await.expect_err("ending a reset stream");
        assert_eq!(error.kind(), io::ErrorKind::ConnectionReset, "{error}");
        // The session outlives the stream.
        let _next = edge
            .open_stream(&header("app.example.com", 4))
            .await
            .expect("open");
        assert!(agent.accept().await.is_some());
    })
    .await;
}
