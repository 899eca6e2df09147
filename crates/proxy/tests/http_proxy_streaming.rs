//! Bodies stream through the proxy with backpressure: a peer that stops reading stops the sender
//! after a bounded amount, instead of the proxy buffering the whole body.

mod http_proxy_support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use http_proxy_support::*;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;

const TOTAL: u64 = 128 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;
/// Socket buffers on both hops and hyper's read buffers hold a few MiB; a proxy that buffered
/// bodies would let the whole 128 MiB through.
const BOUNDED: u64 = 32 * 1024 * 1024;
/// A byte count that has not moved for this long has hit backpressure: on loopback a flowing
/// stream moves megabytes in that time, even in a debug build on a busy machine.
const STILL: Duration = Duration::from_millis(500);

/// A body of `remaining` bytes made on demand, counting what was handed out.
struct CountingBody {
    remaining: u64,
    produced: Arc<AtomicU64>,
    chunk: Bytes,
}

impl CountingBody {
    fn new(total: u64, produced: Arc<AtomicU64>) -> Self {
        Self {
            remaining: total,
            produced,
            chunk: Bytes::from(vec![0x5a; CHUNK]),
        }
    }
}

impl Body for CountingBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let len = self.remaining.min(CHUNK as u64);
        self.remaining -= len;
        self.produced.fetch_add(len, Ordering::SeqCst);
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..len as usize)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Waits until `count` is above zero and has stopped moving for [`STILL`] (the sender is held
/// back, or has sent everything); returns it. Fails the test if it keeps moving for 15 s.
async fn settled(count: &AtomicU64) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut last = count.load(Ordering::SeqCst);
    let mut since = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = count.load(Ordering::SeqCst);
        if now != last || now == 0 {
            (last, since) = (now, tokio::time::Instant::now());
        } else if since.elapsed() >= STILL {
            return now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the byte count kept moving for 15 s: {now}"
        );
    }
}

/// An upstream whose `/sink` reads nothing of the request body until `release` is notified,
/// then answers with its length, and whose `/source` answers with a `TOTAL`-byte body, counting
/// the bytes handed to hyper.
async fn start_upstream(produced: Arc<AtomicU64>, release: Arc<Notify>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let produced = Arc::clone(&produced);
            let release = Arc::clone(&release);
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let produced = Arc::clone(&produced);
                    let release = Arc::clone(&release);
                    async move {
                        let body: BoxBody<Bytes, hyper::Error> = if request.uri().path() == "/sink"
                        {
                            release.notified().await;
                            let mut body = request.into_body();
                            let mut received = 0u64;
                            while let Some(frame) = body.frame().await {
                                if let Ok(data) = frame.unwrap().into_data() {
                                    received += data.len() as u64;
                                }
                            }
                            Full::new(Bytes::from(received.to_string()))
                                .map_err(|never| match never {})
                                .boxed()
                        } else {
                            CountingBody::new(TOTAL, produced)
                                .map_err(|never| match never {})
                                .boxed()
                        };
                        Ok::<_, Infallible>(Response::new(body))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn upload_is_held_back_until_the_upstream_reads(http2: bool) {
    let release = Arc::new(Notify::new());
    let upstream = start_upstream(Arc::new(AtomicU64::new(0)), Arc::clone(&release)).await;
    let gateway = Gateway::in_front_of(upstream, http2).await;
    let sent = Arc::new(AtomicU64::new(0));
    let body = CountingBody::new(TOTAL, Arc::clone(&sent));
    let (mut client, _) = Client::connect(gateway.addr, http2).await;
    let request = if http2 {
        Request::post("https://app.example.com/sink")
    } else {
        Request::post("/sink").header("host", "app.example.com")
    };
    let request = request.body(body).unwrap();
    let response = tokio::spawn(async move { client.send(request).await });

    // The upstream reads nothing until released: what the client could send by the time it
    // is held back is what the two hops buffer.
    let in_flight = settled(&sent).await;
    assert!(
        in_flight < BOUNDED,
        "client could send {in_flight} bytes while the upstream read nothing"
    );
    release.notify_one();

    let response = response.await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let received = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(std::str::from_utf8(&received).unwrap(), TOTAL.to_string());
}

async fn download_is_held_back_until_the_client_reads(http2: bool) {
    let produced = Arc::new(AtomicU64::new(0));
    let upstream = start_upstream(Arc::clone(&produced), Arc::new(Notify::new())).await;
    let gateway = Gateway::in_front_of(upstream, http2).await;
    let request = Request::get(if http2 {
        "https://app.example.com/source"
    } else {
        "/source"
    })
    .header("host", "app.example.com")
    .body(Full::new(Bytes::new()))
    .unwrap();
    let (mut client, _) = Client::connect(gateway.addr, http2).await;
    let response = client.send(request).await;
    assert_eq!(response.status(), StatusCode::OK);

    // The client reads nothing yet: what the upstream could hand over by the time it is held
    // back is what the two hops buffer.
    let in_flight = settled(&produced).await;
    assert!(
        in_flight < BOUNDED,
        "upstream could send {in_flight} bytes while the client read nothing"
    );

    let mut body = response.into_body();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            received += data.len() as u64;
        }
    }
    assert_eq!(received, TOTAL);
}

/// One test per scenario and protocol, each on its own two-thread runtime (the tests stay
/// apart, so they run in parallel and each fails under its own name).
macro_rules! backpressure_tests {
    ($($name:ident: $scenario:ident(http2: $http2:expr);)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            bounded($scenario($http2)).await;
        }
    )*};
}

backpressure_tests! {
    http1_upload_streams_with_backpressure: upload_is_held_back_until_the_upstream_reads(http2: false);
    http2_upload_streams_with_backpressure: upload_is_held_back_until_the_upstream_reads(http2: true);
    http1_download_streams_with_backpressure: download_is_held_back_until_the_client_reads(http2: false);
    http2_download_streams_with_backpressure: download_is_held_back_until_the_client_reads(http2: true);
}
