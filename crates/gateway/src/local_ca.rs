//! moat's own CA under `$MOAT_HOME`, which issues server certificates for endpoints given no `--crt`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use moat_pki::ca::{CaOptions, CertificateAuthority, LeafRequest};
use moat_pki::{PkiError, SubjectAltName, SubjectName};

/// The directory under `$MOAT_HOME` holding the local CA.
const LOCAL_CA_DIR: &str = "local-ca";

/// A server certificate issued by the local CA, ready for rustls.
pub(crate) struct IssuedServerCertificate {
    /// Leaf then intermediates, PEM.
    pub chain_pem: String,
    /// The leaf's private key, PKCS#8 PEM; kept in memory only. Always present for a
    /// certificate the CA generated the key for.
    pub key_pem: Option<String>,
    /// The CA certificate clients should trust (`curl --cacert`).
    pub ca_path: PathBuf,
}

/// Where the local CA lives for a given `$MOAT_HOME`.
pub fn local_ca_dir(moat_home: &Path) -> PathBuf {
    moat_home.join(LOCAL_CA_DIR)
}

/// Opens the local CA (making it on first use) and issues a server certificate for `domain`.
///
/// The CA key is unencrypted (mode 0600): it exists so that `moat http 8080` works with no
/// setup, and a server cannot prompt for a passphrase. Production endpoints pass `--crt/--key`.
pub(crate) fn issue_server_certificate(
    moat_home: &Path,
    domain: &str,
) -> Result<IssuedServerCertificate, PkiError> {
    let dir = local_ca_dir(moat_home);
    let authority = if dir.join(moat_pki::ca::CA_CERT_FILE).is_file() {
        CertificateAuthority::open(&dir, None)?
    } else {
        let options = CaOptions {
            subject: SubjectName::common_name("moat local CA"),
            ..CaOptions::default()
        };
        CertificateAuthority::init(&dir, &options)?
    };
    let mut request = LeafRequest::server(domain);
    // Local clients reach "localhost" by its addresses too (curl https://127.0.0.1:PORT).
    if domain == "localhost" {
        request.subject_alt_names.extend([
            SubjectAltName::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            SubjectAltName::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        ]);
    }
    let issued = authority.issue(&request)?;
    Ok(IssuedServerCertificate {
        chain_pem: issued.certificate_file_pem(),
        key_pem: issued.key_pem.clone(),
        ca_path: dir.join(moat_pki::ca::CA_CERT_FILE),
    })
}
