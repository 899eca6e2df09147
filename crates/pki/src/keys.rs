//! Private keys: generating them, reading them in every common encoding, and writing them encrypted.

use std::path::Path;

use rcgen::KeyPair;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::PkiError;

/// PBKDF2 iterations for keys moat encrypts; OpenSSL 3's own default for `pkcs8 -topk8` is 2048,
/// so this is stronger while still opening in well under a second.
const PBKDF2_ITERATIONS: u32 = 600_000;

/// The key algorithms moat generates. ECDSA P-256 is the default: small, fast and accepted by
/// every TLS client; RSA exists for software that knows nothing else.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyType {
    /// ECDSA on NIST P-256 with SHA-256.
    #[default]
    EcdsaP256,
    /// ECDSA on NIST P-384 with SHA-384.
    EcdsaP384,
    /// Ed25519 (RFC 8410).
    Ed25519,
    /// RSA 2048-bit, PKCS#1 v1.5 signatures with SHA-256.
    Rsa2048,
    /// RSA 3072-bit.
    Rsa3072,
    /// RSA 4096-bit (what the ngrok guide's `openssl genrsa 4096` makes).
    Rsa4096,
}

impl KeyType {
    /// Every key type with its command-line name, for help texts and error messages.
    pub const ALL: [(KeyType, &'static str); 6] = [
        (KeyType::EcdsaP256, "ecdsa-p256"),
        (KeyType::EcdsaP384, "ecdsa-p384"),
        (KeyType::Ed25519, "ed25519"),
        (KeyType::Rsa2048, "rsa-2048"),
        (KeyType::Rsa3072, "rsa-3072"),
        (KeyType::Rsa4096, "rsa-4096"),
    ];

    /// The command-line name, e.g. `ecdsa-p256`.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(key_type, _)| *key_type == self)
            .map_or("ecdsa-p256", |(_, name)| name)
    }

    /// Maps cfssl's `"key": {"algo": "rsa"|"ecdsa"|"ed25519", "size": N}` to a key type.
    pub fn from_cfssl(algo: &str, size: Option<u32>) -> Option<KeyType> {
        match (algo.to_ascii_lowercase().as_str(), size) {
            ("ecdsa", None | Some(256)) => Some(KeyType::EcdsaP256),
            ("ecdsa", Some(384)) => Some(KeyType::EcdsaP384),
            ("ed25519", _) => Some(KeyType::Ed25519),
            ("rsa", None | Some(2048)) => Some(KeyType::Rsa2048),
            ("rsa", Some(3072)) => Some(KeyType::Rsa3072),
            ("rsa", Some(4096)) => Some(KeyType::Rsa4096),
            _ => None,
        }
    }

    /// Whether keys of this type encrypt (RSA key transport), so keyEncipherment makes sense.
    pub fn is_rsa(self) -> bool {
        matches!(self, KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096)
    }
}

impl std::fmt::Display for KeyType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for KeyType {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .find(|(_, name)| name.eq_ignore_ascii_case(text))
            .map(|(key_type, _)| *key_type)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|(_, name)| *name).collect();
                format!(
                    "unknown key type {text:?}; use one of: {}",
                    names.join(", ")
                )
            })
    }
}

/// Generates a fresh key pair of `key_type`.
pub fn generate(key_type: KeyType) -> Result<KeyPair, PkiError> {
    let built = match key_type {
        KeyType::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyType::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
        KeyType::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519),
        KeyType::Rsa2048 => {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        }
        KeyType::Rsa3072 => {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_3072)
        }
        KeyType::Rsa4096 => {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_4096)
        }
    };
    built.map_err(|error| PkiError::Build {
        what: "private key",
        reason: error.to_string(),
    })
}

/// Reads a private key file: PKCS#8 (plain, or encrypted with PBES2 as `openssl genrsa -aes256`
/// and `openssl pkcs8 -topk8` write it), PKCS#1 `RSA PRIVATE KEY` or SEC1 `EC PRIVATE KEY`, PEM or
/// DER. `passphrase` is used only when the key is encrypted.
pub fn load_private_key(path: &Path, passphrase: Option<&str>) -> Result<KeyPair, PkiError> {
    let bytes = crate::files::read(path)?;
    parse_private_key(path, &bytes, passphrase)
}

/// Same as [`load_private_key`] for bytes already in memory; `path` names them in errors.
pub fn parse_private_key(
    path: &Path,
    bytes: &[u8],
    passphrase: Option<&str>,
) -> Result<KeyPair, PkiError> {
    let der = private_key_der(path, bytes, passphrase)?;
    KeyPair::try_from(&der).map_err(|error| PkiError::UnsupportedKey {
        path: path.to_path_buf(),
        reason: error.to_string(),
    })
}

/// Whether a key file is encrypted, so callers can ask for a passphrase only when needed.
pub fn is_encrypted(bytes: &[u8]) -> bool {
    if is_pem(bytes) {
        contains(bytes, b"ENCRYPTED PRIVATE KEY") || contains(bytes, b"Proc-Type: 4,ENCRYPTED")
    } else {
        pkcs8::EncryptedPrivateKeyInfo::try_from(bytes).is_ok()
    }
}

/// The key as PKCS#8 PEM, encrypted with PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) when a
/// passphrase is given; `openssl pkey -passin` opens both forms.
pub fn private_key_pem(key: &KeyPair, passphrase: Option<&str>) -> Result<String, PkiError> {
    let Some(passphrase) = passphrase else {
        return Ok(key.serialize_pem());
    };
    let build_error = |reason: String| PkiError::Build {
        what: "encrypted private key",
        reason,
    };
    let pkcs8 = pkcs8_der(key)?;
    let info = pkcs8::PrivateKeyInfo::try_from(pkcs8.secret_pkcs8_der())
        .map_err(|error| build_error(error.to_string()))?;
    let mut salt = [0u8; 16];
    let mut iv = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| build_error("no randomness".to_owned()))?;
    aws_lc_rs::rand::fill(&mut iv).map_err(|_| build_error("no randomness".to_owned()))?;
    let parameters =
        pkcs8::pkcs5::pbes2::Parameters::pbkdf2_sha256_aes256cbc(PBKDF2_ITERATIONS, &salt, &iv)
            .map_err(|error| build_error(error.to_string()))?;
    let document = info
        .encrypt_with_params(parameters, passphrase.as_bytes())
        .map_err(|error| build_error(error.to_string()))?;
    let pem = document
        .to_pem("ENCRYPTED PRIVATE KEY", pkcs8::LineEnding::LF)
        .map_err(|error| build_error(error.to_string()))?;
    Ok(pem.to_string())
}

/// The key re-encoded as PKCS#8, whatever encoding it was read from.
pub fn pkcs8_der(key: &KeyPair) -> Result<PrivatePkcs8KeyDer<'static>, PkiError> {
    use aws_lc_rs::encoding::AsDer as _;
    let der = key.serialized_der();
    if pkcs8::PrivateKeyInfo::try_from(der).is_ok() {
        return Ok(PrivatePkcs8KeyDer::from(der.to_vec()));
    }
    let unsupported = |reason: &str| PkiError::Build {
        what: "PKCS#8 key",
        reason: reason.to_owned(),
    };
    if let Ok(rsa) = aws_lc_rs::rsa::KeyPair::from_der(der) {
        let document = rsa
            .as_der()
            .map_err(|_| unsupported("RSA key cannot be re-encoded"))?;
        return Ok(PrivatePkcs8KeyDer::from(document.as_ref().to_vec()));
    }
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
    .find_map(|algorithm| EcdsaKeyPair::from_private_key_der(algorithm, der).ok())
    .and_then(|pair| pair.to_pkcs8v1().ok())
    .map(|document| PrivatePkcs8KeyDer::from(document.as_ref().to_vec()))
    .ok_or_else(|| unsupported("unknown key encoding"))
}

/// Whether `key` is the private half of the public key in `certificate_der`.
pub fn matches_certificate(key: &KeyPair, certificate_der: &[u8]) -> bool {
    x509_parser::parse_x509_certificate(certificate_der)
        .map(|(_, certificate)| {
            certificate.public_key().subject_public_key.data.as_ref() == key.public_key_raw()
        })
        .unwrap_or(false)
}

/// The DER of the first private key in `bytes` (PEM or DER, decrypted with `passphrase` when it is
/// encrypted PKCS#8); `path` names it in errors.
pub(crate) fn private_key_der(
    path: &Path,
    bytes: &[u8],
    passphrase: Option<&str>,
) -> Result<PrivateKeyDer<'static>, PkiError> {
    if is_pem(bytes) {
        if contains(bytes, b"Proc-Type: 4,ENCRYPTED") {
            return Err(PkiError::LegacyEncryptedKey {
                path: path.to_path_buf(),
            });
        }
        let encrypted = x509_parser::pem::Pem::iter_from_buffer(bytes)
            .filter_map(Result::ok)
            .find(|section| section.label == "ENCRYPTED PRIVATE KEY");
        if let Some(section) = encrypted {
            return decrypt_pkcs8(path, &section.contents, passphrase);
        }
        return PrivateKeyDer::from_pem_slice(bytes).map_err(|_| PkiError::NoPrivateKey {
            path: path.to_path_buf(),
        });
    }
    if pkcs8::EncryptedPrivateKeyInfo::try_from(bytes).is_ok() {
        return decrypt_pkcs8(path, bytes, passphrase);
    }
    PrivateKeyDer::try_from(bytes.to_vec()).map_err(|_| PkiError::NoPrivateKey {
        path: path.to_path_buf(),
    })
}

fn decrypt_pkcs8(
    path: &Path,
    der: &[u8],
    passphrase: Option<&str>,
) -> Result<PrivateKeyDer<'static>, PkiError> {
    let passphrase = passphrase.ok_or_else(|| PkiError::PassphraseRequired {
        path: path.to_path_buf(),
    })?;
    let info =
        pkcs8::EncryptedPrivateKeyInfo::try_from(der).map_err(|_| PkiError::NoPrivateKey {
            path: path.to_path_buf(),
        })?;
    let document = info
        .decrypt(passphrase)
        .map_err(|_| PkiError::WrongPassphrase {
            path: path.to_path_buf(),
        })?;
    Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        document.as_bytes().to_vec(),
    )))
}

/// Whether `bytes` look like PEM rather than DER.
pub(crate) fn is_pem(bytes: &[u8]) -> bool {
    contains(bytes, b"-----BEGIN ")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}
