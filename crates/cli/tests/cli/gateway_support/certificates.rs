//! Test CAs made with rcgen, the certificate and key files of a test directory, and openssl.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SerialNumber,
};

/// A CA made with rcgen, able to sign leaves and CRLs.
pub struct TestCa {
    /// The CA certificate, PEM.
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// Whether a leaf is for a client or a server.
#[derive(Clone, Copy)]
pub enum Usage {
    Client,
    Server,
}

impl TestCa {
    /// A self-signed ECDSA P-256 CA.
    pub fn new(common_name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.key_identifier_method = KeyIdMethod::Sha256;
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// An intermediate CA signed by this one; it signs leaves and CRLs like a root.
    pub fn intermediate(&self, common_name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.key_identifier_method = KeyIdMethod::Sha256;
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf valid from a day ago for a year, with the given serial.
    pub fn leaf(&self, common_name: &str, usage: Usage, serial: u64) -> (String, String) {
        let now = time::OffsetDateTime::now_utc();
        self.leaf_valid(
            common_name,
            usage,
            serial,
            now - time::Duration::days(1),
            now + time::Duration::days(365),
        )
    }

    /// A client leaf valid from `from_days` to `to_days` days from now (negative: in the past).
    pub fn client_dated(
        &self,
        common_name: &str,
        serial: u64,
        from_days: i64,
        to_days: i64,
    ) -> (String, String) {
        let now = time::OffsetDateTime::now_utc();
        let (not_before, not_after) = (
            now + time::Duration::days(from_days),
            now + time::Duration::days(to_days),
        );
        self.leaf_valid(common_name, Usage::Client, serial, not_before, not_after)
    }

    /// A leaf with an explicit validity period; returns (certificate PEM, key PEM).
    pub fn leaf_valid(
        &self,
        common_name: &str,
        usage: Usage,
        serial: u64,
        not_before: time::OffsetDateTime,
        not_after: time::OffsetDateTime,
    ) -> (String, String) {
        let names = match usage {
            Usage::Server => vec!["localhost".to_string(), "127.0.0.1".to_string()],
            Usage::Client => Vec::new(),
        };
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.serial_number = Some(SerialNumber::from(serial.to_be_bytes().to_vec()));
        params.not_before = not_before;
        params.not_after = not_after;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![match usage {
            Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
            Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
        }];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A server certificate for the DNS `names`; returns (certificate PEM, key PEM).
    pub fn server_leaf_for(&self, names: &[&str], serial: u64) -> (String, String) {
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, &names[0]);
        params.is_ca = IsCa::ExplicitNoCa;
        params.serial_number = Some(SerialNumber::from(serial.to_be_bytes().to_vec()));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A CRL revoking `serials`; returns (PEM, DER).
    pub fn crl(&self, serials: &[u64]) -> (String, Vec<u8>) {
        let now = time::OffsetDateTime::now_utc();
        self.crl_until(serials, now + time::Duration::days(7))
    }

    /// A CRL revoking `serials` whose nextUpdate is `next_update` (in the past: a stale CRL).
    pub fn crl_until(
        &self,
        serials: &[u64],
        next_update: time::OffsetDateTime,
    ) -> (String, Vec<u8>) {
        let now = time::OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: next_update.min(now) - time::Duration::days(8),
            next_update,
            crl_number: SerialNumber::from(1u64.to_be_bytes().to_vec()),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|serial| RevokedCertParams {
                    serial_number: SerialNumber::from(serial.to_be_bytes().to_vec()),
                    revocation_time: now - time::Duration::minutes(30),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer).unwrap();
        (crl.pem().unwrap(), crl.der().to_vec())
    }
}

/// The flags of the usual mTLS files of a test directory: `server.crt`, `server.key` and the
/// client CAs in `cas.pem`.
pub const MTLS_FILES: [&str; 6] = [
    "--crt",
    "server.crt",
    "--key",
    "server.key",
    "--mutual-tls-cas",
    "cas.pem",
];

/// The server side of a test directory: a CA named `ca_name` written as `ca_file` (for the
/// clients to trust) and its certificate for localhost with `serial` as `server.crt` and
/// `server.key`. Returns the CA.
pub fn write_server_pki(dir: &Path, ca_name: &str, ca_file: &str, serial: u64) -> TestCa {
    let server_ca = TestCa::new(ca_name);
    std::fs::write(dir.join(ca_file), &server_ca.pem).unwrap();
    write_pair(
        dir,
        "server",
        &server_ca.leaf("localhost", Usage::Server, serial),
    );
    server_ca
}

/// The smallest mTLS test directory: [`write_server_pki`] ("Server CA" in `server-ca.crt`), a
/// "Client CA" in `cas.pem` and its client `client_cn` as `client.crt` and `client.key`.
pub fn gateway_pki_dir(client_cn: &str) -> tempfile::TempDir {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    write_server_pki(dir, "Server CA", "server-ca.crt", 1);
    let client_ca = TestCa::new("Client CA");
    std::fs::write(dir.join("cas.pem"), &client_ca.pem).unwrap();
    write_pair(dir, "client", &client_ca.leaf(client_cn, Usage::Client, 2));
    scratch
}

/// The files the client of [`gateway_pki_dir`] uses: `server-ca.crt`, `client.crt`, `client.key`.
pub fn client_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    (
        dir.join("server-ca.crt"),
        dir.join("client.crt"),
        dir.join("client.key"),
    )
}

/// Writes a certificate and key pair as NAME.crt / NAME.key in `dir`.
pub fn write_pair(dir: &Path, name: &str, pair: &(String, String)) {
    std::fs::write(dir.join(format!("{name}.crt")), &pair.0).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), &pair.1).unwrap();
}

/// Runs openssl in `dir` with whitespace-separated arguments; fails the test if it fails.
pub fn openssl(dir: &Path, line: &str) {
    let args: Vec<&str> = line.split_whitespace().collect();
    let output = Command::new("openssl")
        .args(&args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "openssl {line} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
