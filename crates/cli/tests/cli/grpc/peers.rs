//! Real gRPC peers for the tests: tonic's gRPC protocol on both sides, with messages as raw bytes
//! (a codec of our own stands in for protobuf, so the tests need no protoc).
//!
//! The upstream serves `moat.test.Echo` (and `moat.test.Admin/Reset`, for path rules):
//! - `Unary`: answers the request's bytes;
//! - `Whoami`: answers the request's metadata, one `name: value` line each;
//! - `Count` (server streaming): the request is a number N; answers N messages "0".."N-1", then
//!   the trailer `x-test-trailer: kept` with `grpc-status: 0`;
//! - `Sum` (client streaming): answers "MESSAGES BYTES" of what it received;
//! - `Chat` (bidirectional): answers each message as it comes;
//! - `Fail`: NOT_FOUND with a message that needs percent-encoding and a custom trailer.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf as _, BufMut as _, Bytes};
use futures_util::{Stream, StreamExt as _};
use http::uri::PathAndQuery;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::server::{
    ClientStreamingService, Grpc, ServerStreamingService, StreamingService, UnaryService,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request, Response, Status, Streaming};

/// The message of the `Fail` method: spaces, a `%` and non-ASCII, all percent-encoded on the wire.
pub const FAIL_MESSAGE: &str = "no such thing: 100% gone, ünïcode";

/// Messages are bytes as they are: the test needs gRPC's framing, not protobuf.
#[derive(Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;
type MessageStream = Pin<Box<dyn Stream<Item = Result<Vec<u8>, Status>> + Send>>;

/// The `x-test-trailer: kept` metadata the streaming and failing methods end with.
fn test_trailer() -> MetadataMap {
    let mut metadata = MetadataMap::new();
    metadata.insert("x-test-trailer", MetadataValue::from_static("kept"));
    metadata
}

struct Unary;

impl UnaryService<Vec<u8>> for Unary {
    type Response = Vec<u8>;
    type Future = BoxFuture<Result<Response<Vec<u8>>, Status>>;

    fn call(&mut self, request: Request<Vec<u8>>) -> Self::Future {
        Box::pin(async move { Ok(Response::new(request.into_inner())) })
    }
}

struct Whoami;

impl UnaryService<Vec<u8>> for Whoami {
    type Response = Vec<u8>;
    type Future = BoxFuture<Result<Response<Vec<u8>>, Status>>;

    fn call(&mut self, request: Request<Vec<u8>>) -> Self::Future {
        let mut lines = String::new();
        for (name, value) in request.metadata().clone().into_headers().iter() {
            lines.push_str(&format!(
                "{}: {}\n",
                name,
                String::from_utf8_lossy(value.as_bytes())
            ));
        }
        Box::pin(async move { Ok(Response::new(lines.into_bytes())) })
    }
}

struct Fail;

impl UnaryService<Vec<u8>> for Fail {
    type Response = Vec<u8>;
    type Future = BoxFuture<Result<Response<Vec<u8>>, Status>>;

    fn call(&mut self, _: Request<Vec<u8>>) -> Self::Future {
        Box::pin(async move {
            Err(Status::with_metadata(
                Code::NotFound,
                FAIL_MESSAGE,
                test_trailer(),
            ))
        })
    }
}

struct Count;

impl ServerStreamingService<Vec<u8>> for Count {
    type Response = Vec<u8>;
    type ResponseStream = MessageStream;
    type Future = BoxFuture<Result<Response<MessageStream>, Status>>;

    fn call(&mut self, request: Request<Vec<u8>>) -> Self::Future {
        Box::pin(async move {
            let count: usize = String::from_utf8_lossy(request.get_ref())
                .parse()
                .map_err(|_| Status::invalid_argument("send a number"))?;
            let messages = futures_util::stream::iter(0..count)
                .map(|n| Ok(n.to_string().into_bytes()))
                // A status with code OK ends the stream with its metadata as trailers.
                .chain(futures_util::stream::once(async {
                    Err(Status::with_metadata(Code::Ok, "", test_trailer()))
                }));
            Ok(Response::new(Box::pin(messages) as MessageStream))
        })
    }
}

struct Sum;

impl ClientStreamingService<Vec<u8>> for Sum {
    type Response = Vec<u8>;
    type Future = BoxFuture<Result<Response<Vec<u8>>, Status>>;

    fn call(&mut self, request: Request<Streaming<Vec<u8>>>) -> Self::Future {
        Box::pin(async move {
            let mut stream = request.into_inner();
            let (mut messages, mut bytes) = (0usize, 0usize);
            while let Some(message) = stream.message().await? {
                messages += 1;
                bytes += message.len();
            }
            Ok(Response::new(format!("{messages} {bytes}").into_bytes()))
        })
    }
}

struct Chat;

impl StreamingService<Vec<u8>> for Chat {
    type Response = Vec<u8>;
    type ResponseStream = MessageStream;
    type Future = BoxFuture<Result<Response<MessageStream>, Status>>;

    fn call(&mut self, request: Request<Streaming<Vec<u8>>>) -> Self::Future {
        Box::pin(async move {
            let replies = request.into_inner();
            Ok(Response::new(Box::pin(replies) as MessageStream))
        })
    }
}

/// Answers one HTTP/2 request as the echo service.
async fn serve_call(
    request: http::Request<Incoming>,
) -> Result<http::Response<tonic::body::Body>, Infallible> {
    let mut grpc = Grpc::new(RawCodec);
    let response = match request.uri().path() {
        "/moat.test.Echo/Unary" | "/moat.test.Admin/Reset" => grpc.unary(Unary, request).await,
        "/moat.test.Echo/Whoami" => grpc.unary(Whoami, request).await,
        "/moat.test.Echo/Fail" => grpc.unary(Fail, request).await,
        "/moat.test.Echo/Count" => grpc.server_streaming(Count, request).await,
        "/moat.test.Echo/Sum" => grpc.client_streaming(Sum, request).await,
        "/moat.test.Echo/Chat" => grpc.streaming(Chat, request).await,
        path => Status::unimplemented(format!("no method {path}")).into_http(),
    };
    Ok(response)
}

/// Serves the echo service over HTTP/2 on one accepted connection.
async fn serve_connection<IO>(io: IO)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(io), service_fn(serve_call))
        .await;
}

/// The echo service over h2c (HTTP/2 by prior knowledge) on a free loopback port; it runs on
/// its own thread and runtime until the test process ends.
pub fn start_h2c_upstream() -> SocketAddr {
    start_upstream(None)
}

/// The echo service over TLS (ALPN `h2`) on a free loopback port, presenting `crt`/`key`.
pub fn start_tls_upstream(crt: &Path, key: &Path) -> SocketAddr {
    use rustls_pki_types::pem::PemObject as _;
    let chain = rustls_pki_types::CertificateDer::pem_file_iter(crt)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(key).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    start_upstream(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
}

fn start_upstream(tls: Option<tokio_rustls::TlsAcceptor>) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        None => serve_connection(stream).await,
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                serve_connection(stream).await;
                            }
                        }
                    }
                });
            }
        });
    });
    addr
}

/// A gRPC client of moat at 127.0.0.1:`port`, addressing `host` (SNI and `:authority`),
/// trusting `dir/server-ca.crt` and presenting `dir/NAME.crt`/`.key` when `identity` names one.
pub async fn connect(dir: &Path, port: u16, host: &str, identity: Option<&str>) -> Channel {
    let ca = std::fs::read_to_string(dir.join("server-ca.crt")).unwrap();
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name(host);
    if let Some(name) = identity {
        let crt = std::fs::read_to_string(dir.join(format!("{name}.crt"))).unwrap();
        let key = std::fs::read_to_string(dir.join(format!("{name}.key"))).unwrap();
        tls = tls.identity(Identity::from_pem(crt, key));
    }
    Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .origin(format!("https://{host}:{port}").parse().unwrap())
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap_or_else(|error| panic!("cannot connect to moat on {port}: {error:?}"))
}

/// A gRPC client of `channel` for raw-byte methods.
pub async fn client(channel: &Channel) -> tonic::client::Grpc<Channel> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    grpc
}

/// A request carrying `message` and the metadata `pairs`.
pub fn request<T>(message: T, pairs: &[(&str, &str)]) -> Request<T> {
    let mut request = Request::new(message);
    for (name, value) in pairs {
        request.metadata_mut().insert(
            MetadataKey::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    request
}

/// Calls the unary `path` with `message` and `pairs` of metadata.
pub async fn unary(
    channel: &Channel,
    path: &'static str,
    message: &[u8],
    pairs: &[(&str, &str)],
) -> Result<Response<Vec<u8>>, Status> {
    client(channel)
        .await
        .unary(
            request(message.to_vec(), pairs),
            PathAndQuery::from_static(path),
            RawCodec,
        )
        .await
}

/// The text of a unary answer.
pub fn text(response: Response<Vec<u8>>) -> String {
    String::from_utf8(response.into_inner()).unwrap()
}

/// A body of `length` bytes for the streams, as a message.
pub fn payload(length: usize) -> Bytes {
    Bytes::from(vec![b'x'; length])
}
