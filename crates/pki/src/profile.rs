//! Certificate profiles: which key usages, extended key usages and default lifetime a leaf gets.

use rcgen::{ExtendedKeyUsagePurpose, KeyUsagePurpose};

/// One usage a profile grants, named as cfssl names them in `ca-config.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Usage {
    /// keyUsage digitalSignature (cfssl: "signing" or "digital signature").
    DigitalSignature,
    /// keyUsage contentCommitment (nonRepudiation).
    ContentCommitment,
    /// keyUsage keyEncipherment: RSA key transport in TLS 1.2.
    KeyEncipherment,
    /// keyUsage dataEncipherment.
    DataEncipherment,
    /// keyUsage keyAgreement.
    KeyAgreement,
    /// EKU serverAuth: a TLS server certificate.
    ServerAuth,
    /// EKU clientAuth: a TLS client certificate.
    ClientAuth,
    /// EKU codeSigning.
    CodeSigning,
    /// EKU emailProtection (cfssl: "email protection" or "s/mime").
    EmailProtection,
    /// EKU timeStamping.
    TimeStamping,
    /// EKU OCSPSigning.
    OcspSigning,
}

/// The usage names [`Usage::from_cfssl`] accepts, for error messages.
pub const KNOWN_USAGES: &str = "\"signing\", \"digital signature\", \"content commitment\", \"key encipherment\", \"data encipherment\", \"key agreement\", \"server auth\", \"client auth\", \"code signing\", \"email protection\", \"s/mime\", \"timestamping\", \"ocsp signing\"";

impl Usage {
    /// Reads a cfssl usage name; `None` for one moat does not issue.
    pub fn from_cfssl(name: &str) -> Option<Usage> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "signing" | "digital signature" => Usage::DigitalSignature,
            "content commitment" => Usage::ContentCommitment,
            "key encipherment" => Usage::KeyEncipherment,
            "data encipherment" => Usage::DataEncipherment,
            "key agreement" => Usage::KeyAgreement,
            "server auth" => Usage::ServerAuth,
            "client auth" => Usage::ClientAuth,
            "code signing" => Usage::CodeSigning,
            "email protection" | "s/mime" => Usage::EmailProtection,
            "timestamping" => Usage::TimeStamping,
            "ocsp signing" => Usage::OcspSigning,
            _ => return None,
        })
    }

    fn key_usage(self) -> Option<KeyUsagePurpose> {
        Some(match self {
            Usage::DigitalSignature => KeyUsagePurpose::DigitalSignature,
            Usage::ContentCommitment => KeyUsagePurpose::ContentCommitment,
            Usage::KeyEncipherment => KeyUsagePurpose::KeyEncipherment,
            Usage::DataEncipherment => KeyUsagePurpose::DataEncipherment,
            Usage::KeyAgreement => KeyUsagePurpose::KeyAgreement,
            _ => return None,
        })
    }

    fn extended_key_usage(self) -> Option<ExtendedKeyUsagePurpose> {
        Some(match self {
            Usage::ServerAuth => ExtendedKeyUsagePurpose::ServerAuth,
            Usage::ClientAuth => ExtendedKeyUsagePurpose::ClientAuth,
            Usage::CodeSigning => ExtendedKeyUsagePurpose::CodeSigning,
            Usage::EmailProtection => ExtendedKeyUsagePurpose::EmailProtection,
            Usage::TimeStamping => ExtendedKeyUsagePurpose::TimeStamping,
            Usage::OcspSigning => ExtendedKeyUsagePurpose::OcspSigning,
            _ => return None,
        })
    }
}

/// What kind of leaf certificate to make: its usages and default lifetime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The name it was chosen by (`client`, `server`, or a cfssl profile name).
    pub name: String,
    /// The usages granted.
    pub usages: Vec<Usage>,
    /// Lifetime when the request does not say; `None` lets the caller pick.
    pub validity: Option<time::Duration>,
}

impl Profile {
    /// A TLS client certificate: digitalSignature + keyEncipherment, EKU clientAuth, 365 days.
    pub fn client() -> Profile {
        Profile {
            name: "client".to_owned(),
            usages: vec![
                Usage::DigitalSignature,
                Usage::KeyEncipherment,
                Usage::ClientAuth,
            ],
            validity: Some(time::Duration::days(365)),
        }
    }

    /// A TLS server certificate: digitalSignature + keyEncipherment, EKU serverAuth, 397 days
    /// (the CA/Browser Forum maximum that browsers still accept).
    pub fn server() -> Profile {
        Profile {
            name: "server".to_owned(),
            usages: vec![
                Usage::DigitalSignature,
                Usage::KeyEncipherment,
                Usage::ServerAuth,
            ],
            validity: Some(time::Duration::days(397)),
        }
    }

    /// The built-in profile of that name (`client` or `server`).
    pub fn builtin(name: &str) -> Option<Profile> {
        match name {
            "client" => Some(Profile::client()),
            "server" => Some(Profile::server()),
            _ => None,
        }
    }

    /// Whether certificates of this profile serve TLS, and so need a SAN a client can check.
    pub fn is_server(&self) -> bool {
        self.usages.contains(&Usage::ServerAuth)
    }

    /// The keyUsage bits, leaving out keyEncipherment for keys that cannot encrypt (ECDSA,
    /// Ed25519), where RFC 5480 and RFC 8410 forbid it.
    pub(crate) fn key_usages(&self, key_can_encrypt: bool) -> Vec<KeyUsagePurpose> {
        self.usages
            .iter()
            .filter(|usage| key_can_encrypt || **usage != Usage::KeyEncipherment)
            .filter_map(|usage| usage.key_usage())
            .collect()
    }

    /// The extendedKeyUsage purposes.
    pub(crate) fn extended_key_usages(&self) -> Vec<ExtendedKeyUsagePurpose> {
        self.usages
            .iter()
            .filter_map(|usage| usage.extended_key_usage())
            .collect()
    }
}
