//! The rustls server configuration of one endpoint: its certificate, TLS versions, ALPN,
//! session resumption and, per handshake, the client-certificate verifier.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use moat_config::{EndpointConfig, EndpointKind, TlsVersion};
use moat_trust::RevocationLists;
use rustls::ServerConfig;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::access::{ConnectionVerifier, EndpointAccess, HandshakeFacts, VerdictSlot};
use crate::error::GatewayError;
use crate::explain::EndpointTrust;
use crate::local_ca;

/// An endpoint's TLS setup, plus where its certificate came from.
pub(crate) struct EndpointTls {
    /// What each handshake is configured with.
    pub server: ServerTls,
    /// The local CA certificate clients must trust, when moat issued the server certificate.
    pub local_ca: Option<PathBuf>,
    /// The server certificate moat's local CA issued, whose expiry is tracked like a file's.
    pub issued_leaf: Option<CertificateDer<'static>>,
    /// The loaded CRLs, to report stale ones.
    pub crls: RevocationLists,
    /// The certificate and key issued by the local CA, kept so a reload reuses them rather
    /// than issuing a new certificate each time.
    pub issued: Option<IssuedCredentials>,
}

/// A server certificate chain and key that moat's local CA issued for a domain.
pub(crate) struct IssuedCredentials {
    domain: String,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    ca_path: PathBuf,
}

/// The versions a `tls_min_version = "1.2"` endpoint speaks.
const TLS_12_AND_13: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];
/// The versions a `tls_min_version = "1.3"` endpoint speaks.
const TLS_13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// Builds the server configuration of `endpoint`, loading its certificate (or issuing one from
/// the local CA under `moat_home`, or reusing `previous` when it was issued for the same domain)
/// and its trust files.
pub(crate) fn endpoint_tls(
    endpoint: &EndpointConfig,
    moat_home: &Path,
    previous: Option<&IssuedCredentials>,
) -> Result<EndpointTls, GatewayError> {
    let (chain, key, local_ca) = match (&endpoint.crt, &endpoint.key, previous) {
        (Some(crt), Some(key), _) => (read_chain(crt)?, read_key(key)?, None),
        (_, _, Some(issued)) if issued.domain == endpoint.domain => (
            issued.chain.clone(),
            issued.key.clone_key(),
            Some(issued.ca_path.clone()),
        ),
        _ => issue_from_local_ca(endpoint, moat_home)?,
    };
    let issued = local_ca.as_ref().map(|ca_path| IssuedCredentials {
        domain: endpoint.domain.clone(),
        chain: chain.clone(),
        key: key.clone_key(),
        ca_path: ca_path.clone(),
    });
    let (access, crls) = endpoint_access(endpoint)?;
    let issued_leaf = local_ca.as_ref().and_then(|_| chain.first().cloned());

    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites = server_cipher_preference();
    let provider = Arc::new(provider);
    let versions = match endpoint.tls_min_version {
        TlsVersion::Tls12 => TLS_12_AND_13,
        TlsVersion::Tls13 => TLS_13,
    };
    let builder = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|source| GatewayError::Tls {
            endpoint: endpoint.name.clone(),
            source: Box::new(source),
        })?;
    // With client certificates, this is the template each handshake's own configuration is
    // made from (`ServerTls::for_handshake`); it never runs a handshake itself.
    let mut config = builder
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|source| match (&endpoint.crt, &endpoint.key) {
            (Some(crt), Some(key)) => GatewayError::ServerCertificate {
                endpoint: endpoint.name.clone(),
                crt: crt.clone(),
                key: key.clone(),
                source: Box::new(source),
            },
            _ => GatewayError::Tls {
                endpoint: endpoint.name.clone(),
                source: Box::new(source),
            },
        })?;
    // The server's order decides (see server_cipher_preference), as nginx's
    // `ssl_prefer_server_ciphers on` and Go's crypto/tls do.
    config.ignore_client_order = true;
    if endpoint.kind == EndpointKind::Http {
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    }
    let resumes = resumes_sessions(endpoint);
    if endpoint.session_resumption && !resumes {
        tracing::info!(
            endpoint = %endpoint.name,
            "session resumption is off: the access rules read the client's address (source_ip) or \
             run CEL expressions, which a resumed handshake would skip; every connection makes a \
             full handshake and is judged by the rules"
        );
    }
    if resumes {
        // Resumption by ticket as well as by session id (the default session cache); both are
        // new with each ServerConfig, i.e. with each load of the trust files.
        config.ticketer =
            rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|source| GatewayError::Tls {
                endpoint: endpoint.name.clone(),
                source: Box::new(source),
            })?;
    } else {
        // No session cache, no tickets (the builder's ticketer never makes one; TLS 1.3 would
        // still send 4 tickets a client could only fail to use): every handshake is full.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
    }
    Ok(EndpointTls {
        server: ServerTls {
            base: Arc::new(config),
            access,
            versions,
        },
        local_ca,
        issued_leaf,
        crls,
        issued,
    })
}

/// Whether clients of `endpoint` may resume sessions. Not when the configuration turns it off,
/// nor on a tls endpoint whose rules read connection facts (client address, CEL): its
/// rules are decided by the client verifier, which rustls does not call on a resumed handshake,
/// so a session from an allowed connection would let in one the rules refuse. Refusing
/// resumption, rather than re-deciding after a resumed handshake, keeps every refusal the
/// `access_denied` alert (nothing can be sent once the handshake is over but a closed
/// connection). Rules that read only the certificate give the same verdict to the session's
/// certificate again, so those endpoints go on resuming.
pub fn resumes_sessions(endpoint: &EndpointConfig) -> bool {
    endpoint.session_resumption
        && !(endpoint.kind == EndpointKind::Tls
            && moat_policy::rules_use_connection_facts(&endpoint.rules))
}

/// The cipher suites moat offers, in its order of preference: AES-128-GCM first, then
/// AES-256-GCM, then ChaCha20-Poly1305, TLS 1.3 before TLS 1.2. AES-128-GCM is as safe for TLS
/// and cheaper per byte, and its SHA-256 handshake hash runs on the SHA extensions most x86 CPUs
/// have, where SHA-384 does not: clients (rustls, OpenSSL, curl) list AES-256 first, which would
/// cost a few percent of every full handshake and of every byte relayed.
fn server_cipher_preference() -> Vec<rustls::SupportedCipherSuite> {
    use rustls::crypto::aws_lc_rs::cipher_suite as suites;
    vec![
        suites::TLS13_AES_128_GCM_SHA256,
        suites::TLS13_AES_256_GCM_SHA384,
        suites::TLS13_CHACHA20_POLY1305_SHA256,
        suites::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        suites::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        suites::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        suites::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        suites::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        suites::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ]
}

/// The judgement demanding (or, for `client_auth = request`, asking for) a certificate from one
/// of the endpoint's CAs; `None` when the endpoint trusts no CA and asks for no certificate.
fn endpoint_access(
    endpoint: &EndpointConfig,
) -> Result<(Option<Arc<EndpointAccess>>, RevocationLists), GatewayError> {
    let Some(trust) = EndpointTrust::load(endpoint)? else {
        return Ok((None, RevocationLists::default()));
    };
    // A tls endpoint's rules decide inside the handshake (an alert is all it can send); an
    // http endpoint's decide per request.
    let handshake_rules = match endpoint.kind {
        EndpointKind::Tls => endpoint.rules.clone(),
        EndpointKind::Http => Vec::new(),
    };
    let access = EndpointAccess::new(trust.verifier, handshake_rules);
    Ok((Some(Arc::new(access)), trust.crls))
}

/// How an endpoint's handshakes are configured. A new one per load (with its own session cache
/// and ticket keys), so sessions never outlive the trust they were made under.
///
/// Without client certificates one `ServerConfig` serves every handshake. With them each
/// handshake gets its own, whose [`ConnectionVerifier`] carries that connection's facts in and
/// its verdict out (see `access.rs`); it shares the certificate, session cache, ticket keys and
/// compression cache with the endpoint's, and costs a few small allocations against the
/// ~1 ms of a full handshake.
pub(crate) struct ServerTls {
    /// The endpoint's configuration without a client verifier: used as it is when the endpoint
    /// asks for no certificate, else the template of each handshake's.
    base: Arc<ServerConfig>,
    /// The endpoint's judgement of client certificates, when it asks for them.
    access: Option<Arc<EndpointAccess>>,
    versions: &'static [&'static rustls::SupportedProtocolVersion],
}

impl ServerTls {
    /// The configuration of the handshake `facts` describes, and where its verifier leaves its
    /// verdict (`None` when the endpoint asks for no certificate).
    pub(crate) fn for_handshake(
        &self,
        facts: HandshakeFacts,
    ) -> Result<(Arc<ServerConfig>, Option<VerdictSlot>), rustls::Error> {
        let Some(access) = &self.access else {
            return Ok((Arc::clone(&self.base), None));
        };
        let slot = VerdictSlot::default();
        let verifier = ConnectionVerifier::new(Arc::clone(access), facts, Arc::clone(&slot));
        let config = with_verifier(&self.base, self.versions, Arc::new(verifier))?;
        Ok((Arc::new(config), Some(slot)))
    }
}

/// `base` with `verifier`: everything `endpoint_tls` sets on a configuration, the caches and
/// keys shared rather than copied (a session made on one handshake resumes on another).
fn with_verifier(
    base: &ServerConfig,
    versions: &[&'static rustls::SupportedProtocolVersion],
    verifier: Arc<dyn ClientCertVerifier>,
) -> Result<ServerConfig, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(Arc::clone(base.crypto_provider()))
        .with_protocol_versions(versions)?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::clone(&base.cert_resolver));
    config.ignore_client_order = base.ignore_client_order;
    config.alpn_protocols.clone_from(&base.alpn_protocols);
    config.session_storage = Arc::clone(&base.session_storage);
    config.ticketer = Arc::clone(&base.ticketer);
    config.send_tls13_tickets = base.send_tls13_tickets;
    config.cert_compression_cache = Arc::clone(&base.cert_compression_cache);
    Ok(config)
}

type ServerCredentials = (
    Vec<CertificateDer<'static>>,
    PrivateKeyDer<'static>,
    Option<PathBuf>,
);

fn issue_from_local_ca(
    endpoint: &EndpointConfig,
    moat_home: &Path,
) -> Result<ServerCredentials, GatewayError> {
    let dir = local_ca::local_ca_dir(moat_home);
    let issued =
        local_ca::issue_server_certificate(moat_home, &endpoint.domain).map_err(|source| {
            GatewayError::LocalCa {
                endpoint: endpoint.name.clone(),
                dir: dir.clone(),
                source: Box::new(source),
            }
        })?;
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(issued.chain_pem.as_bytes())
            .filter_map(Result::ok)
            .collect();
    let key = issued
        .key_pem
        .as_deref()
        .and_then(|pem| PrivateKeyDer::from_pem_slice(pem.as_bytes()).ok());
    match (chain.is_empty(), key) {
        (false, Some(key)) => Ok((chain, key, Some(issued.ca_path))),
        _ => Err(GatewayError::NoServerKey { path: dir }),
    }
}

fn read_file(path: &Path, what: &'static str) -> Result<Vec<u8>, GatewayError> {
    std::fs::read(path).map_err(|source| GatewayError::ServerFileRead {
        path: path.to_path_buf(),
        what,
        source,
    })
}

/// Reads the server certificate followed by any intermediates.
fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, GatewayError> {
    let bytes = read_file(path, "certificate")?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| GatewayError::NoServerCertificate {
            path: path.to_path_buf(),
        })?;
    if chain.is_empty() {
        return Err(GatewayError::NoServerCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(chain)
}

/// Reads an unencrypted PKCS#8, PKCS#1 or SEC1 PEM private key, warning when others than
/// its owner may read it.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, GatewayError> {
    let bytes = read_file(path, "private key")?;
    warn_if_readable_by_others(path);
    match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(key) => Ok(key),
        Err(_) if is_encrypted_key(&bytes) => Err(GatewayError::EncryptedServerKey {
            path: path.to_path_buf(),
        }),
        Err(_) => Err(GatewayError::NoServerKey {
            path: path.to_path_buf(),
        }),
    }
}

/// Warns, as ssh does, about a private key that group or others may read (any of mode 0o044):
/// whoever reads it can impersonate the server. A warning rather than a refusal, since a
/// group-readable key is a common deliberate setup (a `ssl-cert` group).
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let Ok(metadata) = std::fs::metadata(path) else {
        return;
    };
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o044 != 0 {
        tracing::warn!(
            "{path}: private key is readable by group or others (mode {mode:04o}); run chmod 600 {path}",
            path = path.display()
        );
    }
}

/// PKCS#8 `ENCRYPTED PRIVATE KEY` or a legacy OpenSSL `Proc-Type: 4,ENCRYPTED` PEM header.
fn is_encrypted_key(pem: &[u8]) -> bool {
    let text = String::from_utf8_lossy(pem);
    text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || text.contains("Proc-Type: 4,ENCRYPTED")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handshake's own configuration must be the endpoint's in every setting moat makes, and
    /// share its session cache and ticket keys (else sessions would not resume across
    /// connections).
    #[test]
    fn a_handshakes_configuration_is_the_endpoints_with_its_own_verifier() {
        let certified =
            rcgen::generate_simple_self_signed(vec!["moat.test".into()]).expect("test certificate");
        let key = PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
        let mut base = ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(TLS_13)
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .expect("server config");
        base.ignore_client_order = true;
        base.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        base.send_tls13_tickets = 0;
        base.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        let verifier = rustls::server::WebPkiClientVerifier::no_client_auth();
        let made = with_verifier(&base, TLS_13, verifier).expect("per-handshake config");
        assert!(made.ignore_client_order);
        assert_eq!(made.alpn_protocols, base.alpn_protocols);
        assert_eq!(made.send_tls13_tickets, 0);
        assert!(Arc::ptr_eq(&made.session_storage, &base.session_storage));
        assert!(Arc::ptr_eq(&made.ticketer, &base.ticketer));
        assert!(Arc::ptr_eq(&made.cert_resolver, &base.cert_resolver));
        assert!(Arc::ptr_eq(
            &made.cert_compression_cache,
            &base.cert_compression_cache
        ));
        assert!(Arc::ptr_eq(made.crypto_provider(), base.crypto_provider()));
    }
}
