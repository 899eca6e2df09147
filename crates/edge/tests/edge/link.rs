//! The agent link over real TCP on 127.0.0.1 and real rustls: joining, dialing a tunnel, and every refusal.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use moat_edge::link::{AGENT_LISTENER_DIR, LISTENER_CERT_FILE, LISTENER_KEY_FILE};
use moat_edge::{
    AgentCredentials, AgentInfo, AgentListenerTls, Arrival, EdgeState, JoinError, JoinToken,
    JoinedAgent, LinkError, RedeemError, TokenError, accept, dial, join, serve_join,
};
use moat_trust::ClientIdentity;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use tempfile::TempDir;
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::support::{assert_private, globs};

/// Every wait in these tests; a healthy run takes milliseconds.
const WAIT: Duration = Duration::from_secs(10);

/// What the edge made of one connection.
#[derive(Debug)]
enum Outcome {
    Joined(Result<JoinedAgent, LinkError>),
    Tunnel(ClientIdentity),
    Refused(LinkError),
}

/// An edge's agent listener on 127.0.0.1, serving connections one after another.
struct Edge {
    state: Arc<EdgeState>,
    address: String,
    outcomes: mpsc::UnboundedReceiver<Outcome>,
    dir: TempDir,
}

impl Edge {
    async fn start(agent_cas: Option<&Path>) -> Edge {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let state = Arc::new(
            EdgeState::open(
                dir.path(),
                agent_cas,
                crate::support::store(dir.path()).await,
            )
            .await
            .expect("the edge state"),
        );
        let tls = AgentListenerTls::open(&state, &["edge.example.com".to_owned()])
            .expect("the listener's TLS");
        let acceptor = tls.acceptor();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let address = listener.local_addr().expect("its address").to_string();
        let (sender, outcomes) = mpsc::unbounded_channel();
        let serving = Arc::clone(&state);
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let outcome = match accept(&acceptor, tcp, WAIT).await {
                    Ok(Arrival::Join(stream)) => {
                        Outcome::Joined(serve_join(stream, Arc::clone(&serving)).await)
                    }
                    Ok(Arrival::Tunnel { agent, stream }) => {
                        drop(stream);
                        Outcome::Tunnel(*agent)
                    }
                    Err(error) => Outcome::Refused(error),
                };
                if sender.send(outcome).is_err() {
                    return;
                }
            }
        });
        Edge {
            state,
            address,
            outcomes,
            dir,
        }
    }

    /// A token for this listener's address granting `*.a.example.com`, made at `made_at` for an hour.
    async fn token_made_at(&self, made_at: u64) -> JoinToken {
        self.state
            .new_token(
                &self.address,
                globs(&["*.a.example.com"]),
                Duration::from_secs(3600),
                made_at,
            )
            .await
            .expect("a token")
            .0
    }

    async fn token(&self) -> JoinToken {
        self.token_made_at(now()).await
    }

    async fn next(&mut self) -> Outcome {
        tokio::time::timeout(WAIT, self.outcomes.recv())
            .await
            .expect("the edge handled the connection in time")
            .expect("the edge runs")
    }

    fn agent_ca_pem(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent-ca/ca.crt")).expect("the agent CA")
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// The token's text with one JSON field replaced: the secret stays valid, the rest lies.
fn altered(token: &JoinToken, field: &str, value: serde_json::Value) -> String {
    let text = token.to_text();
    let body = text
        .strip_prefix("moat-join-1.")
        .expect("a version 1 token");
    let mut json: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).expect("base64url")).expect("JSON");
    json[field] = value;
    format!(
        "moat-join-1.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&json).expect("JSON"))
    )
}

/// A CA the edge has never heard of, and a client certificate from it.
struct Foreign {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Foreign {
    fn ca() -> Foreign {
        let key = KeyPair::generate().expect("a key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("parameters");
        params
            .distinguished_name
            .push(DnType::CommonName, "someone else's CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let certificate = params.self_signed(&key).expect("a CA");
        Foreign {
            ca_pem: certificate.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// (key PEM, certificate PEM) of a client certificate with this CN.
    fn client(&self, common_name: &str) -> (String, String) {
        let key = KeyPair::generate().expect("a key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("parameters");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let certificate = params.signed_by(&key, &self.issuer).expect("a certificate");
        (key.serialize_pem(), certificate.pem())
    }
}

/// A rustls client for the edge's listener: trusts the agent CA, no client certificate.
async fn anonymous_client(
    edge: &Edge,
    alpn: Option<&[u8]>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(edge.agent_ca_pem().as_bytes()).expect("the CA's DER"))
        .expect("a root");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.into_iter().map(<[u8]>::to_vec).collect();
    let tcp = tokio::net::TcpStream::connect(&edge.address).await?;
    let name = ServerName::try_from("127.0.0.1").expect("a server name");
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

#[tokio::test]
async fn an_agent_joins_then_dials_a_tunnel_as_its_name() {
    let mut edge = Edge::start(None).await;
    let token = edge.token().await;
    let agent_dir = tempfile::tempdir().expect("a temporary directory");
    let home = agent_dir.path().join("agent");

    let credentials = join(&token.to_text(), &home, Some("web-1"))
        .await
        .expect("the agent joins");
    assert_eq!(credentials.agent_name(), "web-1");
    assert_eq!(credentials.edge(), edge.address);
    assert_eq!(credentials.grant(), ["*.a.example.com"]);
    match edge.next().await {
        Outcome::Joined(Ok(joined)) => assert_eq!(joined.agent_name.as_str(), "web-1"),
        other => panic!("the edge should have joined the agent: {other:?}"),
    }
    for file in ["agent.key", "agent.crt", "edge-ca.pem", "agent.json"] {
        assert!(home.join(file).is_file(), "{file} is written");
    }
    assert_private(&home.join("agent.key"));
    let listener_dir = edge.dir.path().join(AGENT_LISTENER_DIR);
    assert!(listener_dir.join(LISTENER_CERT_FILE).is_file());
    assert_private(&listener_dir.join(LISTENER_KEY_FILE));

    let loaded = AgentCredentials::load(&home).expect("the credentials load");
    assert_eq!(loaded.agent_name(), "web-1");
    assert_eq!(loaded.grant(), credentials.grant());

    let stream = dial(&loaded, loaded.edge(), WAIT)
        .await
        .expect("the agent dials a tunnel");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(moat_tunnel::ALPN));
    match edge.next().await {
        Outcome::Tunnel(agent) => {
            assert_eq!(agent.common_name.as_deref(), Some("web-1"));
            assert_eq!(agent.issuer, "CN=moat edge agent CA");
        }
        other => panic!("the edge should have accepted a tunnel: {other:?}"),
    }
}

#[tokio::test]
async fn an_agent_that_asks_for_no_name_is_given_one() {
    let mut edge = Edge::start(None).await;
    let token = edge.token().await;
    let home = tempfile::tempdir().expect("a temporary directory");
    let credentials = join(&token.to_text(), home.path(), None)
        .await
        .expect("the agent joins");
    assert_eq!(
        credentials.agent_name(),
        // The edge names it after the first 12 digits of the token's id.
        format!("agent-{}", &token.id.as_str()[..12])
    );
    assert!(matches!(edge.next().await, Outcome::Joined(Ok(_))));
}

#[tokio::test]
async fn a_token_works_once() {
    let mut edge = Edge::start(None).await;
    let token = edge.token().await;
    let first = tempfile::tempdir().expect("a temporary directory");
    join(&token.to_text(), first.path(), Some("web-1"))
        .await
        .expect("the first join");
    assert!(matches!(edge.next().await, Outcome::Joined(Ok(_))));

    let second = tempfile::tempdir().expect("a temporary directory");
    let error = join(&token.to_text(), second.path(), Some("web-2"))
        .await
        .expect_err("a used token is refused");
    let LinkError::Refused { message, .. } = &error else {
        panic!("the edge should refuse: {error}");
    };
    assert!(message.contains("was already used"), "{message}");
    match edge.next().await {
        Outcome::Joined(Err(LinkError::JoinRefused { source, .. })) => assert!(matches!(
            *source,
            JoinError::Redeem(RedeemError::AlreadyUsed { .. })
        )),
        other => panic!("the edge should report the refusal: {other:?}"),
    }
    assert!(!second.path().join("agent.key").exists(), "nothing written");
}

#[tokio::test]
async fn an_expired_token_fails_before_dialing() {
    let mut edge = Edge::start(None).await;
    let token = edge.token_made_at(now() - 7200).await;
    let home = tempfile::tempdir().expect("a temporary directory");
    let error = join(&token.to_text(), home.path(), None)
        .await
        .expect_err("an expired token");
    assert!(
        matches!(error, LinkError::Token(TokenError::Expired(_))),
        "{error}"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(200), edge.outcomes.recv())
            .await
            .is_err(),
        "the agent never connected"
    );
}

#[tokio::test]
async fn a_token_whose_edge_record_expired_is_refused_by_the_edge() {
    let mut edge = Edge::start(None).await;
    let token = edge.token_made_at(now() - 7200).await;
    // The text now claims another hour; the edge goes by its own record.
    let text = altered(&token, "expires", serde_json::json!(now() + 3600));
    let home = tempfile::tempdir().expect("a temporary directory");
    let error = join(&text, home.path(), None)
        .await
        .expect_err("the edge refuses");
    let LinkError::Refused { message, .. } = &error else {
        panic!("the edge should refuse: {error}");
    };
    assert!(message.contains("expired"), "{message}");
    assert!(matches!(
        edge.next().await,
        Outcome::Joined(Err(LinkError::JoinRefused { .. }))
    ));
}

#[tokio::test]
async fn an_edge_without_the_pinned_ca_is_refused_and_the_token_stays_unspent() {
    let mut edge = Edge::start(None).await;
    let token = edge.token().await;
    let text = altered(&token, "ca_sha256", serde_json::json!("ab".repeat(32)));
    let home = tempfile::tempdir().expect("a temporary directory");
    let error = join(&text, home.path(), Some("web-1"))
        .await
        .expect_err("the pin does not match");
    assert!(
        matches!(error, LinkError::NotTheTokensEdge { .. }),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("is not the edge the join token was made for"),
        "{error}"
    );
    // The agent aborted the handshake: the edge never saw the token.
    match edge.next().await {
        Outcome::Refused(error @ LinkError::Handshake { .. }) => {
            let message = error.to_string();
            assert!(message.contains("received fatal alert"), "{message}");
            assert!(
                message.contains("the agent refused the edge's certificate"),
                "{message}"
            );
        }
        other => panic!("the edge should see an aborted handshake: {other:?}"),
    }
    assert!(!home.path().join("agent.key").exists(), "nothing written");

    join(&token.to_text(), home.path(), Some("web-1"))
        .await
        .expect("the unaltered token still works");
    assert!(matches!(edge.next().await, Outcome::Joined(Ok(_))));
}

#[tokio::test]
async fn an_agent_certificate_from_a_foreign_ca_fails_the_handshake() {
    let mut edge = Edge::start(None).await;
    let foreign = Foreign::ca();
    let (key_pem, certificate_pem) = foreign.client("intruder");
    let info = AgentInfo {
        edge: edge.address.clone(),
        agent_name: "intruder".to_owned(),
        grant: Vec::new(),
    };
    let credentials =
        AgentCredentials::from_pem(info, key_pem, certificate_pem, edge.agent_ca_pem())
            .expect("well-formed credentials");

    // TLS 1.3: the client finishes its side before the edge judges its certificate, so the
    // refusal arrives as an alert on the first read.
    let client_side = match dial(&credentials, &edge.address, WAIT).await {
        Ok(mut stream) => {
            let mut byte = [0u8; 1];
            stream
                .read(&mut byte)
                .await
                .expect_err("the edge refuses with an alert")
                .to_string()
        }
        Err(error) => error.to_string(),
    };
    assert!(
        client_side.contains("UnknownCA"),
        "the agent sees unknown_ca: {client_side}"
    );
    match edge.next().await {
        Outcome::Refused(error @ LinkError::Handshake { .. }) => {
            let message = error.to_string();
            assert!(message.contains("UnknownIssuer"), "{message}");
            assert!(
                message.contains("not from a CA the edge trusts for agents"),
                "{message}"
            );
        }
        other => panic!("the edge should refuse the handshake: {other:?}"),
    }
}

#[tokio::test]
async fn a_tunnel_without_a_client_certificate_is_refused() {
    let mut edge = Edge::start(None).await;
    let mut stream = anonymous_client(&edge, Some(moat_tunnel::ALPN))
        .await
        .expect("the handshake itself completes: the certificate is optional for joins");
    match edge.next().await {
        Outcome::Refused(error @ LinkError::NoClientCertificate { .. }) => {
            assert!(error.to_string().contains("join the edge first"), "{error}")
        }
        other => panic!("the edge should refuse the tunnel: {other:?}"),
    }
    let mut byte = [0u8; 1];
    let read = stream.read(&mut byte).await;
    assert!(
        !matches!(read, Ok(n) if n > 0),
        "the connection is dropped: {read:?}"
    );
}

#[tokio::test]
async fn a_connection_without_alpn_is_refused() {
    let mut edge = Edge::start(None).await;
    let _stream = anonymous_client(&edge, None)
        .await
        .expect("the handshake completes");
    match edge.next().await {
        Outcome::Refused(error @ LinkError::Alpn { .. }) => {
            assert!(
                error.to_string().contains("negotiated ALPN none"),
                "{error}"
            )
        }
        other => panic!("the edge should refuse: {other:?}"),
    }
}

#[tokio::test]
async fn with_operator_cas_agents_of_those_cas_dial_and_the_listener_keeps_the_edges_own_ca() {
    let operator = Foreign::ca();
    let cas_dir = tempfile::tempdir().expect("a temporary directory");
    let cas_file = cas_dir.path().join("agent-cas.pem");
    std::fs::write(&cas_file, &operator.ca_pem).expect("the CA bundle");
    let mut edge = Edge::start(Some(&cas_file)).await;

    let (key_pem, certificate_pem) = operator.client("branch-office");
    let info = AgentInfo {
        edge: edge.address.clone(),
        agent_name: "branch-office".to_owned(),
        grant: Vec::new(),
    };
    // The listener's certificate still chains to the edge's own agent CA.
    let credentials =
        AgentCredentials::from_pem(info, key_pem, certificate_pem, edge.agent_ca_pem())
            .expect("well-formed credentials");
    dial(&credentials, &edge.address, WAIT)
        .await
        .expect("the operator's agent dials");
    match edge.next().await {
        Outcome::Tunnel(agent) => {
            assert_eq!(agent.common_name.as_deref(), Some("branch-office"))
        }
        other => panic!("the edge should accept the tunnel: {other:?}"),
    }
}

#[tokio::test]
async fn the_listener_certificate_is_kept_until_its_names_change() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let state = EdgeState::open(dir.path(), None, crate::support::store(dir.path()).await)
        .await
        .expect("the edge state");
    let names = ["edge.example.com".to_owned(), "203.0.113.7".to_owned()];
    let certificate = || {
        std::fs::read_to_string(dir.path().join(AGENT_LISTENER_DIR).join(LISTENER_CERT_FILE))
            .expect("the listener certificate")
    };
    let first = AgentListenerTls::open(&state, &names).expect("first open");
    let issued = certificate();
    AgentListenerTls::open(&state, &names).expect("second open");
    assert_eq!(certificate(), issued, "same names: same certificate");
    // Another spelling of the same names changes nothing either.
    AgentListenerTls::open(
        &state,
        &["203.0.113.7".to_owned(), "EDGE.example.com".to_owned()],
    )
    .expect("third open");
    assert_eq!(certificate(), issued);

    let reissued =
        AgentListenerTls::open(&state, &["edge2.example.com".to_owned()]).expect("new names");
    assert_ne!(certificate(), issued, "new names: new certificate");
    assert_eq!(first.ca_fingerprint(), reissued.ca_fingerprint());

    let error = AgentListenerTls::open(&state, &["not a name".to_owned()]).expect_err("a bad name");
    assert!(matches!(error, LinkError::ListenerName { .. }), "{error}");
}

#[test]
fn missing_credentials_say_to_join_first() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let error = AgentCredentials::load(dir.path()).expect_err("nothing there");
    assert!(matches!(error, LinkError::NoCredentials { .. }), "{error}");
    assert!(error.to_string().contains("join the edge first"), "{error}");
}
