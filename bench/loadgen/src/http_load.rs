//! The request scenarios: HTTP/1.1 keep-alive, a new full handshake per request, and HTTP/2
//! with several streams per connection, each for a fixed time; and keep-alive requests at a fixed
//! rate, for the latency a gateway adds when it is not saturated.

use std::rc::Rc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::Request;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::time::Instant;

use crate::tally::Tally;
use crate::tls::Dialer;
use crate::{TlsArgs, parse_duration};

/// How long one request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Flags of `loadgen http`.
#[derive(Debug, clap::Args)]
pub struct HttpArgs {
    #[command(flatten)]
    tls: TlsArgs,
    /// Path requested.
    #[arg(long, default_value = "/small")]
    path: String,
    /// Concurrent connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// How long to send requests.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    duration: Duration,
    /// Open a new connection (full handshake, no resumption) for every request.
    #[arg(long, conflicts_with = "http2")]
    new_connection_per_request: bool,
    /// Speak HTTP/2 (ALPN h2) instead of HTTP/1.1.
    #[arg(long)]
    http2: bool,
    /// Concurrent streams per HTTP/2 connection.
    #[arg(long, default_value_t = 1, requires = "http2")]
    streams: usize,
    /// Make each request a unary gRPC call (POST, `content-type: application/grpc`, a 16-byte
    /// message) to PATH, counted only when its `grpc-status` is 0.
    #[arg(long, requires = "http2")]
    grpc: bool,
    /// Send this many requests per second in all (open loop, keep-alive HTTP/1.1 over the
    /// connections) instead of as fast as answers come; a request's latency counts from when it
    /// was due, so time spent waiting for a free connection is part of it.
    #[arg(long, value_name = "PER_SECOND", conflicts_with_all = ["http2", "new_connection_per_request"])]
    rate: Option<u32>,
}

/// What every worker shares.
struct Target {
    dialer: Dialer,
    path: String,
    grpc: bool,
    authority: String,
    deadline: Instant,
}

pub async fn run(args: HttpArgs) -> anyhow::Result<()> {
    let alpn: &[&[u8]] = if args.http2 { &[b"h2"] } else { &[b"http/1.1"] };
    let authority = format!("{}:{}", args.tls.server_name, args.tls.connect.port());
    let start = Instant::now();
    // A fixed-rate run opens its connections first, so no request waits for a handshake.
    let warm_up = if args.rate.is_some() {
        WARM_UP
    } else {
        Duration::ZERO
    };
    let target = Rc::new(Target {
        dialer: Dialer::new(&args.tls, alpn)?,
        path: args.path.clone(),
        grpc: args.grpc,
        authority,
        deadline: start + warm_up + args.duration,
    });
    let local = tokio::task::LocalSet::new();
    let tally = local
        .run_until(async move {
            let mut workers = Vec::new();
            let due = args.rate.map(|rate| schedule(target.clone(), rate));
            for _ in 0..args.connections {
                let target = target.clone();
                workers.push(if let Some(due) = &due {
                    tokio::task::spawn_local(fixed_rate_worker(target, due.clone()))
                } else if args.http2 {
                    tokio::task::spawn_local(http2_connection(target, args.streams))
                } else if args.new_connection_per_request {
                    tokio::task::spawn_local(new_connection_worker(target))
                } else {
                    tokio::task::spawn_local(keep_alive_worker(target))
                });
            }
            let mut total = Tally::new();
            for worker in workers {
                total.merge(worker.await.context("a worker panicked")?);
            }
            anyhow::Ok(total)
        })
        .await?;
    tally.report(start.elapsed().saturating_sub(warm_up))
}

/// How long a fixed-rate run gives its connections to open before the first request is due.
const WARM_UP: Duration = Duration::from_secs(1);

/// Opens a TLS connection and an HTTP/1.1 client on it.
async fn open_http1(target: &Target) -> anyhow::Result<http1::SendRequest<Empty<Bytes>>> {
    let tls = target.dialer.dial().await?;
    let (sender, connection) = http1::handshake(TokioIo::new(tls))
        .await
        .context("HTTP/1.1 handshake")?;
    tokio::task::spawn_local(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

async fn get_http1(
    sender: &mut http1::SendRequest<Empty<Bytes>>,
    target: &Target,
) -> anyhow::Result<()> {
    sender.ready().await.context("connection closed")?;
    let request = Request::get(&target.path)
        .header(hyper::header::HOST, &target.authority)
        .body(Empty::new())?;
    let response = sender
        .send_request(request)
        .await
        .context("request failed")?;
    check_and_drain(response).await
}

/// Reads a response to its end and fails unless it was 200.
pub async fn check_and_drain(
    response: hyper::Response<hyper::body::Incoming>,
) -> anyhow::Result<()> {
    let status = response.status();
    response
        .into_body()
        .collect()
        .await
        .context("reading the body")?;
    anyhow::ensure!(status == hyper::StatusCode::OK, "status {status}");
    Ok(())
}

/// One GET on a worker's keep-alive connection, opened first when it has none (or lost it).
async fn keep_alive_request(
    sender: &mut Option<http1::SendRequest<Empty<Bytes>>>,
    target: &Target,
) -> anyhow::Result<()> {
    tokio::time::timeout(REQUEST_TIMEOUT, async {
        if sender.is_none() {
            *sender = Some(open_http1(target).await?);
        }
        match sender.as_mut() {
            Some(sender) => get_http1(sender, target).await,
            None => unreachable!("opened above"),
        }
    })
    .await
    .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {REQUEST_TIMEOUT:?}")))
}

async fn keep_alive_worker(target: Rc<Target>) -> Tally {
    let mut tally = Tally::new();
    let mut sender = None;
    while Instant::now() < target.deadline {
        let started = Instant::now();
        let outcome = keep_alive_request(&mut sender, &target).await;
        match outcome {
            Ok(()) => tally.record(started.elapsed()),
            Err(error) => {
                tally.error(&error);
                sender = None;
                // Do not spin on a gateway that refuses everything.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    tally
}

async fn new_connection_worker(target: Rc<Target>) -> Tally {
    let mut tally = Tally::new();
    while Instant::now() < target.deadline {
        let started = Instant::now();
        let outcome = tokio::time::timeout(REQUEST_TIMEOUT, async {
            let mut sender = open_http1(&target).await?;
            get_http1(&mut sender, &target).await
        })
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {REQUEST_TIMEOUT:?}")));
        match outcome {
            Ok(()) => tally.record(started.elapsed()),
            Err(error) => {
                tally.error(&error);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    tally
}

/// One HTTP/2 connection carrying `streams` request loops at once.
async fn http2_connection(target: Rc<Target>, streams: usize) -> Tally {
    let mut tally = Tally::new();
    while Instant::now() < target.deadline {
        let sender = match open_http2(&target).await {
            Ok(sender) => sender,
            Err(error) => {
                tally.error(&error);
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let loops: Vec<_> = (0..streams)
            .map(|_| tokio::task::spawn_local(http2_stream(target.clone(), sender.clone())))
            .collect();
        for stream in loops {
            match stream.await {
                Ok(stream_tally) => tally.merge(stream_tally),
                Err(error) => tally.error(&anyhow::anyhow!("stream task: {error}")),
            }
        }
    }
    tally
}

async fn open_http2(target: &Target) -> anyhow::Result<http2::SendRequest<Full<Bytes>>> {
    let tls = target.dialer.dial().await?;
    let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
        .await
        .context("HTTP/2 handshake")?;
    tokio::task::spawn_local(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Sends requests one after another on one stream slot until the deadline or the first error
/// (after which the connection is reopened by its owner).
async fn http2_stream(target: Rc<Target>, mut sender: http2::SendRequest<Full<Bytes>>) -> Tally {
    let mut tally = Tally::new();
    let uri = format!("https://{}{}", target.authority, target.path);
    while Instant::now() < target.deadline {
        let started = Instant::now();
        let outcome = tokio::time::timeout(REQUEST_TIMEOUT, async {
            sender.ready().await.context("connection closed")?;
            if target.grpc {
                let response = sender
                    .send_request(grpc_call(&uri)?)
                    .await
                    .context("call failed")?;
                return check_grpc_answer(response).await;
            }
            let request = Request::get(uri.as_str()).body(Full::new(Bytes::new()))?;
            let response = sender
                .send_request(request)
                .await
                .context("request failed")?;
            check_and_drain(response).await
        })
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {REQUEST_TIMEOUT:?}")));
        match outcome {
            Ok(()) => tally.record(started.elapsed()),
            Err(error) => {
                tally.error(&error);
                break;
            }
        }
    }
    tally
}

/// One gRPC message: the 5-byte prefix (uncompressed, length 16) and 16 bytes.
const GRPC_MESSAGE: &[u8] = b"\0\0\0\0\x10moat-bench-grpc!";

/// A unary gRPC call to `uri`, as gRPC clients send it.
fn grpc_call(uri: &str) -> anyhow::Result<Request<Full<Bytes>>> {
    Ok(Request::post(uri)
        .header(hyper::header::CONTENT_TYPE, "application/grpc")
        .header(hyper::header::TE, "trailers")
        .body(Full::new(Bytes::from_static(GRPC_MESSAGE)))?)
}

/// Reads a gRPC answer to its end; fails unless it was HTTP 200 with `grpc-status: 0` (in the
/// trailers, or in the headers of a trailers-only answer) and the message echoed.
async fn check_grpc_answer(response: hyper::Response<hyper::body::Incoming>) -> anyhow::Result<()> {
    let status = response.status();
    let in_headers = response.headers().get("grpc-status").cloned();
    let collected = response
        .into_body()
        .collect()
        .await
        .context("reading the answer")?;
    anyhow::ensure!(status == hyper::StatusCode::OK, "status {status}");
    let grpc_status = collected
        .trailers()
        .and_then(|trailers| trailers.get("grpc-status").cloned())
        .or(in_headers);
    anyhow::ensure!(
        grpc_status.as_ref().is_some_and(|value| value == "0"),
        "grpc-status {grpc_status:?}"
    );
    anyhow::ensure!(collected.to_bytes() == GRPC_MESSAGE, "message not echoed");
    Ok(())
}

/// The requests of a fixed-rate run, each as the instant it was due; workers take them in order.
type DueRequests = Rc<tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<Instant>>>;

/// Issues `rate` requests per second until the deadline, each stamped with the instant it was due
/// (or, when the timer woke late, the instant it was issued: timer lateness is the load
/// generator's, not the gateway's).
fn schedule(target: Rc<Target>, rate: u32) -> DueRequests {
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    tokio::task::spawn_local(async move {
        let mut next = Instant::now() + WARM_UP;
        while next < target.deadline {
            tokio::time::sleep_until(next).await;
            let now = Instant::now();
            // Every request due by now goes out; each counts from its own due time or now.
            while next <= now && next < target.deadline {
                if sender.send(now.max(next)).is_err() {
                    return;
                }
                next += interval;
            }
        }
    });
    Rc::new(tokio::sync::Mutex::new(receiver))
}

/// One keep-alive connection taking due requests until none are left.
async fn fixed_rate_worker(target: Rc<Target>, due: DueRequests) -> Tally {
    let mut tally = Tally::new();
    let mut sender = match open_http1(&target).await {
        Ok(sender) => Some(sender),
        Err(error) => {
            tally.error(&error);
            None
        }
    };
    loop {
        let Some(due_at) = due.lock().await.recv().await else {
            return tally;
        };
        let outcome = keep_alive_request(&mut sender, &target).await;
        match outcome {
            Ok(()) => tally.record(due_at.elapsed()),
            Err(error) => {
                tally.error(&error);
                sender = None;
            }
        }
    }
}
