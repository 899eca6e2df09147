//! Shared test fixtures: certificates (rcgen and openssl), an in-memory TLS handshake, log capture.

#![allow(dead_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use moat_trust::{CaBundle, ClientVerifier, RefusalReason};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SerialNumber,
};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName};
use rustls::{
    AlertDescription, ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection,
};
use time::{Duration, OffsetDateTime};

/// A CA that can sign leafs, intermediates and CRLs.
pub struct Ca {
    pub der: CertificateDer<'static>,
    pub pem: String,
    pub issuer: Issuer<'static, KeyPair>,
}

/// Makes a self-signed root CA named `name`.
pub fn root_ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let params = ca_params(name);
    let cert = params.self_signed(&key).unwrap();
    Ca {
        der: cert.der().clone(),
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// Makes an intermediate CA named `name` under `parent`.
pub fn intermediate_ca(name: &str, parent: &Ca, serial: u64) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = ca_params(name);
    params.serial_number = Some(SerialNumber::from(serial));
    let cert = params.signed_by(&key, &parent.issuer).unwrap();
    Ca {
        der: cert.der().clone(),
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.key_identifier_method = KeyIdMethod::Sha256;
    params.not_before = OffsetDateTime::now_utc() - Duration::days(1);
    params.not_after = OffsetDateTime::now_utc() + Duration::days(30);
    params
}

/// A client certificate with its key and the chain to send (leaf first).
pub struct Leaf {
    pub der: CertificateDer<'static>,
    pub pem: String,
    pub key: KeyPair,
    pub chain: Vec<CertificateDer<'static>>,
}

impl Leaf {
    /// The client credentials for a rustls ClientConfig.
    pub fn credentials(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (
            self.chain.clone(),
            PrivateKeyDer::try_from(self.key.serialize_der()).unwrap(),
        )
    }
}

/// What a test leaf looks like; `Default` is a valid client certificate.
pub struct LeafSpec {
    pub common_name: String,
    pub serial: u64,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub extended_key_usages: Vec<ExtendedKeyUsagePurpose>,
}

impl Default for LeafSpec {
    fn default() -> Self {
        LeafSpec {
            common_name: "client".to_owned(),
            serial: 1001,
            not_before: OffsetDateTime::now_utc() - Duration::hours(1),
            not_after: OffsetDateTime::now_utc() + Duration::days(7),
            extended_key_usages: vec![ExtendedKeyUsagePurpose::ClientAuth],
        }
    }
}

/// Issues a leaf under `issuer`; `intermediates` are appended to the chain the client sends.
pub fn leaf(spec: LeafSpec, issuer: &Ca, intermediates: &[&Ca]) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, spec.common_name);
    params.serial_number = Some(SerialNumber::from(spec.serial));
    params.not_before = spec.not_before;
    params.not_after = spec.not_after;
    params.extended_key_usages = spec.extended_key_usages;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, &issuer.issuer).unwrap();
    let mut chain = vec![cert.der().clone()];
    chain.extend(intermediates.iter().map(|ca| ca.der.clone()));
    Leaf {
        der: cert.der().clone(),
        pem: cert.pem(),
        key,
        chain,
    }
}

/// A valid client certificate with serial `serial` under `issuer`.
pub fn client(issuer: &Ca, serial: u64) -> Leaf {
    leaf(
        LeafSpec {
            serial,
            ..LeafSpec::default()
        },
        issuer,
        &[],
    )
}

/// A CRL in both encodings.
pub struct Crl {
    pub der: CertificateRevocationListDer<'static>,
    pub pem: String,
}

/// A CRL by `issuer` revoking `serials`, current for the next week.
pub fn crl(issuer: &Ca, serials: &[u64]) -> Crl {
    let now = OffsetDateTime::now_utc();
    crl_dated(
        issuer,
        serials,
        now - Duration::hours(1),
        now + Duration::days(7),
    )
}

/// A CRL by `issuer` revoking `serials` with the given thisUpdate and nextUpdate.
pub fn crl_dated(
    issuer: &Ca,
    serials: &[u64],
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
) -> Crl {
    let now = OffsetDateTime::now_utc();
    let params = CertificateRevocationListParams {
        this_update,
        next_update,
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: serials
            .iter()
            .map(|&serial| RevokedCertParams {
                serial_number: SerialNumber::from(serial),
                revocation_time: now - Duration::minutes(5),
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let crl = params.signed_by(&issuer.issuer).unwrap();
    Crl {
        der: crl.der().clone(),
        pem: crl.pem().unwrap(),
    }
}

/// Two root CAs named `first` and `second`, written one after the other as `dir/cas.pem`.
pub fn two_roots(dir: &Path, first: &str, second: &str) -> (Ca, Ca, PathBuf) {
    let (one, two) = (root_ca(first), root_ca(second));
    let path = write(dir, "cas.pem", format!("{}{}", one.pem, two.pem));
    (one, two, path)
}

/// A bundle of the one CA `ca`, loaded from a PEM file as the gateway loads it.
pub fn bundle_of(ca: &Ca) -> CaBundle {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "ca.pem", &ca.pem);
    CaBundle::from_files(&[path]).unwrap()
}

/// Writes `contents` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// Runs openssl in `dir` and panics with its stderr when it fails.
pub fn openssl(dir: &Path, args: &[&str]) -> String {
    run(dir, "openssl", args)
}

/// Runs a program in `dir` and panics with its stderr when it fails.
pub fn run(dir: &Path, program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The ngrok guide's CA and X.509 v1 client (seeds/000) made by openssl in `dir`, with a 2048-bit
/// unencrypted CA key for speed: files ca.key, ca.crt, `name`.key, `name`.csr, `name`.crt.
pub fn openssl_v1_client(dir: &Path, ca_subject: &str, name: &str) {
    if !dir.join("ca.crt").exists() {
        openssl_root(dir, "ca", ca_subject, "365");
    }
    openssl_v1_leaf(dir, "ca", name);
}

/// An RSA key `name.key` and a request `name.csr` for `/CN=name`.
pub fn openssl_key_and_request(dir: &Path, name: &str) {
    openssl_key_and_request_for(dir, name, &format!("/CN={name}"));
}

/// An RSA key `name.key` and a request `name.csr` for `subject`.
pub fn openssl_key_and_request_for(dir: &Path, name: &str, subject: &str) {
    let key = format!("{name}.key");
    openssl(dir, &["genrsa", "-out", &key, "2048"]);
    openssl_request(dir, &key, &format!("{name}.csr"), subject);
}

/// A request `csr` for `subject` with the existing key `key`.
pub fn openssl_request(dir: &Path, key: &str, csr: &str, subject: &str) {
    openssl(
        dir,
        &["req", "-new", "-key", key, "-out", csr, "-subj", subject],
    );
}

/// A self-signed RSA CA, `name.key` and `name.crt`, for `subject`, valid `days` days.
pub fn openssl_root(dir: &Path, name: &str, subject: &str, days: &str) {
    let (key, crt) = (format!("{name}.key"), format!("{name}.crt"));
    openssl(dir, &["genrsa", "-out", &key, "2048"]);
    let args = [
        "req", "-new", "-x509", "-sha256", "-days", days, "-key", &key, "-out", &crt,
    ];
    openssl(dir, &[&args[..], &["-subj", subject]].concat());
}

/// `csr` signed into `out` by the openssl CA `ca` (`ca.crt`, `ca.key`) with `openssl x509 -req
/// -sha256`, valid `days` days, with serial `serial`, plus any `extra` arguments.
pub fn openssl_x509_sign(
    dir: &Path,
    csr: &str,
    ca: &str,
    out: &str,
    days: &str,
    serial: &str,
    extra: &[&str],
) {
    let (ca_crt, ca_key) = (format!("{ca}.crt"), format!("{ca}.key"));
    let args = [
        "x509",
        "-req",
        "-days",
        days,
        "-sha256",
        "-in",
        csr,
        "-CA",
        &ca_crt,
        "-CAkey",
        &ca_key,
        "-set_serial",
        serial,
        "-out",
        out,
    ];
    openssl(dir, &[&args[..], extra].concat());
}

/// Signs a v1 client `name` with the openssl CA `ca` (ca.crt/ca.key in `dir`) as seeds/000 does.
pub fn openssl_v1_leaf(dir: &Path, ca: &str, name: &str) {
    let csr = format!("{name}.csr");
    let crt = format!("{name}.crt");
    openssl_key_and_request(dir, name);
    let serial = format!("0x{}", openssl(dir, &["rand", "-hex", "16"]).trim());
    openssl_x509_sign(dir, &csr, ca, &crt, "365", &serial, &[]);
}

/// A client's chain and key, as the rustls client config takes them.
pub type Credentials = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// The one-certificate chain `name.crt` and key `name.key` that openssl wrote in `dir`.
pub fn credentials_of(dir: &Path, name: &str) -> Credentials {
    (
        vec![read_cert(&dir.join(format!("{name}.crt")))],
        read_key(&dir.join(format!("{name}.key"))),
    )
}

/// Reads the first certificate of a PEM file.
pub fn read_cert(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).unwrap()
}

/// Reads the key of a PEM file.
pub fn read_key(path: &Path) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_file(path).unwrap()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The server's own certificate: a throwaway self-signed `localhost`, trusted by the test client.
struct ServerIdentity {
    der: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

fn server_identity() -> &'static ServerIdentity {
    static IDENTITY: std::sync::OnceLock<ServerIdentity> = std::sync::OnceLock::new();
    IDENTITY.get_or_init(|| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        ServerIdentity {
            der: cert.der().clone(),
            key: PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        }
    })
}

/// A rustls server using `verifier`, for the given TLS versions.
pub fn server_config(
    verifier: Arc<ClientVerifier>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ServerConfig> {
    let identity = server_identity();
    Arc::new(
        ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![identity.der.clone()], identity.key.clone_key())
            .unwrap(),
    )
}

/// A rustls client that trusts the test server and sends `credentials` when given.
pub fn client_config(
    credentials: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(server_identity().der.clone()).unwrap();
    let server_verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .unwrap();
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_webpki_verifier(server_verifier);
    Arc::new(match credentials {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
        None => builder.with_no_client_auth(),
    })
}

/// A rustls client that sends `chain` as is, even when it does not parse, to test the server's
/// handling of malformed certificates (the normal builder checks that the key matches the leaf).
pub fn client_config_sending_raw_chain(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Arc<ClientConfig> {
    #[derive(Debug)]
    struct Fixed(Arc<rustls::sign::CertifiedKey>);
    impl rustls::client::ResolvesClientCert for Fixed {
        fn resolve(
            &self,
            _hints: &[&[u8]],
            _schemes: &[rustls::SignatureScheme],
        ) -> Option<Arc<rustls::sign::CertifiedKey>> {
            Some(self.0.clone())
        }
        fn has_certs(&self) -> bool {
            true
        }
    }
    let signing_key = provider().key_provider.load_private_key(key).unwrap();
    let certified = Arc::new(rustls::sign::CertifiedKey::new(chain, signing_key));
    let mut roots = RootCertStore::empty();
    roots.add(server_identity().der.clone()).unwrap();
    Arc::new(
        ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_cert_resolver(Arc::new(Fixed(certified))),
    )
}

/// How an in-memory handshake ended on each side.
#[derive(Debug)]
pub struct Outcome {
    /// The client's error, e.g. `AlertReceived(UnknownCA)`; `Ok` when it read the server's greeting.
    pub client: Result<(), rustls::Error>,
    /// The server's error, e.g. `InvalidCertificate(UnknownIssuer)`; `Ok` when the handshake completed.
    pub server: Result<(), rustls::Error>,
    /// True when the client read application data from the server: the handshake was accepted.
    pub accepted: bool,
}

/// Runs a full handshake in memory, then has the server send application data so that a client
/// refused after its last flight (TLS 1.3) sees the alert. Bounded by a fixed number of rounds.
pub fn handshake(server_config: Arc<ServerConfig>, client_config: Arc<ClientConfig>) -> Outcome {
    let mut client =
        ClientConnection::new(client_config, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut server = ServerConnection::new(server_config).unwrap();
    let mut client_result = Ok(());
    let mut server_result = Ok(());
    let mut greeted = false;
    for _ in 0..16 {
        let to_server = flight(&mut *client);
        if server_result.is_ok() {
            server_result = deliver(&to_server, &mut *server);
        }
        if server_result.is_ok() && !server.is_handshaking() && !greeted {
            server.writer().write_all(b"hello").unwrap();
            greeted = true;
        }
        let to_client = flight(&mut *server);
        if client_result.is_ok() {
            client_result = deliver(&to_client, &mut *client);
        }
        let failed = client_result.is_err() || server_result.is_err();
        if failed && to_client.is_empty() && !server.wants_write() && !client.wants_write() {
            break;
        }
        if greeted && client_result.is_ok() {
            let mut buf = [0u8; 5];
            if std::io::Read::read_exact(&mut client.reader(), &mut buf).is_ok() {
                assert_eq!(&buf, b"hello");
                return Outcome {
                    client: Ok(()),
                    server: server_result,
                    accepted: true,
                };
            }
        }
    }
    Outcome {
        client: client_result,
        server: server_result,
        accepted: false,
    }
}

/// What one side has to send now.
fn flight<Data>(from: &mut rustls::ConnectionCommon<Data>) -> Vec<u8> {
    let mut bytes = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut bytes).unwrap();
    }
    bytes
}

/// Feeds `bytes` to the other side; its first error, if any (it reads nothing after it).
fn deliver<Data>(
    mut bytes: &[u8],
    to: &mut rustls::ConnectionCommon<Data>,
) -> Result<(), rustls::Error> {
    while !bytes.is_empty() {
        to.read_tls(&mut bytes).unwrap();
        to.process_new_packets()?;
    }
    Ok(())
}

/// Asserts that the handshake was refused with the client receiving `alert`; `context` names the
/// case in the panic message.
pub fn assert_client_alert(outcome: &Outcome, alert: AlertDescription, context: &str) {
    assert!(!outcome.accepted, "{context}: handshake was accepted");
    match &outcome.client {
        Err(rustls::Error::AlertReceived(received)) if *received == alert => {}
        other => panic!("{context}: client should have received {alert:?}, got {other:?}"),
    }
}

/// [`assert_client_alert`], and the server's error reads back as `reason`; returns that error.
pub fn assert_refusal(
    outcome: Outcome,
    alert: AlertDescription,
    reason: RefusalReason,
    context: &str,
) -> rustls::Error {
    assert_client_alert(&outcome, alert, context);
    let error = outcome.server.expect_err("the server should have failed");
    assert_eq!(
        RefusalReason::from_tls_error(&error),
        Some(reason),
        "{context}: {error}"
    );
    error
}

thread_local! {
    /// The log bytes of the capture running on this thread, if any.
    static CAPTURED: std::cell::RefCell<Option<Vec<u8>>> = const { std::cell::RefCell::new(None) };
}

/// Writes log lines into the capture of the current thread.
struct ThreadCapture;

impl std::io::Write for ThreadCapture {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        CAPTURED.with(|captured| {
            if let Some(buffer) = captured.borrow_mut().as_mut() {
                buffer.extend_from_slice(data);
            }
        });
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The first WARN event of captured log events; the test fails when there is none.
pub fn first_warning(events: &[serde_json::Value]) -> &serde_json::Value {
    events
        .iter()
        .find(|event| event["level"] == "WARN")
        .unwrap_or_else(|| panic!("a warning among {events:#?}"))
}

/// Log lines captured while a closure ran on this thread, as JSON objects (one per event).
///
/// One global subscriber for the whole test binary: a per-test `with_default` subscriber loses
/// events when another test thread caches a callsite's interest as "never" first.
pub fn capture_logs<T>(f: impl FnOnce() -> T) -> (T, Vec<serde_json::Value>) {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(|| ThreadCapture)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
    });
    CAPTURED.with(|captured| *captured.borrow_mut() = Some(Vec::new()));
    let result = f();
    let bytes = CAPTURED.with(|captured| captured.borrow_mut().take().unwrap_or_default());
    let text = String::from_utf8(bytes).unwrap();
    let events = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    (result, events)
}
