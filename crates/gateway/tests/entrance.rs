//! A client connection handed to the gateway through an `Entrance` (as an agent hands in a
//! tunnel stream) is served as one accepted on the address: same verifier, alerts, rules,
//! identity headers and audit, with the caller's address as the client's.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use moat_config::Config;
use moat_gateway::{Entrance, EntranceClosed, Gateway, GatewayError, GatewayOptions};
use moat_telemetry::Telemetry;
use moat_telemetry::audit::{AuditLog, AuditTarget};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::AlertDescription;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

/// Every test's bound: a hang is a failure, not a stuck CI job.
const BOUND: Duration = Duration::from_secs(20);

/// The address the tests hand connections in from (RFC 5737 documentation range).
const PEER: &str = "203.0.113.7:5555";

/// A test CA and the files made with it in a scratch directory: `ca.pem`, `server.crt` and
/// `server.key` (for `app.test` and `other.test`), `alice.crt` and `alice.key` (a client).
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().expect("scratch directory");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Entrance Test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate().expect("CA key");
        let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("ca.pem");
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf = |names: Vec<String>, common_name: &str, usage, file: &str| {
            let mut params = CertificateParams::new(names).expect("leaf params");
            params
                .distinguished_name
                .push(DnType::CommonName, common_name);
            params.is_ca = IsCa::ExplicitNoCa;
            params.extended_key_usages = vec![usage];
            let key = KeyPair::generate().expect("leaf key");
            let cert = params.signed_by(&key, &issuer).expect("leaf certificate");
            std::fs::write(dir.path().join(format!("{file}.crt")), cert.pem()).expect("crt");
            std::fs::write(dir.path().join(format!("{file}.key")), key.serialize_pem())
                .expect("key");
        };
        let servers = vec!["app.test".to_owned(), "other.test".to_owned()];
        leaf(
            servers,
            "app.test",
            ExtendedKeyUsagePurpose::ServerAuth,
            "server",
        );
        leaf(
            Vec::new(),
            "alice",
            ExtendedKeyUsagePurpose::ClientAuth,
            "alice",
        );
        Files { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A rustls client trusting the test CA, presenting alice's certificate when `as_alice`.
    fn client(&self, as_alice: bool) -> tokio_rustls::TlsConnector {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_file_iter(self.path().join("ca.pem")).expect("ca.pem") {
            roots.add(ca.expect("CA")).expect("trusted CA");
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
        let config = if as_alice {
            let chain = CertificateDer::pem_file_iter(self.path().join("alice.crt"))
                .expect("alice.crt")
                .collect::<Result<Vec<_>, _>>()
                .expect("chain");
            let key = PrivateKeyDer::from_pem_file(self.path().join("alice.key")).expect("key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client auth")
        } else {
            builder.with_no_client_auth()
        };
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}

/// A running gateway with its audit log and the entrance of its (first) address.
struct Running {
    entrance: Entrance,
    audit: AuditLog,
    audit_file: std::path::PathBuf,
    stop: Option<oneshot::Sender<()>>,
    serving: JoinHandle<()>,
}

impl Running {
    /// Binds the endpoints of `toml` (read in `files`' directory) and serves them.
    async fn start(files: &Files, toml: &str) -> Running {
        Running::try_start(files, toml).await.expect("bind")
    }

    /// Like [`Running::start`] for endpoints on one fixed shared port, made by `toml_for(port)`:
    /// a port found free may be taken by another process before the gateway binds it, so a new
    /// one is tried then (up to 10 times) instead of failing the test.
    async fn start_on_shared_port(files: &Files, toml_for: impl Fn(u16) -> String) -> Running {
        for _ in 0..10 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|socket| socket.local_addr())
                .expect("a free port")
                .port();
            match Running::try_start(files, &toml_for(port)).await {
                Ok(running) => return running,
                Err(GatewayError::Bind { .. }) => continue,
                Err(error) => panic!("bind: {error}"),
            }
        }
        panic!("no free port stayed free for 10 tries");
    }

    async fn try_start(files: &Files, toml: &str) -> Result<Running, GatewayError> {
        let config = Config::from_toml_str(toml, "moat.toml", files.path()).expect("config");
        let audit_file = files.path().join("audit.jsonl");
        let audit = AuditLog::open(&AuditTarget::File(audit_file.clone())).expect("audit log");
        let options = GatewayOptions {
            moat_home: files.path().join("home"),
            telemetry: Telemetry::new(Some(audit.clone())),
            upstream_routes: None,
            strict_sni: false,
            streams_only: false,
            request_observer: None,
        };
        let gateway = Gateway::bind(&config, &options).await?;
        let local_addr = gateway.endpoints()[0].local_addr;
        let entrance = gateway.entrance(local_addr).expect("an entrance");
        assert_eq!(entrance.local_addr(), local_addr);
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            gateway.serve(shutdown).await.expect("serve");
        });
        Ok(Running {
            entrance,
            audit,
            audit_file,
            stop: Some(stop),
            serving,
        })
    }

    /// Hands a fresh in-memory connection from `peer` in, and returns the client's end.
    async fn connect_from(&self, peer: &str) -> tokio::io::DuplexStream {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let peer: SocketAddr = peer.parse().expect("peer address");
        self.entrance
            .hand_in(server, peer)
            .await
            .expect("handed in");
        client
    }

    /// Shuts the gateway down (draining its connections), then returns the audit log's lines.
    async fn stop(mut self) -> Vec<String> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.serving).await.expect("serve ended");
        self.audit.close();
        let text = std::fs::read_to_string(&self.audit_file).expect("audit log");
        text.lines().map(str::to_owned).collect()
    }
}

/// An HTTP upstream that answers 200 and sends each request's head to the returned receiver.
async fn upstream() -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    upstream_with(Arc::new(Semaphore::new(Semaphore::MAX_PERMITS))).await
}

/// [`upstream`], answering each request only once it takes a permit of `gate`.
async fn upstream_with(gate: Arc<Semaphore>) -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("upstream");
    let address = listener.local_addr().expect("upstream address");
    let (heads, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let heads = heads.clone();
            let gate = Arc::clone(&gate);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match socket.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let _ = heads.send(String::from_utf8_lossy(&head).into_owned());
                let Ok(_answer) = gate.acquire().await else {
                    return;
                };
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    (address, received)
}

/// Runs a TLS handshake for `server_name` over `stream`, sends a GET and reads the response;
/// a failure is the rustls error the client saw (e.g. the server's alert).
async fn get(
    connector: &tokio_rustls::TlsConnector,
    server_name: &str,
    stream: tokio::io::DuplexStream,
) -> Result<String, rustls::Error> {
    let as_rustls = |error: std::io::Error| {
        error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .cloned()
            .unwrap_or_else(|| rustls::Error::General(error.to_string()))
    };
    let name = ServerName::try_from(server_name.to_owned()).expect("server name");
    let mut tls = connector.connect(name, stream).await.map_err(as_rustls)?;
    let request =
        format!("GET /hello HTTP/1.1\r\nhost: {server_name}\r\nconnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.map_err(as_rustls)?;
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tls.read(&mut chunk).await {
            Ok(0) => break,
            Ok(read) => response.extend_from_slice(&chunk[..read]),
            // A response already read is the answer, however the connection ended.
            Err(_) if !response.is_empty() => break,
            Err(error) => return Err(as_rustls(error)),
        }
    }
    Ok(String::from_utf8_lossy(&response).into_owned())
}

/// Runs a test's body, failing the test when it takes longer than [`BOUND`].
async fn within_bound(test: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(BOUND, test)
        .await
        .expect("the test took too long");
}

/// The audit log's lines that contain `"name":"value"`.
fn events_with<'a>(audit: &'a [String], name: &str, value: &str) -> Vec<&'a str> {
    let field = format!("\"{name}\":\"{value}\"");
    audit
        .iter()
        .map(String::as_str)
        .filter(|line| line.contains(&field))
        .collect()
}

/// Checks that `response` is the upstream's 200 and that the request's head, the next one
/// `heads` received, carried alice's identity and the entrance's client address.
async fn assert_served_as_alice(
    response: Result<String, rustls::Error>,
    heads: &mut mpsc::UnboundedReceiver<String>,
) {
    let response = response.expect("a response");
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    let head = heads
        .recv()
        .await
        .expect("the request reached the upstream");
    let head = head.to_ascii_lowercase();
    assert!(head.contains("moat-client-subject: cn=alice"), "{head}");
    assert!(head.contains("x-forwarded-for: 203.0.113.7\r\n"), "{head}");
}

/// Checks that the client's handshake ended with the server's `alert`.
fn assert_alert(outcome: Result<String, rustls::Error>, alert: AlertDescription) {
    assert_eq!(outcome, Err(rustls::Error::AlertReceived(alert)));
}

/// One http endpoint for `domain` on `listen`, asking for certificates of the test CA.
fn http_endpoint(name: &str, domain: &str, listen: &str, upstream: SocketAddr) -> String {
    format!(
        "[[endpoints]]\nname = \"{name}\"\nkind = \"http\"\nlisten = \"{listen}\"\n\
         domain = \"{domain}\"\nupstream = \"{upstream}\"\ncrt = \"server.crt\"\n\
         key = \"server.key\"\nmutual_tls_cas = [\"ca.pem\"]\n"
    )
}

#[tokio::test]
async fn a_handed_in_client_is_served_with_its_identity_and_the_given_address() {
    within_bound(async {
        let files = Files::new();
        let (upstream, mut heads) = upstream().await;
        let toml = http_endpoint("app", "app.test", "127.0.0.1:0", upstream);
        let running = Running::start(&files, &toml).await;

        let stream = running.connect_from(PEER).await;
        let response = get(&files.client(true), "app.test", stream).await;
        assert_served_as_alice(response, &mut heads).await;

        let entrance = running.entrance.clone();
        let audit = running.stop().await;
        let events = |kind| events_with(&audit, "event", kind).len();
        assert_eq!((events("tls_handshake"), events("http_request")), (1, 1));
        for line in &audit {
            assert!(line.contains("\"peer\":\"203.0.113.7:5555\""), "{line}");
        }

        // Once the gateway has stopped, nothing more comes in.
        let (_, server) = tokio::io::duplex(1024);
        let peer = PEER.parse().expect("peer");
        let closed = entrance.hand_in(server, peer).await;
        let listen = entrance.local_addr();
        assert_eq!(closed, Err(EntranceClosed { listen }));
    })
    .await;
}

#[tokio::test]
async fn a_handed_in_client_is_refused_with_the_sockets_alerts() {
    within_bound(async {
        let files = Files::new();
        let (upstream, _heads) = upstream().await;
        // A fixed address shared by two endpoints, so that the SNI must name one of them.
        let running = Running::start_on_shared_port(&files, |port| {
            let listen = format!("127.0.0.1:{port}");
            [
                http_endpoint("app", "app.test", &listen, upstream),
                http_endpoint("other", "other.test", &listen, upstream),
            ]
            .concat()
        })
        .await;

        let stream = running.connect_from(PEER).await;
        let without_certificate = get(&files.client(false), "app.test", stream).await;
        assert_alert(without_certificate, AlertDescription::CertificateRequired);
        let stream = running.connect_from(PEER).await;
        let unknown_name = get(&files.client(true), "unknown.test", stream).await;
        assert_alert(unknown_name, AlertDescription::UnrecognisedName);

        let audit = running.stop().await;
        let refusals = events_with(&audit, "event", "tls_handshake");
        assert_eq!(refusals.len(), 2, "{audit:?}");
        for (line, reason) in refusals.iter().zip(["no_certificate", "unrecognized_name"]) {
            assert!(line.contains(&format!("\"reason\":\"{reason}\"")), "{line}");
            assert!(line.contains("\"peer\":\"203.0.113.7:5555\""), "{line}");
        }
    })
    .await;
}

#[tokio::test]
async fn a_rule_on_the_client_address_judges_the_address_handed_in() {
    within_bound(async {
        let files = Files::new();
        let (upstream, _heads) = upstream().await;
        let toml = http_endpoint("app", "app.test", "127.0.0.1:0", upstream)
            + "[[endpoints.rules]]\nname = \"documentation-net\"\naction = \"allow\"\n\
               include = [{ source_ip = \"203.0.113.0/24\" }]\n";
        let running = Running::start(&files, &toml).await;
        let alice = files.client(true);

        let allowed = get(&alice, "app.test", running.connect_from(PEER).await).await;
        let allowed = allowed.expect("a response");
        assert!(allowed.starts_with("HTTP/1.1 200 OK"), "{allowed}");
        let elsewhere = "198.51.100.9:5555";
        let denied = get(&alice, "app.test", running.connect_from(elsewhere).await).await;
        let denied = denied.expect("a response");
        assert!(denied.starts_with("HTTP/1.1 403 Forbidden"), "{denied}");
        assert!(
            denied.contains("Access denied by rule &quot;documentation-net&quot;"),
            "{denied}"
        );
        running.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_tls_endpoints_rule_and_proxy_header_see_the_address_handed_in() {
    within_bound(async {
        let files = Files::new();
        let (upstream, mut heads) = upstream().await;
        let toml = format!(
            "[[endpoints]]\nname = \"raw\"\nkind = \"tls\"\nlisten = \"127.0.0.1:0\"\n\
             domain = \"app.test\"\nupstream = \"tcp://{upstream}\"\ncrt = \"server.crt\"\n\
             key = \"server.key\"\nmutual_tls_cas = [\"ca.pem\"]\nupstream_proxy_protocol = 1\n\
             [[endpoints.rules]]\nname = \"documentation-net\"\naction = \"allow\"\n\
             include = [{{ source_ip = \"203.0.113.0/24\" }}]\n"
        );
        let running = Running::start(&files, &toml).await;
        let alice = files.client(true);
        let local = running.entrance.local_addr();

        let allowed = get(&alice, "app.test", running.connect_from(PEER).await).await;
        let allowed = allowed.expect("a response");
        assert!(allowed.starts_with("HTTP/1.1 200 OK"), "{allowed}");
        let head = heads.recv().await.expect("the bytes reached the upstream");
        let proxy_line = format!(
            "PROXY TCP4 203.0.113.7 {} 5555 {}\r\n",
            local.ip(),
            local.port()
        );
        assert!(head.starts_with(&proxy_line), "{head}");

        let elsewhere = "198.51.100.9:5555";
        let denied = get(&alice, "app.test", running.connect_from(elsewhere).await).await;
        assert_alert(denied, AlertDescription::AccessDenied);
        let audit = running.stop().await;
        let refused = events_with(&audit, "reason", "policy_denied");
        assert_eq!(refused.len(), 1, "{audit:?}");
        assert!(
            refused[0].contains("\"peer\":\"198.51.100.9:5555\""),
            "{refused:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn handed_in_connections_take_the_sockets_permits_and_are_drained_at_shutdown() {
    within_bound(async {
        let files = Files::new();
        let gate = Arc::new(Semaphore::new(0));
        let (upstream, mut heads) = upstream_with(Arc::clone(&gate)).await;
        let toml = "max_connections = 1\n".to_owned()
            + &http_endpoint("app", "app.test", "127.0.0.1:0", upstream);
        let running = Running::start(&files, &toml).await;
        let alice = files.client(true);

        // A handed-in client takes the only permit: its request waits at the upstream.
        let kept = running.connect_from(PEER).await;
        let kept = tokio::spawn({
            let alice = alice.clone();
            async move { get(&alice, "app.test", kept).await }
        });
        heads
            .recv()
            .await
            .expect("the request reached the upstream");

        // None is left for a client of the socket, nor for another one handed in.
        let socket = tokio::net::TcpStream::connect(running.entrance.local_addr())
            .await
            .expect("connect");
        let name = ServerName::try_from("app.test").expect("server name");
        let on_socket = alice.connect(name, socket).await;
        assert!(on_socket.is_err(), "the socket's client was let in");
        let handed_in = get(&alice, "app.test", running.connect_from(PEER).await).await;
        assert!(handed_in.is_err(), "{handed_in:?}");

        // Shutdown stops the entrance, and lets the request in flight finish.
        let entrance = running.entrance.clone();
        let audit = tokio::spawn(running.stop());
        entrance.closed().await;
        gate.add_permits(1);
        let response = kept.await.expect("client task").expect("a response");
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        let audit = audit.await.expect("stopped");
        let limited = events_with(&audit, "reason", "connection_limit");
        assert_eq!(limited.len(), 2, "{audit:?}");
        assert!(
            limited[0].contains("\"peer\":\"127.0.0.1:"),
            "{}",
            limited[0]
        );
        assert!(
            limited[1].contains("\"peer\":\"203.0.113.7:5555\""),
            "{}",
            limited[1]
        );
    })
    .await;
}

/// The whole terminate-at-agent path below the edge and agent commands: a public client's raw
/// TLS bytes cross a tunnel session (edge → agent) and the agent hands the stream to its
/// gateway with the client address from the stream header. The gateway judges the client as if
/// it had connected directly: alice is served with her identity and address, a client without
/// a certificate gets the `certificate_required` alert through the tunnel.
#[tokio::test]
async fn a_client_relayed_through_a_tunnel_session_is_judged_by_the_agents_gateway() {
    use moat_tunnel::{AgentSession, EdgeSession, SessionSettings, StreamHeader};

    within_bound(async {
        let files = Files::new();
        let (upstream, mut heads) = upstream().await;
        let toml = http_endpoint("app", "app.test", "127.0.0.1:0", upstream);
        let running = Running::start(&files, &toml).await;

        // The agent dials the edge over loopback TCP; the tunnel runs over that connection.
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("edge listener");
        let edge_addr = listener.local_addr().expect("edge address");
        let (accepted, dialled) =
            tokio::join!(listener.accept(), tokio::net::TcpStream::connect(edge_addr));
        let settings = SessionSettings::default();
        let (edge, agent) = tokio::join!(
            EdgeSession::handshake(accepted.expect("accepted").0, &settings),
            AgentSession::handshake(dialled.expect("dialled"), &settings)
        );
        let (edge, mut agent) = (edge.expect("edge session"), agent.expect("agent session"));

        // The agent: every stream goes to the gateway, from the client the header names.
        let entrance = running.entrance.clone();
        tokio::spawn(async move {
            while let Some((header, stream)) = agent.accept().await {
                if entrance.hand_in(stream, header.client_addr).await.is_err() {
                    return;
                }
            }
        });
        // The edge: relays one public client's bytes, untouched, over a new stream.
        let relay = |client_end: tokio::io::DuplexStream| {
            let header = StreamHeader {
                endpoint: "app.test".to_owned(),
                client_addr: PEER.parse().expect("peer"),
                server_addr: "192.0.2.1:443".parse().expect("public address"),
                sni: Some("app.test".to_owned()),
                terminated_at_edge: false,
                client_identity: None,
            };
            let opener = edge.opener();
            tokio::spawn(async move {
                let mut public = client_end;
                let mut tunnel = opener.open_stream(&header).await.expect("a tunnel stream");
                let _ = tokio::io::copy_bidirectional(&mut public, &mut tunnel).await;
            });
        };

        let (client, public) = tokio::io::duplex(64 * 1024);
        relay(public);
        let response = get(&files.client(true), "app.test", client).await;
        assert_served_as_alice(response, &mut heads).await;

        let (client, public) = tokio::io::duplex(64 * 1024);
        relay(public);
        let refused = get(&files.client(false), "app.test", client).await;
        assert_alert(refused, AlertDescription::CertificateRequired);

        let audit = running.stop().await;
        let refusals = events_with(&audit, "reason", "no_certificate");
        assert_eq!(refusals.len(), 1, "{audit:?}");
        for line in &audit {
            assert!(line.contains("\"peer\":\"203.0.113.7:5555\""), "{line}");
        }
    })
    .await;
}
