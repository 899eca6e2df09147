//! What the tests share: an edge state in a temporary directory, CSRs, and identities.

use std::path::Path;
use std::time::Duration;

use moat_edge::{EdgeState, HostnameGlob, JoinError, JoinToken, JoinedAgent};
use moat_trust::ClientIdentity;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

/// A fixed "now" for tests that do not depend on the wall clock (Unix seconds, 2030-01-01).
pub const NOW: u64 = 1_893_456_000;

/// An edge state directory with its agent CA, over a SQLite store in it.
pub async fn edge(dir: &Path) -> EdgeState {
    EdgeState::open(dir, None, store(dir).await)
        .await
        .expect("the edge makes its agent CA")
}

/// The SQLite store in `dir`.
pub async fn store(dir: &Path) -> moat_store::Store {
    moat_store::Store::open(&dir.join("store.db").display().to_string())
        .await
        .expect("the store opens")
}

/// Hostname globs from text.
pub fn globs(texts: &[&str]) -> Vec<HostnameGlob> {
    texts
        .iter()
        .map(|text| HostnameGlob::parse(text).expect("a valid glob"))
        .collect()
}

/// A token for `*.a.example.com`, valid for an hour from `NOW`.
pub async fn token(edge: &EdgeState) -> JoinToken {
    edge.new_token(
        "edge.example.com:4443",
        globs(&["*.a.example.com"]),
        Duration::from_secs(3600),
        NOW,
    )
    .await
    .expect("a token")
    .0
}

/// Joins with `token_text` and a fresh key's CSR asking for `name` (none when empty).
pub async fn join_as(
    edge: &EdgeState,
    token_text: &str,
    name: &str,
    now: u64,
) -> Result<JoinedAgent, JoinError> {
    edge.join(token_text, csr(name, vec![], None).as_bytes(), now)
        .await
}

/// A fresh key's CSR (PEM) with this CN (none when empty), plus any SANs and an organization.
pub fn csr(common_name: &str, sans: Vec<SanType>, organization: Option<&str>) -> String {
    let key = KeyPair::generate().expect("a key");
    let mut params = CertificateParams::default();
    // rcgen's default subject is a CN of its own; start from none.
    params.distinguished_name = DistinguishedName::new();
    if !common_name.is_empty() {
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
    }
    if let Some(organization) = organization {
        params
            .distinguished_name
            .push(DnType::OrganizationName, organization);
    }
    params.subject_alt_names = sans;
    params
        .serialize_request(&key)
        .expect("a CSR")
        .pem()
        .expect("PEM")
}

/// The identity of a self-signed certificate with this CN and these DNS SANs.
pub fn identity(common_name: &str, dns_sans: &[&str]) -> ClientIdentity {
    let key = KeyPair::generate().expect("a key");
    let mut params = CertificateParams::new(
        dns_sans
            .iter()
            .map(|name| (*name).to_owned())
            .collect::<Vec<_>>(),
    )
    .expect("parameters");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    let certificate = params.self_signed(&key).expect("a certificate");
    ClientIdentity::from_chain(&[certificate.der().clone()]).expect("an identity")
}

/// Asserts that `path` is readable and writable by its owner only (0600).
pub fn assert_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "{} is {:o}",
        path.display(),
        mode & 0o777
    );
}
