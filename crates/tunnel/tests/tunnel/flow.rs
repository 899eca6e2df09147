//! Flow control isolation: a stalled reader stalls only its own stream's writer.

use moat_tunnel::SessionSettings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{bounded, header, pattern, poll_write_once, session_pair};

const MIB: usize = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_blocks_its_stream_while_another_moves_8_mib() {
    bounded(async {
        let settings = SessionSettings::default();
        let window = settings.stream_window as usize;
        let (edge, mut agent) = session_pair(&settings).await;
        let mut a = edge
            .open_stream(&header("a.example.com", 1))
            .await
            .expect("open A");
        let (a_header, mut a_at_agent) = agent.accept().await.expect("A");
        assert_eq!(a_header.endpoint, "a.example.com");
        let b = edge
            .open_stream(&header("b.example.com", 2))
            .await
            .expect("open B");
        let (b_header, mut b_at_agent) = agent.accept().await.expect("B");
        assert_eq!(b_header.endpoint, "b.example.com");

        // The agent never reads A: the edge can write exactly one stream window into A, then
        // its write is pending.
        let chunk = pattern(16 * 1024, 4);
        let mut written_a = 0;
        while let std::task::Poll::Ready(result) = poll_write_once(&mut a, &chunk) {
            written_a += result.expect("write A");
        }
        assert_eq!(written_a, window, "A takes one stream window, then blocks");

        // Meanwhile B moves 8 MiB (32 windows, half the connection window).
        let b_data = pattern(8 * MIB, 5);
        let sent = b_data.clone();
        let (_b_reader, mut b_writer) = b.into_split();
        let started = std::time::Instant::now();
        let send_b = tokio::spawn(async move {
            b_writer.write_all(&sent).await.expect("write B");
            b_writer.shutdown().await.expect("shutdown B");
            b_writer
        });
        let mut b_received = Vec::new();
        b_at_agent
            .read_to_end(&mut b_received)
            .await
            .expect("read B");
        let _b_writer = send_b.await.expect("B sender");
        let took = started.elapsed();
        eprintln!("8 MiB on B past the stalled A in {} ms", took.as_millis());
        assert_eq!(b_received.len(), 8 * MIB);
        assert!(b_received == b_data, "B's bytes differ");

        // B is done; A's writer is still blocked, not by timing but by its window.
        assert!(
            poll_write_once(&mut a, &chunk).is_pending(),
            "A's writer must still be blocked"
        );

        // A was only stalled: once the agent reads, the rest of A goes through.
        let reader = tokio::spawn(async move {
            let mut received = Vec::new();
            a_at_agent.read_to_end(&mut received).await.expect("read A");
            received.len()
        });
        a.write_all(&pattern(MIB, 6))
            .await
            .expect("write more of A");
        a.shutdown().await.expect("shutdown A");
        assert_eq!(reader.await.expect("A reader"), window + MIB);
    })
    .await;
}
