//! Builds PKCS#12 (.p12/.pfx) bundles of a certificate, its chain and its key for browsers and keychains.
//!
//! The default bundle uses PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) with an HMAC-SHA256 MAC, which
//! OpenSSL 3, current browsers and Windows read. [`P12Format::Legacy`] uses
//! pbeWithSHAAnd3-KeyTripleDES-CBC with an HMAC-SHA1 MAC for importers that know nothing newer,
//! such as older macOS keychains and Java 8.

use std::path::Path;

use p12_keystore::{
    Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, PrivateKey,
    PrivateKeyChain,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::PkiError;
use crate::keys::is_pem;

/// Why a PKCS#12 bundle could not be built or written; each message names the file and the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum P12Error {
    /// An input file could not be read.
    #[error("{path}: cannot read the file: {source}")]
    Read {
        /// The file as given.
        path: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The certificate input holds no certificate.
    #[error("{path}: no certificate found; expected PEM (-----BEGIN CERTIFICATE-----) or DER")]
    NoCertificate {
        /// The file (or input) as given.
        path: String,
    },
    /// A certificate in the input does not parse.
    #[error(
        "{path}: certificate #{index} does not parse: {reason}; check that the file is complete"
    )]
    BadCertificate {
        /// The file (or input) as given.
        path: String,
        /// 1-based position in the file.
        index: usize,
        /// The parser's explanation.
        reason: String,
    },
    /// The key input holds no usable private key.
    #[error(
        "{path}: no private key found; expected PEM (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY) or DER"
    )]
    NoKey {
        /// The file (or input) as given.
        path: String,
    },
    /// The key is passphrase-protected and no passphrase was given.
    #[error("{path}: the private key is encrypted; give its passphrase in a file")]
    EncryptedKey {
        /// The file (or input) as given.
        path: String,
    },
    /// The passphrase does not decrypt the key.
    #[error(
        "{path}: wrong passphrase for the encrypted private key (or the key is corrupted); check the passphrase file"
    )]
    WrongPassphrase {
        /// The file (or input) as given.
        path: String,
    },
    /// The key uses OpenSSL's pre-PKCS#8 encryption, which moat does not read.
    #[error(
        "{path}: legacy encrypted PEM key (Proc-Type: 4,ENCRYPTED); convert it with `openssl pkcs8 -topk8 -v2 aes-256-cbc -in {path} -out KEY.pk8` and pass that"
    )]
    LegacyEncryptedKey {
        /// The file (or input) as given.
        path: String,
    },
    /// The key is of a type or size the crypto backend does not handle.
    #[error(
        "{path}: unsupported private key ({reason}); use RSA 2048-8192, ECDSA P-256/P-384/P-521 or Ed25519"
    )]
    UnsupportedKey {
        /// The file (or input) as given.
        path: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The key is not the one the certificate was issued for.
    #[error(
        "{key_path}: this private key does not match the certificate in {cert_path} ({subject}); pass the key that was generated with that certificate"
    )]
    KeyMismatch {
        /// Where the certificate came from.
        cert_path: String,
        /// Where the key came from.
        key_path: String,
        /// The certificate's subject, to tell certificates apart.
        subject: String,
    },
    /// The PKCS#12 encoder failed.
    #[error("cannot encode the PKCS#12 bundle: {0}")]
    Encode(#[from] p12_keystore::error::Error),
    /// The output exists and overwriting was not asked for.
    #[error("{path}: already exists; allow overwriting it or choose another output")]
    OutputExists {
        /// The output path.
        path: String,
    },
    /// Writing the output failed; nothing was left at the destination.
    #[error("{path}: cannot write the bundle: {source}")]
    Write {
        /// The output path.
        path: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },
}

/// The encryption and MAC scheme of a bundle, chosen by who has to import it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum P12Format {
    /// PBES2 with AES-256-CBC and PBKDF2-HMAC-SHA256, HMAC-SHA256 MAC: OpenSSL 3, browsers, Windows 10+.
    #[default]
    Modern,
    /// 3DES (pbeWithSHAAnd3-KeyTripleDES-CBC) with an HMAC-SHA1 MAC, for older macOS and Java 8.
    Legacy,
}

/// A certificate, its chain and the matching key, checked and ready to bundle.
///
/// Construction checks that the key belongs to the certificate, so a bundle that a browser would
/// import but never be able to use cannot be built.
pub struct P12Input {
    certificate: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivatePkcs8KeyDer<'static>,
    friendly_name: String,
}

impl std::fmt::Debug for P12Input {
    // Never print the key, not even in debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("P12Input")
            .field("friendly_name", &self.friendly_name)
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl P12Input {
    /// Reads the leaf (first certificate of `cert_path`; any further ones there count as chain),
    /// the key (decrypted with `key_passphrase` when it is encrypted PKCS#8), and optional extra
    /// chain certificates, PEM or DER.
    pub fn from_files(
        cert_path: &Path,
        key_path: &Path,
        chain_path: Option<&Path>,
        key_passphrase: Option<&str>,
    ) -> Result<Self, P12Error> {
        let cert_bytes = read(cert_path)?;
        let key_bytes = read(key_path)?;
        let chain_bytes = chain_path.map(read).transpose()?;
        Self::from_bytes(
            (&cert_path.display().to_string(), &cert_bytes),
            (&key_path.display().to_string(), &key_bytes),
            chain_path
                .map(|path| path.display().to_string())
                .as_deref()
                .zip(chain_bytes.as_deref()),
            key_passphrase,
        )
    }

    /// Same as [`P12Input::from_files`] for contents already in memory, e.g. a certificate just
    /// issued; each input is `(name used in error messages, bytes)`.
    pub fn from_bytes(
        cert: (&str, &[u8]),
        key: (&str, &[u8]),
        extra_chain: Option<(&str, &[u8])>,
        key_passphrase: Option<&str>,
    ) -> Result<Self, P12Error> {
        let (cert_name, cert_bytes) = cert;
        let mut certificates = parse_certificates(cert_name, cert_bytes)?;
        if certificates.is_empty() {
            return Err(P12Error::NoCertificate {
                path: cert_name.to_owned(),
            });
        }
        let certificate = certificates.remove(0);
        let mut chain = certificates;
        if let Some((chain_name, chain_bytes)) = extra_chain {
            let extra = parse_certificates(chain_name, chain_bytes)?;
            if extra.is_empty() {
                return Err(P12Error::NoCertificate {
                    path: chain_name.to_owned(),
                });
            }
            chain.extend(extra);
        }
        let (key_name, key_bytes) = key;
        let key = parse_private_key(key_name, key_bytes, key_passphrase)?;
        Self::new(certificate, chain, key, cert_name, key_name)
    }

    /// Builds the input from parsed parts; `cert_name` and `key_name` appear in error messages.
    pub fn new(
        certificate: CertificateDer<'static>,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        cert_name: &str,
        key_name: &str,
    ) -> Result<Self, P12Error> {
        let key = to_pkcs8(key_name, key)?;
        let (_, parsed) = X509Certificate::from_der(certificate.as_ref()).map_err(|error| {
            P12Error::BadCertificate {
                path: cert_name.to_owned(),
                index: 1,
                reason: error.to_string(),
            }
        })?;
        let subject = parsed.subject().to_string();
        let key_pair = rcgen::KeyPair::try_from(key.secret_pkcs8_der()).map_err(|error| {
            P12Error::UnsupportedKey {
                path: key_name.to_owned(),
                reason: error.to_string(),
            }
        })?;
        let certificate_public_key = &parsed.public_key().subject_public_key.data;
        if key_pair.public_key_raw() != certificate_public_key.as_ref() {
            return Err(P12Error::KeyMismatch {
                cert_path: cert_name.to_owned(),
                key_path: key_name.to_owned(),
                subject,
            });
        }
        let friendly_name = parsed
            .subject()
            .iter_common_name()
            .find_map(|cn| cn.as_str().ok().map(str::to_owned))
            .unwrap_or(subject);
        Ok(Self {
            certificate,
            chain,
            key,
            friendly_name,
        })
    }

    /// The name importers show for the bundled identity: the certificate's CN, else its subject.
    pub fn friendly_name(&self) -> &str {
        &self.friendly_name
    }
}

/// Encodes `input` as a PKCS#12 bundle protected by `password`.
pub fn build_pkcs12(
    input: &P12Input,
    password: &str,
    format: P12Format,
) -> Result<Vec<u8>, P12Error> {
    let leaf = Certificate::from_der(input.certificate.as_ref())?;
    let mut certificates = vec![leaf];
    for certificate in &input.chain {
        certificates.push(Certificate::from_der(certificate.as_ref())?);
    }
    let key = PrivateKey::from_der(input.key.secret_pkcs8_der())?;
    // The local key ID ties the key bag to its certificate bag; OpenSSL uses the certificate's
    // SHA-1 the same way.
    let local_key_id = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        input.certificate.as_ref(),
    );
    let chain = PrivateKeyChain::new(local_key_id.as_ref(), key, certificates);
    let mut store = KeyStore::new();
    store.add_entry(&input.friendly_name, KeyStoreEntry::PrivateKeyChain(chain));
    let writer = store.writer(password);
    let writer = match format {
        P12Format::Modern => writer
            .encryption_algorithm(EncryptionAlgorithm::PbeWithHmacSha256AndAes256)
            .mac_algorithm(MacAlgorithm::HmacSha256),
        // 2048 iterations is what OpenSSL's own legacy bundles use; old importers expect it.
        P12Format::Legacy => writer
            .encryption_algorithm(EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc)
            .encryption_iterations(2048)
            .mac_algorithm(MacAlgorithm::HmacSha1)
            .mac_iterations(2048),
    };
    Ok(writer.write()?)
}

/// Writes a bundle atomically (temporary file in the same directory, then rename) with mode 0600,
/// refusing to replace an existing file unless `overwrite` is set.
pub fn write_pkcs12(path: &Path, bundle: &[u8], overwrite: bool) -> Result<(), P12Error> {
    // The bundle holds the private key: readable by its owner only, from the first byte.
    let written = if overwrite {
        crate::files::write_atomic(path, bundle, 0o600)
    } else {
        crate::files::write_new(path, bundle, 0o600)
    };
    let name = path.display().to_string();
    written.map_err(|error| match error {
        PkiError::OutputExists { .. } => P12Error::OutputExists { path: name },
        PkiError::Write { source, .. } => P12Error::Write { path: name, source },
        other => P12Error::Write {
            path: name,
            source: std::io::Error::other(other.to_string()),
        },
    })
}

fn read(path: &Path) -> Result<Vec<u8>, P12Error> {
    std::fs::read(path).map_err(|source| P12Error::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Every certificate in a PEM file, or the single certificate of a DER file.
fn parse_certificates(name: &str, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, P12Error> {
    let certificates: Vec<CertificateDer<'static>> = if is_pem(bytes) {
        CertificateDer::pem_slice_iter(bytes)
            .collect::<Result<_, _>>()
            .map_err(|error| P12Error::BadCertificate {
                path: name.to_owned(),
                index: 1,
                reason: format!("invalid PEM ({error})"),
            })?
    } else {
        vec![CertificateDer::from(bytes.to_vec())]
    };
    for (index, certificate) in certificates.iter().enumerate() {
        X509Certificate::from_der(certificate.as_ref()).map_err(|error| {
            P12Error::BadCertificate {
                path: name.to_owned(),
                index: index + 1,
                reason: error.to_string(),
            }
        })?;
    }
    Ok(certificates)
}

/// The first private key of a PEM file (PKCS#8, encrypted PKCS#8, PKCS#1 or SEC1), or a DER key.
/// Parsing is [`crate::keys`]'s; only the messages differ, naming `moat pki p12`'s flag.
fn parse_private_key(
    name: &str,
    bytes: &[u8],
    passphrase: Option<&str>,
) -> Result<PrivateKeyDer<'static>, P12Error> {
    let path = name.to_owned();
    crate::keys::private_key_der(Path::new(name), bytes, passphrase).map_err(|error| match error {
        PkiError::NoPrivateKey { .. } => P12Error::NoKey { path },
        PkiError::PassphraseRequired { .. } => P12Error::EncryptedKey { path },
        PkiError::WrongPassphrase { .. } => P12Error::WrongPassphrase { path },
        PkiError::LegacyEncryptedKey { .. } => P12Error::LegacyEncryptedKey { path },
        other => P12Error::UnsupportedKey {
            path,
            reason: other.to_string(),
        },
    })
}

/// PKCS#12 key bags hold PKCS#8, so PKCS#1 (RSA) and SEC1 (EC) keys are re-encoded.
fn to_pkcs8(
    name: &str,
    key: PrivateKeyDer<'static>,
) -> Result<PrivatePkcs8KeyDer<'static>, P12Error> {
    use aws_lc_rs::encoding::AsDer as _;
    let unsupported = |reason: String| P12Error::UnsupportedKey {
        path: name.to_owned(),
        reason,
    };
    match key {
        PrivateKeyDer::Pkcs8(pkcs8) => Ok(pkcs8),
        PrivateKeyDer::Pkcs1(pkcs1) => {
            let pair = aws_lc_rs::rsa::KeyPair::from_der(pkcs1.secret_pkcs1_der())
                .map_err(|error| unsupported(format!("RSA key rejected: {error}")))?;
            let der = pair
                .as_der()
                .map_err(|_| unsupported("RSA key cannot be re-encoded as PKCS#8".to_owned()))?;
            Ok(PrivatePkcs8KeyDer::from(der.as_ref().to_vec()))
        }
        PrivateKeyDer::Sec1(sec1) => {
            use aws_lc_rs::signature::{
                ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING,
                ECDSA_P521_SHA512_ASN1_SIGNING, EcdsaKeyPair,
            };
            [
                &ECDSA_P256_SHA256_ASN1_SIGNING,
                &ECDSA_P384_SHA384_ASN1_SIGNING,
                &ECDSA_P521_SHA512_ASN1_SIGNING,
            ]
            .into_iter()
            .find_map(|algorithm| {
                EcdsaKeyPair::from_private_key_der(algorithm, sec1.secret_sec1_der()).ok()
            })
            .and_then(|pair| pair.to_pkcs8v1().ok())
            .map(|document| PrivatePkcs8KeyDer::from(document.as_ref().to_vec()))
            .ok_or_else(|| {
                unsupported("EC key on a curve other than P-256, P-384 or P-521".to_owned())
            })
        }
        _ => Err(unsupported("unknown private key encoding".to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(cn: &str) -> (String, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![format!("{cn}.test")]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        (params.self_signed(&key).unwrap().pem(), key)
    }

    #[test]
    fn both_formats_read_back_with_the_same_certificate_and_key() {
        let (cert_pem, key) = self_signed("round trip");
        let key_pem = key.serialize_pem();
        let input = P12Input::from_bytes(
            ("rt.crt", cert_pem.as_bytes()),
            ("rt.key", key_pem.as_bytes()),
            None,
            None,
        )
        .unwrap();
        assert_eq!(input.friendly_name(), "round trip");
        for format in [P12Format::Modern, P12Format::Legacy] {
            let bundle = build_pkcs12(&input, "pw", format).unwrap();
            let store =
                KeyStore::from_pkcs12(&bundle, "pw", p12_keystore::Pkcs12ImportPolicy::Strict)
                    .unwrap();
            let (alias, chain) = store.private_key_chain().unwrap();
            assert_eq!(alias, "round trip");
            assert_eq!(chain.key().as_der(), key.serialized_der());
            assert_eq!(chain.certs()[0].as_der(), input.certificate.as_ref());
            assert!(KeyStore::from_pkcs12(&bundle, "wrong", Default::default()).is_err());
        }
    }

    #[test]
    fn key_of_another_certificate_is_a_mismatch_naming_both_inputs() {
        let (cert_pem, _) = self_signed("owner");
        let (_, other_key) = self_signed("someone else");
        let error = P12Input::from_bytes(
            ("owner.crt", cert_pem.as_bytes()),
            ("other.key", other_key.serialize_pem().as_bytes()),
            None,
            None,
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "other.key: this private key does not match the certificate in owner.crt (CN=owner); pass the key that was generated with that certificate"
        );
    }
}
