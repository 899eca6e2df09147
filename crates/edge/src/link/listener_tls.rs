//! The agent listener's TLS: its certificate from the edge's own agent CA, and client verification by the agents' CAs.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use moat_pki::files::{PRIVATE_MODE, PUBLIC_MODE, PlannedFile, write_set};
use moat_pki::{
    CertificateAuthority, Fingerprint, KeyType, LeafRequest, Profile, SubjectAltName, SubjectName,
};
use moat_trust::{CaBundle, ClientIdentity, SubjectAltName as PeerSan};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::{JOIN_ALPN, LinkError, provider};
use crate::agent_ca::{AGENT_CA_DIR, AgentCa, AgentTrust};
use crate::join::EdgeState;
use crate::state_lock::StateLock;

/// The listener certificate's directory inside the edge's state directory.
pub const AGENT_LISTENER_DIR: &str = "agent-listener";
/// The listener's certificate file: the leaf, then the agent CA that signed it.
pub const LISTENER_CERT_FILE: &str = "listener.crt";
/// The listener's private key (0600).
pub const LISTENER_KEY_FILE: &str = "listener.key";
/// A listener certificate this close to its notAfter is replaced when the listener opens:
/// 30 days leaves a month of restarts before agents would see an expired certificate.
pub const RENEW_BEFORE_SECS: i64 = 30 * 24 * 60 * 60;
/// Names every listener certificate carries besides the operator's, so agents on the edge's
/// own host (and tests) can dial it by loopback.
pub const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The TLS side of the edge's agent listener. Agents pin the edge's own agent CA (a join token
/// carries its SHA-256), so the listener's certificate always comes from that CA, even when
/// agents themselves are trusted by an operator's bundle (`AgentTrust::External`).
#[derive(Debug, Clone)]
pub struct AgentListenerTls {
    config: Arc<rustls::ServerConfig>,
    ca_fingerprint: Fingerprint,
    certificate_file: PathBuf,
}

impl AgentListenerTls {
    /// Loads, or issues, the listener certificate for `names` (DNS names and IP literals agents
    /// dial, plus [`LOOPBACK_NAMES`]) under `state.dir()/agent-listener/`, and builds the
    /// server configuration: TLS 1.3 only, ALPN `moat-tunnel/1` and `moat-join/1`, client
    /// certificates optional (joining agents have none yet) but verified against the agents'
    /// CAs whenever one is presented. The certificate is issued again when the names change,
    /// the agent CA changed, or it is within [`RENEW_BEFORE_SECS`] of expiring.
    /// Blocking (file locks, key generation): call it before serving, or from `spawn_blocking`.
    pub fn open(state: &EdgeState, names: &[String]) -> Result<AgentListenerTls, LinkError> {
        let wanted = wanted_names(names)?;
        let owned_ca;
        let ca: &AgentCa = match state.agent_trust() {
            AgentTrust::OwnCa(ca) => ca,
            AgentTrust::External { .. } => {
                owned_ca = AgentCa::open_or_init(&state.dir().join(AGENT_CA_DIR))?;
                &owned_ca
            }
        };
        let dir = state.dir().join(AGENT_LISTENER_DIR);
        let (chain, key) = {
            // Two edges starting at once on one state directory issue one certificate.
            let _lock = StateLock::new(state.dir(), AGENT_LISTENER_DIR).lock()?;
            match current_certificate(&dir, ca.authority(), &wanted) {
                Some(found) => found,
                None => issue(
                    &dir,
                    ca.authority(),
                    &wanted,
                    "moat edge agent listener",
                    "the agent listener",
                )?,
            }
        };
        let roots = agent_roots(state.agent_trust(), ca)?;
        let tls_error = |reason: String| LinkError::TlsSetup {
            what: "the agent listener",
            reason,
        };
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .allow_unauthenticated()
            .build()
            .map_err(|error| tls_error(error.to_string()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|error| tls_error(error.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|error| tls_error(error.to_string()))?;
        config.alpn_protocols = vec![moat_tunnel::ALPN.to_vec(), JOIN_ALPN.to_vec()];
        Ok(AgentListenerTls {
            config: Arc::new(config),
            ca_fingerprint: ca.fingerprint(),
            certificate_file: dir.join(LISTENER_CERT_FILE),
        })
    }

    /// The rustls configuration for the agent listener's sockets.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        Arc::clone(&self.config)
    }

    /// An acceptor over [`AgentListenerTls::server_config`], for [`super::accept`].
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.server_config())
    }

    /// SHA-256 of the agent CA the listener's certificate chains to: what join tokens pin.
    pub fn ca_fingerprint(&self) -> Fingerprint {
        self.ca_fingerprint
    }

    /// Where the listener's certificate (leaf, then agent CA) is stored.
    pub fn certificate_file(&self) -> &Path {
        &self.certificate_file
    }
}

/// One SAN a listener certificate carries, in a form that compares equal however it was
/// written (DNS names lower-case, IP addresses parsed).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ListenerName {
    Dns(String),
    Ip(IpAddr),
}

/// The operator's names plus the loopback names, checked and without repeats.
pub(crate) fn wanted_names(names: &[String]) -> Result<BTreeSet<ListenerName>, LinkError> {
    let mut wanted = BTreeSet::new();
    for name in names
        .iter()
        .map(String::as_str)
        .chain(LOOPBACK_NAMES.iter().copied())
    {
        let bare = name
            .strip_prefix('[')
            .and_then(|inner| inner.strip_suffix(']'))
            .unwrap_or(name);
        let bad = |reason: String| LinkError::ListenerName {
            name: name.to_owned(),
            reason,
        };
        let parsed = match bare.parse::<IpAddr>() {
            Ok(ip) => ListenerName::Ip(ip),
            Err(_) => match format!("dns:{bare}").parse::<SubjectAltName>() {
                Ok(SubjectAltName::Dns(dns)) => ListenerName::Dns(dns),
                Ok(other) => return Err(bad(format!("reads as {other}"))),
                Err(moat_pki::PkiError::BadSubjectAltName { reason, .. }) => {
                    return Err(bad(reason));
                }
                Err(error) => return Err(bad(error.to_string())),
            },
        };
        wanted.insert(parsed);
    }
    Ok(wanted)
}

/// The stored certificate and key in `dir` (`listener.crt`, `listener.key`), when they exist,
/// belong together, chain to `ca`, carry exactly `wanted` and are not near expiry. Anything
/// else (missing, damaged, stale) is `None`: the caller issues a new one, so a damaged file
/// never stops the edge. Shared by the agent listener and the admin listener.
pub(crate) fn current_certificate(
    dir: &Path,
    ca: &CertificateAuthority,
    wanted: &BTreeSet<ListenerName>,
) -> Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let chain_pem = std::fs::read(dir.join(LISTENER_CERT_FILE)).ok()?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&chain_pem)
        .collect::<Result<_, _>>()
        .ok()?;
    let [leaf, issuer] = chain.as_slice() else {
        return None;
    };
    if issuer.as_ref() != ca.certificate_der().as_ref() {
        return None;
    }
    let key_path = dir.join(LISTENER_KEY_FILE);
    let key_pem = std::fs::read(&key_path).ok()?;
    let key = moat_pki::keys::parse_private_key(&key_path, &key_pem, None).ok()?;
    if !moat_pki::keys::matches_certificate(&key, leaf.as_ref()) {
        return None;
    }
    // The identity reader parses SANs and notAfter; it does not verify, which this needs not.
    let read = ClientIdentity::from_chain(std::slice::from_ref(leaf)).ok()?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        });
    if read.not_after.saturating_sub(now) < RENEW_BEFORE_SECS {
        return None;
    }
    let carried: BTreeSet<ListenerName> = read
        .sans
        .iter()
        .filter_map(|san| match san {
            PeerSan::Dns(dns) => Some(ListenerName::Dns(dns.to_ascii_lowercase())),
            PeerSan::Ip(ip) => Some(ListenerName::Ip(*ip)),
            _ => None,
        })
        .collect();
    if &carried != wanted {
        return None;
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).ok()?;
    Some((chain, key))
}

/// Issues a listener certificate for `wanted` from `ca` (ECDSA P-256, server profile, 397
/// days or the CA's remaining life, CN `subject`), writes it and its key (0600) in `dir`, and
/// returns them; `what` names the listener in errors.
pub(crate) fn issue(
    dir: &Path,
    ca: &CertificateAuthority,
    wanted: &BTreeSet<ListenerName>,
    subject: &str,
    what: &'static str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), LinkError> {
    let subject_alt_names: Vec<SubjectAltName> = wanted
        .iter()
        .map(|name| match name {
            ListenerName::Dns(dns) => SubjectAltName::Dns(dns.clone()),
            ListenerName::Ip(ip) => SubjectAltName::Ip(*ip),
        })
        .collect();
    let request = LeafRequest {
        subject: SubjectName::common_name(subject),
        subject_alt_names,
        profile: Profile::server(),
        validity: None,
        key_type: KeyType::EcdsaP256,
    };
    let issued = ca.issue(&request)?;
    let Some(key_pem) = issued.key_pem.as_deref() else {
        return Err(LinkError::TlsSetup {
            what,
            reason: "the agent CA returned a certificate without its new key".to_owned(),
        });
    };
    std::fs::create_dir_all(dir).map_err(|source| moat_pki::PkiError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let chain_pem = format!("{}{}", issued.cert_pem, ca.certificate_pem());
    write_set(
        &[
            PlannedFile {
                path: dir.join(LISTENER_KEY_FILE),
                bytes: key_pem.as_bytes().to_vec(),
                mode: PRIVATE_MODE,
            },
            PlannedFile {
                path: dir.join(LISTENER_CERT_FILE),
                bytes: chain_pem.into_bytes(),
                mode: PUBLIC_MODE,
            },
        ],
        true,
    )?;
    let chain = vec![
        CertificateDer::from(issued.cert_der.clone()),
        ca.certificate_der().clone(),
    ];
    let key =
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|error| LinkError::TlsSetup {
            what,
            reason: format!("the new key does not read back: {error}"),
        })?;
    Ok((chain, key))
}

/// The CAs agents' certificates are verified against: the edge's own agent CA, or every CA
/// of the operator's bundle.
fn agent_roots(trust: &AgentTrust, own: &AgentCa) -> Result<RootCertStore, LinkError> {
    let mut roots = RootCertStore::empty();
    let setup = |reason: String| LinkError::TlsSetup {
        what: "the agent listener's client verification",
        reason,
    };
    match trust {
        AgentTrust::OwnCa(_) => roots
            .add(own.authority().certificate_der().clone())
            .map_err(|error| {
                setup(format!(
                    "the agent CA is not a usable trust anchor: {error}"
                ))
            })?,
        AgentTrust::External { cas_file } => {
            let bundle = CaBundle::from_files(std::slice::from_ref(cas_file))?;
            for ca in bundle.iter() {
                roots.add(ca.der().clone()).map_err(|error| {
                    setup(format!(
                        "{}: certificate #{} is not a usable trust anchor: {error}",
                        cas_file.display(),
                        ca.position()
                    ))
                })?;
            }
        }
    }
    Ok(roots)
}
