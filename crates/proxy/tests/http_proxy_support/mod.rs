//! Test fixtures for the HTTP proxy: an in-test upstream, a gateway over plain TCP, and clients.
#![allow(dead_code)]

use std::convert::Infallible;
use std::fmt::Debug;
use std::future::Future;
use std::net::SocketAddr;
use std::ops::RangeBounds;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use moat_config::{
    ClientAuthMode, EndpointConfig, EndpointKind, TerminateAt, Timeouts, TlsVersion,
    Upstream as UpstreamAddr, UpstreamScheme,
};
use moat_proxy::http::HttpProxy;
use moat_telemetry::ConnectionInfo;
use moat_trust::{ClientIdentity, SubjectAltName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Every test finishes within this bound or fails.
pub async fn bounded<F: Future<Output = ()>>(test: F) {
    tokio::time::timeout(Duration::from_secs(30), test)
        .await
        .expect("test exceeded 30 s");
}

/// An `http` endpoint in front of `upstream`, trusting a (not read) client CA file.
pub fn endpoint(upstream: SocketAddr) -> EndpointConfig {
    endpoint_with_scheme(upstream, UpstreamScheme::Http)
}

/// Like [`endpoint`] with an explicit upstream scheme.
pub fn endpoint_with_scheme(upstream: SocketAddr, scheme: UpstreamScheme) -> EndpointConfig {
    EndpointConfig {
        name: "test".into(),
        kind: EndpointKind::Http,
        listen: "127.0.0.1:0".parse().unwrap(),
        domain: "app.example.com".into(),
        upstream: UpstreamAddr {
            scheme,
            host: upstream.ip().to_string(),
            port: upstream.port(),
        },
        upstream_ca: None,
        crt: None,
        key: None,
        mutual_tls_cas: vec!["cas.pem".into()],
        crls: vec![],
        client_auth: ClientAuthMode::RequireAndVerify,
        tls_min_version: TlsVersion::Tls12,
        terminate_at: TerminateAt::Edge,
        publish: false,
        pool: false,
        timeouts: Timeouts::default(),
        default: false,
        ca_hints: true,
        session_resumption: true,
        crl_expired: Default::default(),
        upstream_proxy_protocol: None,
        upstream_protocol: Default::default(),
        rules: Vec::new(),
        rule_specs: Vec::new(),
        policy_file: None,
    }
}

/// A client identity built from a real rcgen-made certificate issued by a test CA.
pub fn client_identity() -> Arc<ClientIdentity> {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.distinguished_name = rcgen::DistinguishedName::new();
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Test CA");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["client.example.com".to_string()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Test Client");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Moat Tests");
    let cert = params.signed_by(&key, &issuer).unwrap();

    Arc::new(ClientIdentity {
        subject: "CN=Test Client,O=Moat Tests".into(),
        common_name: Some("Test Client".into()),
        organizations: vec!["Moat Tests".into()],
        organizational_units: vec![],
        issuer: "CN=Test CA".into(),
        serial_hex: "0a1b2c3d".into(),
        fingerprint_sha256: "ab".repeat(32),
        not_before: 1_700_000_000,
        not_after: 1_800_000_000,
        sans: vec![
            SubjectAltName::Dns("client.example.com".into()),
            SubjectAltName::Uri("spiffe://example.com/client".into()),
            SubjectAltName::Ip("10.1.2.3".parse().unwrap()),
            SubjectAltName::Email("ops@example.com".into()),
        ],
        version: 3,
        certificate: cert.der().clone(),
        chain: vec![ca_cert.der().clone()],
    })
}

/// The proxy accepting plain TCP connections, as the listener would hand them over after TLS.
pub struct Gateway {
    pub addr: SocketAddr,
    pub shutdown: watch::Sender<bool>,
}

impl Gateway {
    pub async fn start(
        config: EndpointConfig,
        client: Option<Arc<ClientIdentity>>,
        http2: bool,
    ) -> Gateway {
        Gateway::serving(Arc::new(HttpProxy::new(&config).unwrap()), client, http2).await
    }

    /// Serves `proxy` (whatever connector it reaches its upstream with) to `client`.
    pub async fn serving(
        proxy: Arc<HttpProxy>,
        client: Option<Arc<ClientIdentity>>,
        http2: bool,
    ) -> Gateway {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, shutdown_rx) = watch::channel(false);
        tokio::spawn(async move {
            loop {
                let Ok((stream, peer_addr)) = listener.accept().await else {
                    return;
                };
                let info = ConnectionInfo {
                    endpoint: "test".into(),
                    peer_addr,
                    local_addr: addr,
                    sni: Some("app.example.com".into()),
                    sni_routed: false,
                    tls_version: "TLSv1.3",
                    cipher_suite: None,
                    http2,
                    client: client.clone(),
                };
                tokio::spawn(Arc::clone(&proxy).serve_connection(
                    tokio::io::BufReader::new(stream),
                    info,
                    shutdown_rx.clone(),
                ));
            }
        });
        Gateway { addr, shutdown }
    }

    /// A gateway in front of `upstream` with the default [`endpoint`] and a verified client.
    pub async fn in_front_of(upstream: SocketAddr, http2: bool) -> Gateway {
        Gateway::start(endpoint(upstream), Some(client_identity()), http2).await
    }
}

/// A test [`Upstream`] and a [`Gateway`] in front of it (default [`endpoint`], verified client).
pub async fn start_proxied(http2: bool) -> (Upstream, Gateway) {
    start_proxied_as(Some(client_identity()), http2, |_| {}).await
}

/// Like [`start_proxied`], the endpoint adjusted by `configure`.
pub async fn start_proxied_with(
    http2: bool,
    configure: impl FnOnce(&mut EndpointConfig),
) -> (Upstream, Gateway) {
    start_proxied_as(Some(client_identity()), http2, configure).await
}

/// A test [`Upstream`] and a [`Gateway`] in front of it serving `client` (`None`: a client
/// without a certificate), its endpoint adjusted by `configure`.
pub async fn start_proxied_as(
    client: Option<Arc<ClientIdentity>>,
    http2: bool,
    configure: impl FnOnce(&mut EndpointConfig),
) -> (Upstream, Gateway) {
    let upstream = Upstream::start().await;
    let mut config = endpoint(upstream.addr);
    configure(&mut config);
    let gateway = Gateway::start(config, client, http2).await;
    (upstream, gateway)
}

/// Waits until `upstream` has the head of a request, then tells `gateway` to shut down: the
/// request is in flight when the shutdown begins.
pub async fn shut_down_once_requested(upstream: &Upstream, gateway: &Gateway) {
    eventually("the request reaches the upstream", || {
        upstream.requests.load(Ordering::SeqCst) == 1
    })
    .await;
    gateway.shutdown.send(true).unwrap();
}

type UpstreamBody = BoxBody<Bytes, hyper::Error>;

/// An HTTP/1.1 and h2c upstream: `/headers` echoes the request headers as `name: value` lines
/// (and the version and any authority the request arrived with), `/answer-then-read` answers at
/// once and reads the body afterwards, `/echo`
/// streams the request body back, `/slow` answers after 1.5 s, `/upgrade` switches to a byte echo.
pub struct Upstream {
    pub addr: SocketAddr,
    /// TCP connections accepted so far.
    pub connections: Arc<AtomicUsize>,
    /// Requests whose head arrived so far (counted before `/slow` starts waiting).
    pub requests: Arc<AtomicUsize>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (connection_counter, request_counter) =
            (Arc::clone(&connections), Arc::clone(&requests));
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                connection_counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve_counted(stream, Arc::clone(&request_counter)));
            }
        });
        Upstream {
            addr,
            connections,
            requests,
        }
    }
}

/// Serves one upstream connection with the test routes.
pub async fn serve_upstream_connection<IO>(io: IO)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    serve_counted(io, Arc::new(AtomicUsize::new(0))).await;
}

/// [`serve_upstream_connection`], counting each request in `requests` as it arrives.
async fn serve_counted<IO>(io: IO, requests: Arc<AtomicUsize>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        requests.fetch_add(1, Ordering::SeqCst);
        upstream_route(request)
    });
    // HTTP/1.1, or HTTP/2 by prior knowledge (h2c) when the connection opens with its preface.
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .await;
}

/// A port on 127.0.0.1 where nothing listens while the socket lives: bound and never
/// listening, so connections are refused and the kernel hands the port to no other bind (a
/// port bound and dropped it could hand out again). Returns the socket and its address.
pub fn closed_port() -> (tokio::net::TcpSocket, SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let address = socket.local_addr().unwrap();
    (socket, address)
}

/// Polls `condition` every 10 ms until it holds; fails the test naming `what` after 10 s.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let limit = Duration::from_secs(10);
    let deadline = tokio::time::Instant::now() + limit;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn text(status: StatusCode, body: String) -> Response<UpstreamBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response
}

/// A response body that sends `first` and then never another byte, like a hung upstream.
struct StallsAfterFirstChunk {
    sent: bool,
}

impl hyper::body::Body for StallsAfterFirstChunk {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        if self.sent {
            return std::task::Poll::Pending;
        }
        self.sent = true;
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from_static(
            b"first",
        )))))
    }
}

async fn upstream_route(
    mut request: Request<Incoming>,
) -> Result<Response<UpstreamBody>, Infallible> {
    let response = match request.uri().path() {
        "/headers" => {
            let mut body = String::new();
            for (name, value) in request.headers() {
                body.push_str(&format!(
                    "{}: {}\n",
                    name,
                    String::from_utf8_lossy(value.as_bytes())
                ));
            }
            let target = request
                .uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("");
            body.push_str(&format!("x-request-target: {target}\n"));
            body.push_str(&format!("x-request-version: {:?}\n", request.version()));
            if let Some(authority) = request.uri().authority() {
                body.push_str(&format!("x-request-authority: {authority}\n"));
            }
            let mut response = text(StatusCode::OK, body);
            response
                .headers_mut()
                .insert("connection", "x-upstream-hop".parse().unwrap());
            response
                .headers_mut()
                .insert("x-upstream-hop", "1".parse().unwrap());
            response
                .headers_mut()
                .insert("x-upstream", "yes".parse().unwrap());
            response
        }
        "/echo" => Response::new(request.into_body().boxed()),
        // Answers at once and goes on reading the body after its response has ended.
        "/answer-then-read" => {
            let mut body = request.into_body();
            tokio::spawn(async move { while let Some(Ok(_)) = body.frame().await {} });
            text(StatusCode::OK, "answered".into())
        }
        "/stall" => {
            let mut response = Response::new(StallsAfterFirstChunk { sent: false }.boxed());
            response
                .headers_mut()
                .insert("content-length", "1000".parse().unwrap());
            response
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            text(StatusCode::OK, "late".into())
        }
        // `/upgrade-forged` answers with an accept that does not match the key.
        "/upgrade" | "/upgrade-forged" => {
            let accept = match request.headers().get("sec-websocket-key") {
                Some(_) if request.uri().path() == "/upgrade-forged" => {
                    websocket_accept(b"not the key sent")
                }
                Some(key) => websocket_accept(key.as_bytes()),
                None => String::new(),
            };
            let on_upgrade = hyper::upgrade::on(&mut request);
            tokio::spawn(async move {
                if let Ok(upgraded) = on_upgrade.await {
                    let mut io = TokioIo::new(upgraded);
                    let mut buf = [0u8; 4096];
                    loop {
                        match io.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if io.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                }
            });
            let mut response = text(StatusCode::SWITCHING_PROTOCOLS, String::new());
            let headers = response.headers_mut();
            headers.insert("upgrade", "websocket".parse().unwrap());
            headers.insert("connection", "upgrade".parse().unwrap());
            headers.insert("sec-websocket-accept", accept.parse().unwrap());
            response
        }
        _ => text(StatusCode::NOT_FOUND, "no such route".into()),
    };
    Ok(response)
}

/// RFC 6455 4.2.2: base64(SHA-1(key + GUID)).
fn websocket_accept(key: &[u8]) -> String {
    use base64::Engine as _;
    let mut input = key.to_vec();
    input.extend_from_slice(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// `method path` with no body, as an HTTP/1.1 client sends it: a `host: app.example.com`
/// header, then `headers` in order.
pub fn app_request(method: Method, path: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "app.example.com");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::new(Bytes::new())).unwrap()
}

/// `GET path` on app.example.com, as an HTTP/1.1 client sends it.
pub fn get(path: &str) -> Request<Full<Bytes>> {
    app_request(Method::GET, path, &[])
}

/// `GET https://app.example.com` + `path`, as an HTTP/2 client sends it (no `host` header).
pub fn get_h2(path: &str) -> Request<Full<Bytes>> {
    Request::get(format!("https://app.example.com{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// `GET path` on app.example.com from an API client: moat's own pages come back as JSON.
pub fn json_get(path: &str) -> Request<Full<Bytes>> {
    app_request(Method::GET, path, &[("accept", "application/json")])
}

/// A response read in full.
pub struct Collected {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Collected {
    pub fn echoed_headers(&self) -> EchoedHeaders {
        EchoedHeaders::parse(std::str::from_utf8(&self.body).unwrap())
    }
}

/// The `/headers` route's body: the headers the upstream received, in order.
pub struct EchoedHeaders(Vec<(String, String)>);

impl EchoedHeaders {
    /// The headers echoed in the body of a raw HTTP/1.1 response (head, blank line, body).
    pub fn in_raw_response(raw: &str) -> EchoedHeaders {
        EchoedHeaders::parse(raw.split_once("\r\n\r\n").unwrap().1)
    }

    pub fn parse(body: &str) -> EchoedHeaders {
        EchoedHeaders(
            body.lines()
                .filter_map(|line| line.split_once(": "))
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
        )
    }

    /// Asserts that each `(name, value)` header arrived once, with that value.
    pub fn assert_once(&self, expected: &[(&str, &str)]) {
        for (name, value) in expected {
            assert_eq!(
                self.all(name),
                vec![*value],
                "{name} as the upstream saw it"
            );
        }
    }

    /// Asserts that none of `names` reached the upstream.
    pub fn assert_absent(&self, names: &[&str]) {
        for name in names {
            assert!(self.all(name).is_empty(), "{name} reached the upstream");
        }
    }

    /// Every value of `name`, in the order received.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

async fn collect(response: Response<Incoming>) -> Collected {
    let (parts, body) = response.into_parts();
    Collected {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

/// What the test clients send as a request body: [`Full`], or a body made on demand.
pub type ClientBody = BoxBody<Bytes, Infallible>;

/// A hyper client connection: HTTP/2 with prior knowledge, or HTTP/1.1.
pub enum Client {
    Http1(hyper::client::conn::http1::SendRequest<ClientBody>),
    Http2(hyper::client::conn::http2::SendRequest<ClientBody>),
}

impl Client {
    /// Connects to `addr` (HTTP/2 when `http2`); returns the client and the task driving the
    /// connection, which ends when the connection closes.
    pub async fn connect(addr: SocketAddr, http2: bool) -> (Client, JoinHandle<hyper::Result<()>>) {
        let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
        if http2 {
            let (sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .unwrap();
            (Client::Http2(sender), tokio::spawn(connection))
        } else {
            let (sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
            (Client::Http1(sender), tokio::spawn(connection))
        }
    }

    /// Sends `request` and returns the response head, its body still to read.
    pub async fn send<B>(&mut self, request: Request<B>) -> Response<Incoming>
    where
        B: hyper::body::Body<Data = Bytes, Error = Infallible> + Send + Sync + 'static,
    {
        let request = request.map(|body| body.boxed());
        match self {
            Client::Http1(sender) => sender.send_request(request).await,
            Client::Http2(sender) => sender.send_request(request).await,
        }
        .unwrap()
    }
}

/// One HTTP/1.1 request on a fresh connection.
pub async fn send_http1(addr: SocketAddr, request: Request<Full<Bytes>>) -> Collected {
    let (mut client, _) = Client::connect(addr, false).await;
    collect(client.send(request).await).await
}

/// One HTTP/2 request (prior knowledge) on a fresh connection.
pub async fn send_http2(addr: SocketAddr, request: Request<Full<Bytes>>) -> Collected {
    let (mut client, _) = Client::connect(addr, true).await;
    collect(client.send(request).await).await
}

/// Opens a connection to `addr` and writes `request` on it as it is.
pub async fn send_raw(addr: SocketAddr, request: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    stream
}

/// Writes `request` as it is on a fresh connection to `addr` and reads one response that has a
/// `content-length`, returning head and body as text.
pub async fn exchange_raw(addr: SocketAddr, request: &[u8]) -> String {
    read_response_with_length(&mut send_raw(addr, request).await).await
}

/// Reads everything until the peer closes `stream`, as UTF-8 text.
pub async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    String::from_utf8(raw).unwrap()
}

/// Asserts that the time since `started` lies in `range`; the failure names `what`.
pub fn assert_took(started: Instant, range: impl RangeBounds<Duration> + Debug, what: &str) {
    let elapsed = started.elapsed();
    assert!(
        range.contains(&elapsed),
        "{what} after {elapsed:?}, outside {range:?}"
    );
}

/// Reads from `stream` once and asserts that the peer closed it (end of stream, or an error)
/// within `range` from now; the failures name `what`.
pub async fn assert_closes(
    stream: &mut TcpStream,
    range: impl RangeBounds<Duration> + Debug,
    what: &str,
) {
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let read = stream.read(&mut buf).await.unwrap_or(0);
    assert_eq!(read, 0, "expected {what} to close");
    assert_took(started, range, &format!("{what} closed"));
}

/// Reads a response head (through the blank line) byte by byte, leaving the rest unread.
pub async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = stream.read_u8().await.unwrap();
        head.push(byte);
    }
    String::from_utf8(head).unwrap()
}

/// Reads one response that has a `content-length`, returning head and body as text.
pub async fn read_response_with_length(stream: &mut TcpStream) -> String {
    let head = read_head(stream).await;
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().unwrap())
        })
        .expect("response without content-length");
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.unwrap();
    format!("{head}{}", String::from_utf8_lossy(&body))
}
