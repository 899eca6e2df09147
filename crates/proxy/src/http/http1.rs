//! An HTTP/1 client connection that holds hyper's state only while a request is under way.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::HttpService;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite};

use super::ServerConnection;
use super::activity::ObservedIo;
use super::forward::ConnectionContext;
use super::prefixed::Prefixed;

type Hyper<IO, S> = http1::Connection<TokioIo<ObservedIo<Prefixed<IO>>>, S>;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// hyper keeps about 24 KiB for each HTTP/1 connection as long as it lives: an 8 KiB read buffer
/// (reserved again before every read), an 8 KiB write buffer and its dispatcher. A keep-alive
/// client leaves its connection idle most of the time, and nginx frees its buffers between
/// requests; so does this. When the watchdog has found the connection quiet (no request in
/// flight, nothing of a next one, the last response flushed) for 250 ms, the connection ends
/// hyper's state, keeps the bytes hyper had read ahead, and builds hyper again when the client
/// sends more. hyper is asked to stop only when it looks idle, and its state is dropped only if
/// it then stopped without touching the connection (which it does only when idle); otherwise it
/// finishes its exchange and closes, so no byte of a request body is ever read as the start of
/// a request.
pub(super) struct Http1Connection<IO, S: HttpService<Incoming>> {
    stage: Stage<IO, S>,
    context: Arc<ConnectionContext>,
    /// Asked to close (idle timeout, shutdown): hyper is not built again.
    closing: bool,
}

enum Stage<IO, S: HttpService<Incoming>> {
    /// Between requests: only the connection and the service are kept.
    Waiting {
        io: Prefixed<IO>,
        service: S,
    },
    /// hyper serves requests.
    Serving {
        hyper: Box<Hyper<IO, S>>,
        release: Release,
    },
    /// Closing a connection whose hyper ended without closing it (TLS close_notify, then FIN).
    ShuttingDown(Prefixed<IO>),
    Done,
}

/// Whether hyper has been asked to give its state back.
#[derive(Clone, Copy)]
enum Release {
    /// No: hyper runs as usual and shuts the connection down when it ends.
    No,
    /// hyper looked idle and was asked to stop; `io_calls` is the connection's count of reads
    /// and writes at that moment.
    Asked { io_calls: u64 },
    /// hyper was not idle after all: it finishes its exchange and shuts the connection down.
    Refused,
}

impl<IO, S: HttpService<Incoming>> Http1Connection<IO, S> {
    /// Serves `io`, whose client has started sending, with `service`.
    pub(super) fn new(io: IO, service: S, context: Arc<ConnectionContext>) -> Self {
        Self {
            stage: Stage::Waiting {
                io: Prefixed::new(io),
                service,
            },
            context,
            closing: false,
        }
    }

    fn serve(&self, io: Prefixed<IO>, service: S) -> Stage<IO, S>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
        S::ResBody: 'static,
        <S::ResBody as Body>::Error: Into<BoxError>,
    {
        self.context.activity.hyper_built();
        let io = TokioIo::new(ObservedIo::new(io, Arc::clone(&self.context.activity)));
        Stage::Serving {
            hyper: Box::new(http1::Builder::new().serve_connection(io, service)),
            release: Release::No,
        }
    }

    /// Whether hyper's state is held now (a test's view of what an idle connection keeps).
    #[cfg(test)]
    fn holds_hyper(&self) -> bool {
        matches!(self.stage, Stage::Serving { .. })
    }
}

impl<IO, S> Future for Http1Connection<IO, S>
where
    IO: AsyncBufRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<Incoming> + Unpin,
    S::Future: Unpin,
    S::ResBody: 'static,
    <S::ResBody as Body>::Error: Into<BoxError>,
    S::Error: Into<BoxError>,
{
    type Output = hyper::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            match std::mem::replace(&mut this.stage, Stage::Done) {
                Stage::Waiting { mut io, service } => {
                    if this.closing {
                        this.stage = Stage::ShuttingDown(io);
                        continue;
                    }
                    let sent_more = match Pin::new(&mut io).poll_fill_buf(cx) {
                        Poll::Pending => {
                            this.stage = Stage::Waiting { io, service };
                            return Poll::Pending;
                        }
                        Poll::Ready(filled) => filled.is_ok_and(|data| !data.is_empty()),
                    };
                    if !sent_more {
                        // The client closed, or the connection failed.
                        return Poll::Ready(Ok(()));
                    }
                    this.stage = this.serve(io, service);
                }
                Stage::Serving { mut hyper, release } => {
                    let polled = match release {
                        Release::Asked { .. } => hyper.poll_without_shutdown(cx),
                        Release::No | Release::Refused => Pin::new(&mut *hyper).poll(cx),
                    };
                    match polled {
                        Poll::Pending => {
                            let release = match release {
                                // An idle hyper ends at once when asked.
                                Release::Asked { .. } => Release::Refused,
                                other => other,
                            };
                            this.stage = Stage::Serving { hyper, release };
                            return Poll::Pending;
                        }
                        Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                        Poll::Ready(Ok(())) => {
                            let idle_when_asked = matches!(release, Release::Asked { io_calls }
                                if io_calls == this.context.activity.io_calls());
                            let parts = hyper.into_parts();
                            let mut io = parts.io.into_inner().into_inner();
                            io.put_back(parts.read_buf);
                            if let Some(waiting) = this.context.upgrade.take_waiting() {
                                // The `101` is sent: the request's tunnel takes the connection.
                                let _ = waiting.send(Box::new(io));
                                return Poll::Ready(Ok(()));
                            }
                            if idle_when_asked && !this.closing {
                                this.context.forget_identity_headers();
                                this.stage = Stage::Waiting {
                                    io,
                                    service: parts.service,
                                };
                            } else if matches!(release, Release::Asked { .. }) {
                                // Ended without its shutdown: close the connection here.
                                this.stage = Stage::ShuttingDown(io);
                            } else {
                                return Poll::Ready(Ok(()));
                            }
                        }
                    }
                }
                Stage::ShuttingDown(mut io) => {
                    if Pin::new(&mut io).poll_shutdown(cx).is_pending() {
                        this.stage = Stage::ShuttingDown(io);
                        return Poll::Pending;
                    }
                    return Poll::Ready(Ok(()));
                }
                Stage::Done => return Poll::Ready(Ok(())),
            }
        }
    }
}

impl<IO, S> ServerConnection for Http1Connection<IO, S>
where
    IO: AsyncBufRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<Incoming> + Unpin + Send,
    S::Future: Unpin,
    S::ResBody: 'static,
    <S::ResBody as Body>::Error: Into<BoxError>,
    S::Error: Into<BoxError>,
    Self: Send,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        let this = self.get_mut();
        this.closing = true;
        if let Stage::Serving { hyper, .. } = &mut this.stage {
            Pin::new(&mut **hyper).graceful_shutdown();
        }
    }

    /// Asks hyper to stop when the connection looks idle; the next poll sees whether it did
    /// so at once, without touching the connection, as only an idle hyper does.
    fn release_if_idle(self: Pin<&mut Self>) {
        let this = self.get_mut();
        let Stage::Serving { hyper, release } = &mut this.stage else {
            return;
        };
        if this.closing || !matches!(release, Release::No) {
            return;
        }
        let activity = &this.context.activity;
        if !activity.looks_idle() {
            activity.release_later(tokio::time::Instant::now());
            return;
        }
        Pin::new(&mut **hyper).graceful_shutdown();
        *release = Release::Asked {
            io_calls: activity.io_calls(),
        };
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Mutex;
    use std::time::Duration;

    use bytes::Bytes;
    use http::{Request, Response};
    use http_body_util::{BodyExt as _, Full};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, BufReader, DuplexStream};
    use tokio::sync::watch;

    use super::*;
    use crate::http::activity::{Activity, ClientLimits};
    use crate::http::headers::ClientAddress;
    use moat_telemetry::ConnectionInfo;

    const LIMITS: ClientLimits = ClientLimits {
        request_header: Duration::from_secs(10),
        idle: Duration::from_secs(60),
    };

    fn context() -> Arc<ConnectionContext> {
        let peer = "127.0.0.1:40000".parse().unwrap();
        let (_, shutdown) = watch::channel(false);
        Arc::new(ConnectionContext {
            info: Arc::new(ConnectionInfo {
                endpoint: "test".into(),
                peer_addr: peer,
                local_addr: "127.0.0.1:8443".parse().unwrap(),
                sni: None,
                sni_routed: false,
                tls_version: "TLSv1.3",
                cipher_suite: None,
                http2: false,
                client: None,
            }),
            activity: Activity::new(true, LIMITS, tokio::time::Instant::now()),
            shutdown,
            identity_headers: std::sync::Mutex::new(None),
            client_address: ClientAddress::of(peer),
            upgrade: Default::default(),
        })
    }

    /// Answers each request with its path and how many body bytes it read, and records every
    /// path. It reads the whole body first, except for `/early` (answers and drops the body)
    /// and `/late` (answers, then reads the body 50 ms later and records its length).
    struct Recorder {
        context: Arc<ConnectionContext>,
        seen: Arc<Mutex<Vec<String>>>,
    }

    type Answer = Pin<Box<dyn Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send>>;

    impl hyper::service::Service<Request<Incoming>> for Recorder {
        type Response = Response<Full<Bytes>>;
        type Error = Infallible;
        type Future = Answer;

        fn call(&self, request: Request<Incoming>) -> Answer {
            let in_flight = self.context.activity.request_started();
            self.context.identity_headers();
            let seen = Arc::clone(&self.seen);
            Box::pin(async move {
                let path = request.uri().path().to_owned();
                seen.lock().unwrap().push(path.clone());
                let body = request.into_body();
                let read = match path.as_str() {
                    "/early" => 0,
                    "/late" => {
                        let seen = Arc::clone(&seen);
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            let read = body.collect().await.map_or(0, |b| b.to_bytes().len());
                            seen.lock().unwrap().push(format!("late body {read}"));
                        });
                        0
                    }
                    _ => body.collect().await.map_or(0, |body| body.to_bytes().len()),
                };
                drop(in_flight);
                let answer = Bytes::from(format!("{path} {read}"));
                Ok(Response::new(Full::new(answer)))
            })
        }
    }

    type TestConnection = Http1Connection<BufReader<DuplexStream>, Recorder>;

    fn connection(io: DuplexStream) -> (TestConnection, Arc<Mutex<Vec<String>>>) {
        let context = context();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let service = Recorder {
            context: Arc::clone(&context),
            seen: Arc::clone(&seen),
        };
        (
            Http1Connection::new(BufReader::new(io), service, context),
            seen,
        )
    }

    /// Drives `connection` while `client` runs, then a little longer so that it settles;
    /// says whether the connection ended meanwhile.
    async fn drive<T>(
        connection: &mut TestConnection,
        client: impl Future<Output = T>,
    ) -> (T, bool) {
        let client = tokio::time::timeout(Duration::from_secs(10), client);
        tokio::pin!(client);
        let mut ended = false;
        let result = loop {
            tokio::select! {
                result = &mut client => break result.expect("the client got no answer within 10 s"),
                _ = &mut *connection, if !ended => ended = true,
            }
        };
        for _ in 0..10 {
            tokio::select! {
                biased;
                _ = &mut *connection, if !ended => ended = true,
                () = tokio::task::yield_now() => {}
            }
        }
        (result, ended)
    }

    /// What the connection's watchdog does once the connection has been quiet for a while.
    async fn release_if_idle(connection: &mut TestConnection) -> bool {
        Pin::new(&mut *connection).release_if_idle();
        let ((), ended) = drive(connection, async {}).await;
        ended
    }

    /// Reads one response with a `content-length` body; returns the body.
    async fn read_response(client: &mut DuplexStream) -> String {
        let mut received = Vec::new();
        loop {
            let mut byte = [0u8; 1];
            client.read_exact(&mut byte).await.unwrap();
            received.push(byte[0]);
            if received.ends_with(b"\r\n\r\n") {
                break;
            }
        }
        let head = String::from_utf8(received).unwrap();
        let length: usize = head
            .lines()
            .find_map(|line| {
                line.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap_or_else(|| panic!("no content-length in {head}"));
        let mut body = vec![0u8; length];
        client.read_exact(&mut body).await.unwrap();
        String::from_utf8(body).unwrap()
    }

    #[tokio::test]
    async fn hyper_is_given_back_between_keep_alive_requests_and_built_again_for_the_next() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let (mut connection, seen) = connection(server);
        for (path, body) in [("/one", ""), ("/two", "twelve bytes"), ("/three", "")] {
            let request = format!(
                "POST {path} HTTP/1.1\r\nhost: app\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            let (answer, ended) = drive(&mut connection, async {
                client.write_all(request.as_bytes()).await.unwrap();
                read_response(&mut client).await
            })
            .await;
            assert_eq!(answer, format!("{path} {}", body.len()));
            assert!(!ended && connection.holds_hyper(), "{path}");
            assert!(
                !release_if_idle(&mut connection).await,
                "closed after {path}"
            );
            assert!(!connection.holds_hyper(), "hyper kept after {path}");
            let identity_headers = connection.context.identity_headers.lock().unwrap().clone();
            assert!(
                identity_headers.is_none(),
                "identity headers kept after {path}"
            );
        }
        assert_eq!(*seen.lock().unwrap(), ["/one", "/two", "/three"]);
    }

    #[tokio::test]
    async fn pipelined_and_split_requests_are_all_answered_in_order() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let (mut connection, seen) = connection(server);
        let (answers, ended) = drive(&mut connection, async {
            // Two whole requests and the start of a third in one write, the rest later.
            client
                .write_all(
                    b"GET /a HTTP/1.1\r\nhost: app\r\n\r\n\
                      POST /b HTTP/1.1\r\nhost: app\r\ncontent-length: 3\r\n\r\nxyz\
                      GET /c HTTP/1.1\r\nho",
                )
                .await
                .unwrap();
            vec![
                read_response(&mut client).await,
                read_response(&mut client).await,
            ]
        })
        .await;
        assert!(!ended);
        // hyper holds the start of /c: it comes back with hyper's state, and hyper is built
        // again at once to read it.
        assert!(!release_if_idle(&mut connection).await);
        assert!(connection.holds_hyper());
        let (last, ended) = drive(&mut connection, async {
            client.write_all(b"st: app\r\n\r\n").await.unwrap();
            read_response(&mut client).await
        })
        .await;
        assert!(!ended);
        assert_eq!(answers, ["/a 0", "/b 3"]);
        assert_eq!(last, "/c 0");
        assert_eq!(*seen.lock().unwrap(), ["/a", "/b", "/c"]);
    }

    /// Sends a request whose answer comes before its body, then the body (which looks like
    /// requests) and one more request; returns what the client read after the first answer.
    async fn answer_before_the_body(path: &str) -> (String, Vec<String>, bool) {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let (mut connection, seen) = connection(server);
        let smuggled = b"GET /smuggled HTTP/1.1\r\nhost: app\r\n\r\n";
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: app\r\ncontent-length: {}\r\n\r\n",
            2 * smuggled.len()
        );
        let (answer, _) = drive(&mut connection, async {
            client.write_all(head.as_bytes()).await.unwrap();
            read_response(&mut client).await
        })
        .await;
        // The answer is sent and the body not yet read: the watchdog finds the connection quiet.
        release_if_idle(&mut connection).await;
        let client_side = async {
            for part in [
                &smuggled[..],
                &smuggled[..],
                b"GET /after HTTP/1.1\r\nhost: app\r\n\r\n",
            ] {
                let _ = client.write_all(part).await;
            }
            let mut rest = Vec::new();
            let _ = client.read_to_end(&mut rest).await;
            String::from_utf8_lossy(&rest).into_owned()
        };
        let client_side = tokio::time::timeout(Duration::from_secs(10), client_side);
        let (client_side, ended) = tokio::join!(
            client_side,
            tokio::time::timeout(Duration::from_secs(5), &mut connection)
        );
        let rest = client_side.expect("the client hung for 10 s");
        assert_eq!(answer, format!("{path} 0"));
        // `/late` records its body from its own task, just after the body ends.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let seen = seen.lock().unwrap().clone();
        (rest, seen, ended.is_ok())
    }

    #[tokio::test]
    async fn a_body_dropped_unread_is_never_read_as_requests() {
        let (rest, seen, closed) = answer_before_the_body("/early").await;
        assert!(closed, "the connection did not close");
        assert_eq!(rest, "");
        assert_eq!(seen, ["/early"]);
    }

    #[tokio::test]
    async fn a_body_read_after_its_answer_is_read_as_a_body_and_the_connection_then_closes() {
        let (rest, seen, closed) = answer_before_the_body("/late").await;
        assert!(closed, "the connection did not close");
        assert_eq!(rest, "");
        assert_eq!(seen, ["/late", "late body 74"]);
    }
}
