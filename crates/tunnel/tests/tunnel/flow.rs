//! Flow control isolation: a stalled reader stalls only its own stream's writer.

use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use moat_tunnel::{AgentSession, EdgeSession, SessionSettings, TunnelStream};
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
        while let Poll::Ready(result) = poll_write_once(&mut a, &chunk) {
            written_a += result.expect("write A");
        }
        assert_eq!(written_a, window, "A takes one stream window, then blocks");

        // Meanwhile B moves 8 MiB (32 stream windows).
        let b_data = pattern(8 * MIB, 5);
        let sent = b_data.clone();
        let (_b_reader, mut b_writer) = b.into_split();
        let started = Instant::now();
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

/// Streams whose readers never read, each full in both directions.
const STALLED: u16 = 100;
/// What the live stream carries each way: twice the 16 MiB connection window the session
/// once had, and over 170 stream windows of 192 KiB.
const LIVE: usize = 32 * MIB;
/// How much slower the live stream may be past the stalled streams than on a session of
/// its own. The two run at the same time on the same machine, so load from elsewhere slows
/// both; even if one took all the CPU first, the other would take twice as long. A session
/// whose connection window the stalled streams fill moves the live stream by a trickle or
/// not at all.
const MAX_SLOWDOWN: u32 = 3;
/// How long the live transfers may take before the test calls them stopped.
const LIVE_LIMIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_streams_do_not_slow_a_live_stream() {
    bounded(async {
        let settings = SessionSettings::default();
        let window = settings.stream_window as usize;
        let (crowded_edge, mut crowded_agent) = session_pair(&settings).await;
        let (quiet_edge, mut quiet_agent) = session_pair(&settings).await;
        let data = Arc::new(pattern(LIVE, 7));

        // 100 streams that nobody reads, at the agent or at the edge: each side writes into
        // each stream until its write is pending, holding all it could on both sides.
        let chunk = pattern(16 * 1024, 8);
        let mut stalled = Vec::new();
        let mut held = Vec::new();
        for n in 0..STALLED {
            let mut at_edge = crowded_edge
                .open_stream(&header("stalled.example.com", 100 + n))
                .await
                .expect("open a stalled stream");
            let (_, mut at_agent) = crowded_agent.accept().await.expect("a stalled stream");
            held.push((fill(&mut at_edge, &chunk), fill(&mut at_agent, &chunk)));
            stalled.push((at_edge, at_agent));
        }
        let held_bytes: usize = held.iter().map(|(up, down)| up + down).sum();

        // The same transfer past the stalled streams and on a session of its own, at once.
        let (crowded, quiet) = tokio::time::timeout(LIVE_LIMIT, async {
            tokio::join!(
                live_echo(&crowded_edge, &mut crowded_agent, &data, 1),
                live_echo(&quiet_edge, &mut quiet_agent, &data, 2),
            )
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the live streams did not finish within {} s ({STALLED} stalled streams \
                 holding {held_bytes} bytes on one of the sessions)",
                LIVE_LIMIT.as_secs()
            )
        });
        eprintln!(
            "32 MiB each way on a live stream: {} ms past {STALLED} stalled streams holding \
             {} KiB, {} ms on a session of its own at the same time",
            crowded.as_millis(),
            held_bytes / 1024,
            quiet.as_millis(),
        );

        // Each stalled stream holds exactly one stream window each way: its own window
        // stopped it, not the session's.
        for (n, &(to_agent, to_edge)) in held.iter().enumerate() {
            assert_eq!(to_agent, window, "stalled stream {n}, edge → agent");
            assert_eq!(to_edge, window, "stalled stream {n}, agent → edge");
        }
        assert!(
            crowded <= quiet * MAX_SLOWDOWN,
            "the live stream took {} ms past the stalled streams, {} ms on its own session",
            crowded.as_millis(),
            quiet.as_millis()
        );
        // And they are still stalled: nothing the live stream did opened their windows.
        for (at_edge, at_agent) in &mut stalled {
            assert!(poll_write_once(at_edge, &chunk).is_pending());
            assert!(poll_write_once(at_agent, &chunk).is_pending());
        }
    })
    .await;
}

/// Writes `chunk` into `stream` until the write is pending; returns the bytes written.
/// A write is pending exactly when there is no send window left, so no timing is involved.
fn fill(stream: &mut TunnelStream, chunk: &[u8]) -> usize {
    let mut written = 0;
    while let Poll::Ready(result) = poll_write_once(stream, chunk) {
        written += result.expect("write into a stalled stream");
    }
    written
}

/// Opens a stream the agent echoes, sends `data` through it and reads it back; returns the
/// time from opening to the last byte of the echo.
async fn live_echo(
    edge: &EdgeSession,
    agent: &mut AgentSession,
    data: &Arc<Vec<u8>>,
    n: u16,
) -> Duration {
    let started = Instant::now();
    let stream = edge
        .open_stream(&header("live.example.com", n))
        .await
        .expect("open the live stream");
    let (_, at_agent) = agent.accept().await.expect("the live stream");
    let echo = tokio::spawn(async move {
        let (mut reader, mut writer) = at_agent.into_split();
        let echoed = tokio::io::copy(&mut reader, &mut writer)
            .await
            .expect("echo");
        writer.shutdown().await.expect("agent shutdown");
        echoed
    });
    let (mut reader, mut writer) = stream.into_split();
    let sent = Arc::clone(data);
    let send = tokio::spawn(async move {
        writer
            .write_all(&sent)
            .await
            .expect("write the live stream");
        writer.shutdown().await.expect("edge shutdown");
        writer
    });
    let mut received = Vec::with_capacity(data.len());
    reader
        .read_to_end(&mut received)
        .await
        .expect("read the echo");
    let took = started.elapsed();
    let _writer = send.await.expect("sender");
    assert_eq!(echo.await.expect("echo task"), data.len() as u64);
    assert_eq!(received.len(), data.len());
    assert!(received == **data, "the echo differs from what was sent");
    took
}
