//! The admin API's trust: the edge's admin CA (made on first start), the admin listener's
//! certificate from it, and a local administrator's client certificate, so `moat edge ca …`
//! works on the edge's own machine with nothing to set up.
//!
//! ```text
//! admin-ca/          the admin CA (ca.crt, ca.key 0600, ledger.json)
//! admin/listener.crt the admin listener's certificate (leaf + admin CA), listener.key 0600
//! admin/admin.crt    the local administrator's client certificate (CN=admin), admin.key 0600
//! ```
//!
//! With `--admin-cas` the listener trusts the operator's CAs instead of the admin CA (and the
//! local certificate then works only if that bundle includes the admin CA).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use moat_pki::files::{PRIVATE_MODE, PUBLIC_MODE, PlannedFile, write_set};
use moat_pki::{CertificateAuthority, KeyType, LeafRequest, Profile, SubjectName};
use moat_trust::ClientIdentity;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

use crate::agent_ca::open_or_init_ca;
use crate::link::LinkError;
use crate::link::listener_tls::{
    LISTENER_CERT_FILE, LISTENER_KEY_FILE, RENEW_BEFORE_SECS, current_certificate, issue,
    wanted_names,
};

/// The admin CA's directory inside the edge's state directory.
pub const ADMIN_CA_DIR: &str = "admin-ca";
/// The directory of the admin listener's and the local administrator's certificates.
pub const ADMIN_DIR: &str = "admin";
/// The local administrator's client certificate.
pub const ADMIN_CERT_FILE: &str = "admin.crt";
/// Its key (0600).
pub const ADMIN_KEY_FILE: &str = "admin.key";
/// The common name of the local administrator's certificate.
pub const LOCAL_ADMIN_NAME: &str = "admin";

/// What the admin listener serves with and trusts.
#[derive(Clone)]
pub struct AdminMaterial {
    /// The listener's certificate chain, PEM (leaf, then the admin CA).
    pub listener_chain_pem: String,
    /// The listener's private key, PEM; never printed.
    pub listener_key_pem: String,
    /// The CAs whose client certificates are administrators, PEM.
    pub admin_cas_pem: Vec<u8>,
    /// Where those CAs came from, for messages.
    pub admin_cas_origin: PathBuf,
    /// The admin CA's certificate file: what clients trust the listener by.
    pub ca_file: PathBuf,
}

impl std::fmt::Debug for AdminMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminMaterial")
            .field("admin_cas_origin", &self.admin_cas_origin)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

/// Opens (making on first start) the admin CA under `state_dir`, the listener's certificate for
/// `names` (plus loopback) and the local administrator's certificate; the listener trusts
/// `admin_cas` (a PEM bundle file) when given, else the admin CA. Blocking (keys, files).
pub fn open_admin(
    state_dir: &Path,
    names: &[String],
    admin_cas: Option<&Path>,
) -> Result<AdminMaterial, LinkError> {
    let ca_dir = state_dir.join(ADMIN_CA_DIR);
    let ca = open_or_init_ca(&ca_dir, "moat edge admin CA")?;
    let dir = state_dir.join(ADMIN_DIR);
    let wanted = wanted_names(names)?;
    if current_certificate(&dir, &ca, &wanted).is_none() {
        issue(
            &dir,
            &ca,
            &wanted,
            "moat edge admin listener",
            "the admin listener",
        )?;
    }
    let read = |path: PathBuf| {
        std::fs::read_to_string(&path).map_err(|source| {
            LinkError::Pki(moat_pki::PkiError::Read {
                path: path.clone(),
                source,
            })
        })
    };
    let listener_chain_pem = read(dir.join(LISTENER_CERT_FILE))?;
    let listener_key_pem = read(dir.join(LISTENER_KEY_FILE))?;
    ensure_local_admin(&dir, &ca)?;
    let ca_file = ca_dir.join(moat_pki::ca::CA_CERT_FILE);
    let (admin_cas_pem, admin_cas_origin) = match admin_cas {
        Some(file) => (read(file.to_path_buf())?.into_bytes(), file.to_path_buf()),
        None => (ca.certificate_pem().as_bytes().to_vec(), ca_file.clone()),
    };
    Ok(AdminMaterial {
        listener_chain_pem,
        listener_key_pem,
        admin_cas_pem,
        admin_cas_origin,
        ca_file,
    })
}

/// Issues the local administrator's certificate (CN=admin, client profile) unless a current
/// one from `ca` is there.
fn ensure_local_admin(dir: &Path, ca: &CertificateAuthority) -> Result<(), LinkError> {
    let certificate = dir.join(ADMIN_CERT_FILE);
    if is_current(&certificate, ca) && dir.join(ADMIN_KEY_FILE).is_file() {
        return Ok(());
    }
    let request = LeafRequest {
        subject: SubjectName::common_name(LOCAL_ADMIN_NAME),
        subject_alt_names: Vec::new(),
        profile: Profile::client(),
        validity: None,
        key_type: KeyType::EcdsaP256,
    };
    let issued = ca.issue(&request)?;
    let Some(key_pem) = issued.key_pem.as_deref() else {
        return Err(LinkError::TlsSetup {
            what: "the local administrator's certificate",
            reason: "the admin CA returned a certificate without its new key".to_owned(),
        });
    };
    write_set(
        &[
            PlannedFile {
                path: dir.join(ADMIN_KEY_FILE),
                bytes: key_pem.as_bytes().to_vec(),
                mode: PRIVATE_MODE,
            },
            PlannedFile {
                path: certificate,
                bytes: issued.cert_pem.into_bytes(),
                mode: PUBLIC_MODE,
            },
        ],
        true,
    )?;
    Ok(())
}

/// Whether `path` holds a certificate issued by `ca` that is not near expiry.
fn is_current(path: &Path, ca: &CertificateAuthority) -> bool {
    let Ok(pem) = std::fs::read(path) else {
        return false;
    };
    let Ok(der) = CertificateDer::from_pem_slice(&pem) else {
        return false;
    };
    let Ok(read) = ClientIdentity::from_chain(&[der]) else {
        return false;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        });
    let ca_subject = ClientIdentity::from_chain(std::slice::from_ref(ca.certificate_der()))
        .map(|identity| identity.subject)
        .unwrap_or_default();
    read.issuer == ca_subject && read.not_after.saturating_sub(now) >= RENEW_BEFORE_SECS
}
