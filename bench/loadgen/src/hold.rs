//! Opens many mTLS connections and keeps them idle, so the harness can read the gateway's memory
//! per connection: either as a handshake left them, or after one completed request (the state a
//! keep-alive client leaves a connection in).

use std::io::Write as _;
use std::rc::Rc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::sync::Semaphore;

use crate::tls::Dialer;
use crate::{TlsArgs, parse_duration};

/// Flags of `loadgen hold`.
#[derive(Debug, clap::Args)]
pub struct HoldArgs {
    #[command(flatten)]
    tls: TlsArgs,
    /// Connections to open and hold.
    #[arg(long, default_value_t = 5000)]
    connections: usize,
    /// Handshakes in flight at once while opening.
    #[arg(long, default_value_t = 32)]
    parallel: usize,
    /// How long to hold them once all are open.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    hold: Duration,
    /// Send one HTTP/1.1 GET for this path on each connection, read the whole answer, then hold
    /// the connection open (keep-alive) instead of leaving it as the handshake did.
    #[arg(long, value_name = "PATH")]
    request_first: Option<String>,
}

/// A held connection: the TLS stream itself, or the HTTP/1.1 client that used it once (its
/// connection task keeps the stream open while the sender lives).
enum Held {
    Fresh(#[allow(dead_code)] Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
    Used(#[allow(dead_code)] hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
}

pub async fn run(args: HoldArgs) -> anyhow::Result<()> {
    let dialer = Rc::new(Dialer::new(&args.tls, &[b"http/1.1"])?);
    let permits = Rc::new(Semaphore::new(args.parallel.max(1)));
    let request_first: Option<Rc<(String, String)>> = args.request_first.clone().map(|path| {
        let authority = format!("{}:{}", args.tls.server_name, args.tls.connect.port());
        Rc::new((path, authority))
    });
    let local = tokio::task::LocalSet::new();
    let (held, failures) = local
        .run_until(async move {
            let opening: Vec<_> = (0..args.connections)
                .map(|_| {
                    let dialer = dialer.clone();
                    let permits = permits.clone();
                    let request_first = request_first.clone();
                    tokio::task::spawn_local(async move {
                        let _permit = permits.acquire().await?;
                        tokio::time::timeout(Duration::from_secs(30), async {
                            let stream = dialer.dial().await?;
                            match request_first {
                                None => Ok(Held::Fresh(Box::new(stream))),
                                Some(target) => one_request(stream, &target.0, &target.1)
                                    .await
                                    .map(Held::Used),
                            }
                        })
                        .await
                        .map_err(|_| anyhow::anyhow!("handshake (and request) took over 30s"))?
                    })
                })
                .collect();
            let mut held = Vec::with_capacity(args.connections);
            let mut failures = Vec::new();
            for task in opening {
                match task.await {
                    Ok(Ok(stream)) => held.push(stream),
                    Ok(Err(error)) => failures.push(format!("{error:#}")),
                    Err(error) => failures.push(error.to_string()),
                }
            }
            (held, failures)
        })
        .await;
    // The harness waits for this line before it reads the gateway's memory.
    println!("held={} failed={}", held.len(), failures.len());
    if let Some(first) = failures.first() {
        eprintln!("loadgen: first failure: {first}");
    }
    std::io::stdout().flush()?;
    // Memory read with fewer connections than asked would be divided by the wrong count.
    anyhow::ensure!(
        failures.is_empty(),
        "{} of {} connections failed to open",
        failures.len(),
        args.connections
    );
    tokio::time::sleep(args.hold).await;
    drop(held);
    Ok(())
}

/// Sends one GET on a new HTTP/1.1 client over `stream`, reads the answer to its end and returns
/// the client, whose connection stays open for keep-alive.
async fn one_request(
    stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    path: &str,
    authority: &str,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> {
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP/1.1 handshake")?;
    tokio::task::spawn_local(async move {
        let _ = connection.await;
    });
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, authority)
        .body(Empty::new())?;
    let response = sender
        .send_request(request)
        .await
        .context("request failed")?;
    crate::http_load::check_and_drain(response).await?;
    Ok(sender)
}
