//! The stream cap: past `max_concurrent_streams`, opening waits until a stream ends.

use moat_tunnel::SessionSettings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{bounded, header, poll_once, session_pair};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fifth_stream_waits_until_one_of_four_ends() {
    bounded(async {
        let settings = SessionSettings {
            max_concurrent_streams: 4,
            ..SessionSettings::default()
        };
        let (edge, mut agent) = session_pair(&settings).await;
        let mut open = Vec::new();
        for n in 1..=4 {
            let stream = edge
                .open_stream(&header("app.example.com", n))
                .await
                .expect("open");
            let (_, accepted) = agent.accept().await.expect("a stream");
            open.push((stream, accepted));
        }

        let fifth_header = header("app.example.com", 5);
        let fifth = edge.open_stream(&fifth_header);
        tokio::pin!(fifth);
        assert!(
            poll_once(&mut fifth).is_pending(),
            "a fifth stream is over the cap"
        );

        // Half-closing is not ending: the first stream still counts.
        let (mut first, mut first_at_agent) = open.remove(0);
        first.shutdown().await.expect("edge shutdown");
        let mut rest = Vec::new();
        first_at_agent
            .read_to_end(&mut rest)
            .await
            .expect("agent reads EOF");
        assert!(
            poll_once(&mut fifth).is_pending(),
            "a half-closed stream still counts"
        );

        // The agent ends its side too: the stream is over and the fifth opens.
        first_at_agent.shutdown().await.expect("agent shutdown");
        first.read_to_end(&mut rest).await.expect("edge reads EOF");
        assert!(rest.is_empty());
        let mut fifth = fifth.await.expect("the fifth stream opens");
        let (got, mut fifth_at_agent) = agent.accept().await.expect("the fifth stream");
        assert_eq!(got, fifth_header);
        fifth.write_all(b"through").await.expect("write");
        let mut word = [0; 7];
        fifth_at_agent.read_exact(&mut word).await.expect("read");
        assert_eq!(&word, b"through");

        // And the cap holds again: four open, a sixth waits.
        let sixth_header = header("app.example.com", 6);
        let mut sixth = Box::pin(edge.open_stream(&sixth_header));
        assert!(
            poll_once(&mut sixth).is_pending(),
            "a sixth stream is over the cap"
        );

        // Giving up on the sixth withdraws it: when a slot frees, the seventh gets it and
        // the agent never sees the sixth.
        drop(sixth);
        let (second, second_at_agent) = open.remove(0);
        drop((second, second_at_agent));
        let seventh_header = header("app.example.com", 7);
        let _seventh = edge
            .open_stream(&seventh_header)
            .await
            .expect("the seventh opens");
        let (got, _) = agent.accept().await.expect("the seventh stream");
        assert_eq!(got, seventh_header);
    })
    .await;
}
