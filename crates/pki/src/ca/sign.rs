//! Signing leaf certificates: a new key and certificate, or a verified CSR, under a profile.

use rcgen::{CertificateParams, IsCa, KeyIdMethod};
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};

use super::authority::{BACKDATE, CertificateAuthority};
use super::create::random_serial;
use super::files::IssuedCertificate;
use super::options::{CsrSigning, LeafRequest};
use crate::PkiError;
use crate::csr::CertificateRequest;
use crate::keys;
use crate::names::{SubjectAltName, SubjectName};
use crate::profile::Profile;
use crate::serial::Serial;

impl CertificateAuthority {
    /// Makes a key and a leaf certificate for it, records it in the ledger and returns both.
    pub fn issue(&self, request: &LeafRequest) -> Result<IssuedCertificate, PkiError> {
        let key = keys::generate(request.key_type)?;
        let subject = request.subject.to_distinguished_name()?;
        let subject_alt_names = with_default_san(
            &request.subject.common_name,
            &request.subject_alt_names,
            &request.profile,
        )?;
        let validity = self.validity(request.validity, &request.profile)?;
        let mut issued = self.sign(
            subject,
            &subject_alt_names,
            &request.profile,
            validity,
            &key,
            request.key_type.is_rsa(),
        )?;
        issued.key_pem = Some(key.serialize_pem());
        self.record(
            &CertificateDer::from(issued.cert_der.clone()),
            &request.profile.name,
        )?;
        Ok(issued)
    }

    /// Signs a verified CSR under `signing.profile` and records it in the ledger (when this CA
    /// has one). The subject and SANs come from the CSR; a server profile without SANs gets the
    /// CN as one.
    pub fn sign_csr(
        &self,
        request: &CertificateRequest,
        signing: &CsrSigning,
    ) -> Result<IssuedCertificate, PkiError> {
        let common_name = request.common_name().unwrap_or_default();
        self.sign_request(
            request,
            request.subject.clone(),
            &common_name,
            &request.subject_alt_names,
            signing,
        )
    }

    /// Signs the public key of a verified CSR under a subject this CA chooses, leaving out the
    /// subject and SANs the CSR asks for, and records it in the ledger (when this CA has one).
    /// For a CA that assigns identities itself (the edge's agent CA): a requester cannot add a
    /// name that a grant or an access rule would match.
    pub fn sign_csr_as(
        &self,
        request: &CertificateRequest,
        subject: &SubjectName,
        signing: &CsrSigning,
    ) -> Result<IssuedCertificate, PkiError> {
        self.sign_request(
            request,
            subject.to_distinguished_name()?,
            &subject.common_name,
            &[],
            signing,
        )
    }

    fn sign_request(
        &self,
        request: &CertificateRequest,
        subject: rcgen::DistinguishedName,
        common_name: &str,
        subject_alt_names: &[SubjectAltName],
        signing: &CsrSigning,
    ) -> Result<IssuedCertificate, PkiError> {
        let subject_alt_names = with_default_san(common_name, subject_alt_names, &signing.profile)?;
        let validity = self.validity(signing.validity, &signing.profile)?;
        let issued = self.sign(
            subject,
            &subject_alt_names,
            &signing.profile,
            validity,
            &request.public_key,
            request.public_key_is_rsa,
        )?;
        self.record(
            &CertificateDer::from(issued.cert_der.clone()),
            &signing.profile.name,
        )?;
        Ok(issued)
    }

    fn validity(&self, asked: Option<Duration>, profile: &Profile) -> Result<Duration, PkiError> {
        let validity = asked
            .or(profile.validity)
            .unwrap_or_else(|| Duration::days(365));
        if validity <= Duration::ZERO {
            return Err(PkiError::BadExpiry {
                origin: format!("profile {:?}", profile.name),
                value: format!("{}s", validity.whole_seconds()),
                reason: "is not a positive lifetime".to_owned(),
            });
        }
        Ok(validity)
    }

    fn sign(
        &self,
        subject: rcgen::DistinguishedName,
        subject_alt_names: &[SubjectAltName],
        profile: &Profile,
        validity: Duration,
        public_key: &impl rcgen::PublicKeyData,
        key_can_encrypt: bool,
    ) -> Result<IssuedCertificate, PkiError> {
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = subject;
        params.serial_number = Some(random_serial()?);
        params.not_before = now - BACKDATE;
        // A certificate cannot outlive its issuer: verifiers would refuse it once the CA expires.
        params.not_after = (now + validity).min(self.not_after);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = profile.key_usages(key_can_encrypt);
        params.extended_key_usages = profile.extended_key_usages();
        params.use_authority_key_identifier_extension = true;
        params.key_identifier_method = KeyIdMethod::Sha256;
        params.subject_alt_names = subject_alt_names
            .iter()
            .map(SubjectAltName::to_san_type)
            .collect::<Result<_, _>>()?;
        let issuer = self.issuer()?;
        let certificate =
            params
                .signed_by(public_key, &issuer)
                .map_err(|error| PkiError::Build {
                    what: "certificate",
                    reason: error.to_string(),
                })?;
        let der = certificate.der().to_vec();
        let (_, parsed) =
            x509_parser::parse_x509_certificate(&der).map_err(|error| PkiError::Build {
                what: "certificate",
                reason: error.to_string(),
            })?;
        Ok(IssuedCertificate {
            cert_pem: certificate.pem(),
            chain_pem: self.chain_pem.clone(),
            key_pem: None,
            serial: Serial::from_der(parsed.raw_serial()).to_ledger_hex(),
            subject: parsed.subject().to_string(),
            not_after: parsed.validity().not_after.to_datetime(),
            cert_der: der.clone(),
        })
    }
}

/// A server profile needs a name a client can check: the CN becomes the SAN when none is given.
fn with_default_san(
    common_name: &str,
    given: &[SubjectAltName],
    profile: &Profile,
) -> Result<Vec<SubjectAltName>, PkiError> {
    if !given.is_empty() || !profile.is_server() {
        return Ok(given.to_vec());
    }
    if common_name.trim().is_empty() {
        return Err(PkiError::NoServerName {
            problem: format!(
                "a {} certificate needs a name clients can check, but there is no SAN and no common name",
                profile.name
            ),
        });
    }
    let san = SubjectAltName::from_common_name(common_name);
    // Re-parse so a CN that is not a valid DNS name is reported as such.
    let checked: SubjectAltName = san.to_string().parse().map_err(|_| {
        PkiError::NoServerName {
            problem: format!(
                "the common name {common_name:?} is not a DNS name or IP address, so it cannot be the server certificate's SAN"
            ),
        }
    })?;
    Ok(vec![checked])
}
