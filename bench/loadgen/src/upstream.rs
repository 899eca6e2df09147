//! The upstream every gateway forwards to: small HTTP responses, streamed downloads of any
//! size, uploads it counts and discards, and a TCP port that sources or sinks a byte stream.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, combinators::BoxBody};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// Write size for streamed bodies and TCP transfers.
pub const CHUNK: usize = 64 * 1024;
/// The bytes every transfer carries.
pub static ZEROS: [u8; CHUNK] = [0; CHUNK];
/// First byte of a TCP transfer: the client sends, the upstream counts.
pub const UPLOAD: u8 = b'U';
/// First byte of a TCP transfer: the upstream sends.
pub const DOWNLOAD: u8 = b'D';

/// The small response of scenarios 1–3.
const SMALL_BODY: &[u8] = b"hello from the moat benchmark upstream\n";

/// Flags of `loadgen upstream`.
#[derive(Debug, clap::Args)]
pub struct UpstreamArgs {
    /// Plain HTTP listener (HTTP/1.1, and h2c for gRPC): GET /small, GET /download/BYTES, PUT or
    /// POST /upload, gRPC POST /bench.Echo/*.
    #[arg(long, value_name = "ADDR")]
    http: SocketAddr,
    /// TCP stream listener: a 9-byte header (U or D, then a big-endian u64 length).
    #[arg(long, value_name = "ADDR")]
    tcp: SocketAddr,
}

pub async fn run(args: UpstreamArgs) -> anyhow::Result<()> {
    let http = TcpListener::bind(args.http)
        .await
        .with_context(|| format!("cannot listen on {}", args.http))?;
    let tcp = TcpListener::bind(args.tcp)
        .await
        .with_context(|| format!("cannot listen on {}", args.tcp))?;
    println!("upstream ready");
    tokio::try_join!(serve_http(http), serve_tcp(tcp))?;
    Ok(())
}

async fn serve_http(listener: TcpListener) -> anyhow::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            // HTTP/1.1, or h2c (HTTP/2 by prior knowledge) for the gRPC calls of scenario 7.
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service_fn(answer))
                .await;
        });
    }
}

type AnyBody = BoxBody<Bytes, hyper::Error>;

async fn answer(request: Request<Incoming>) -> Result<Response<AnyBody>, Infallible> {
    let path = request.uri().path().to_string();
    let response = if path == "/small" {
        Response::new(full(Bytes::from_static(SMALL_BODY)))
    } else if let Some(size) = path.strip_prefix("/download/") {
        match size.parse::<u64>() {
            Ok(size) => Response::new(Zeros { left: size }.boxed()),
            Err(_) => status(StatusCode::BAD_REQUEST, "size is not a number\n"),
        }
    } else if path.starts_with(GRPC_SERVICE) {
        return Ok(grpc_echo(request).await);
    } else if path == "/upload" {
        let mut body = request.into_body();
        let mut received = 0u64;
        loop {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        received += data.len() as u64;
                    }
                }
                Some(Err(_)) => return Ok(status(StatusCode::BAD_REQUEST, "upload broken\n")),
                None => break,
            }
        }
        Response::new(full(Bytes::from(format!("received {received}\n"))))
    } else {
        status(StatusCode::NOT_FOUND, "not found\n")
    };
    Ok(response)
}

/// The gRPC service of scenario 7: every method answers its request message unchanged.
pub const GRPC_SERVICE: &str = "/bench.Echo/";

/// A unary gRPC answer: the request's length-prefixed message sent back, then `grpc-status: 0`
/// in the trailers, as a gRPC server ends every successful call.
async fn grpc_echo(request: Request<Incoming>) -> Response<AnyBody> {
    let message = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return status(StatusCode::BAD_REQUEST, "request broken\n"),
    };
    let mut trailers = hyper::HeaderMap::new();
    trailers.insert("grpc-status", hyper::header::HeaderValue::from_static("0"));
    let body = Full::new(message)
        .with_trailers(std::future::ready(Some(Ok(trailers))))
        .map_err(|never| match never {})
        .boxed();
    let mut response = Response::new(body);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/grpc"),
    );
    response
}

fn full(bytes: Bytes) -> AnyBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

fn status(code: StatusCode, text: &'static str) -> Response<AnyBody> {
    let mut response = Response::new(full(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = code;
    response
}

/// A body of `left` zero bytes, produced without allocating.
struct Zeros {
    left: u64,
}

impl Body for Zeros {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let now = self.left.min(CHUNK as u64) as usize;
        self.left -= now as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&ZEROS[..now])))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

async fn serve_tcp(listener: TcpListener) -> anyhow::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            if let Err(error) = tcp_transfer(stream).await {
                eprintln!("upstream: TCP transfer: {error:#}");
            }
        });
    }
}

async fn tcp_transfer(mut stream: TcpStream) -> anyhow::Result<()> {
    let mut header = [0u8; 9];
    stream.read_exact(&mut header).await?;
    let mut length = [0u8; 8];
    length.copy_from_slice(&header[1..]);
    let length = u64::from_be_bytes(length);
    match header[0] {
        UPLOAD => {
            let mut buffer = vec![0u8; CHUNK];
            let mut received = 0u64;
            while received < length {
                let read = stream.read(&mut buffer).await?;
                anyhow::ensure!(read > 0, "client stopped after {received} bytes");
                received += read as u64;
            }
            stream.write_all(&received.to_be_bytes()).await?;
        }
        DOWNLOAD => {
            let mut left = length;
            while left > 0 {
                let now = left.min(CHUNK as u64) as usize;
                stream.write_all(&ZEROS[..now]).await?;
                left -= now as u64;
            }
        }
        other => anyhow::bail!("unknown transfer kind {other}"),
    }
    stream.shutdown().await?;
    Ok(())
}
