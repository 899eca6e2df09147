//! cfssl's JSON inputs (`ca-csr.json`, `client-csr.json`, `ca-config.json`) read into moat's types.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use time::Duration;

use crate::PkiError;
use crate::keys::KeyType;
use crate::names::{SubjectAltName, SubjectName};
use crate::profile::{KNOWN_USAGES, Profile, Usage};

/// cfssl's lifetime for a CA made by `gencert -initca` without `ca.expiry`: five years.
const CFSSL_DEFAULT_CA_EXPIRY: Duration = Duration::hours(43_800);

/// The usages cfssl grants when a profile and the default name none.
const CFSSL_DEFAULT_USAGES: [Usage; 4] = [
    Usage::DigitalSignature,
    Usage::KeyEncipherment,
    Usage::ServerAuth,
    Usage::ClientAuth,
];

/// A cfssl CSR file: who the certificate is for and what key to make.
#[derive(Debug, Clone)]
pub struct CfsslCsr {
    /// CN plus the `names` attributes.
    pub subject: SubjectName,
    /// `hosts`, as SANs; empty strings (the guide's `"hosts": [""]`) are skipped.
    pub hosts: Vec<SubjectAltName>,
    /// `key` {algo, size}; cfssl's default is ECDSA P-256.
    pub key_type: KeyType,
    /// `ca.expiry` (for `init-ca`), else cfssl's five-year default.
    pub ca_validity: Duration,
    /// `ca.pathlen`, when given.
    pub ca_path_len: Option<u8>,
}

#[derive(Deserialize)]
struct RawCsr {
    #[serde(rename = "CN", default)]
    common_name: String,
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    key: Option<RawKey>,
    #[serde(default)]
    names: Vec<BTreeMap<String, String>>,
    #[serde(default)]
    ca: Option<RawCaConfig>,
}

#[derive(Deserialize)]
struct RawKey {
    algo: String,
    #[serde(default)]
    size: Option<u32>,
}

#[derive(Deserialize)]
struct RawCaConfig {
    #[serde(default)]
    expiry: Option<String>,
    #[serde(default)]
    pathlen: Option<u8>,
}

impl CfsslCsr {
    /// Reads a cfssl CSR JSON file.
    pub fn load(path: &Path) -> Result<CfsslCsr, PkiError> {
        Self::from_json(path, &crate::files::read(path)?)
    }

    /// Parses cfssl CSR JSON already in memory; `path` names it in errors.
    pub fn from_json(path: &Path, bytes: &[u8]) -> Result<CfsslCsr, PkiError> {
        let json_error = |reason: String| PkiError::CfsslJson {
            path: path.to_path_buf(),
            reason,
        };
        let raw: RawCsr = serde_json::from_slice(bytes)
            .map_err(|error| json_error(format!("not a cfssl CSR JSON file ({error})")))?;
        if raw.common_name.trim().is_empty() {
            return Err(json_error(
                "\"CN\" is missing or empty; add \"CN\": \"NAME\"".to_owned(),
            ));
        }
        let mut subject = SubjectName::common_name(raw.common_name);
        for entry in &raw.names {
            for (field, value) in entry {
                if value.is_empty() {
                    continue;
                }
                let list = match field.as_str() {
                    "C" => &mut subject.country,
                    "ST" => &mut subject.state,
                    "L" => &mut subject.locality,
                    "O" => &mut subject.organization,
                    "OU" => &mut subject.organizational_unit,
                    other => {
                        return Err(json_error(format!(
                            "unknown name field {other:?} in \"names\"; use C, ST, L, O or OU"
                        )));
                    }
                };
                list.push(value.clone());
            }
        }
        let mut hosts = Vec::new();
        for host in raw.hosts.iter().map(|host| host.trim()) {
            if host.is_empty() {
                continue;
            }
            hosts.push(
                SubjectAltName::from_cfssl_host(host)
                    .map_err(|error| json_error(format!("\"hosts\" entry {host:?}: {error}")))?,
            );
        }
        let key_type = match &raw.key {
            None => KeyType::EcdsaP256,
            Some(key) => KeyType::from_cfssl(&key.algo, key.size).ok_or_else(|| {
                json_error(format!(
                    "unsupported \"key\" {{\"algo\": {:?}, \"size\": {}}}; use rsa 2048/3072/4096, ecdsa 256/384 or ed25519",
                    key.algo,
                    key.size.map_or("none".to_owned(), |size| size.to_string())
                ))
            })?,
        };
        let ca_validity = match raw.ca.as_ref().and_then(|ca| ca.expiry.as_deref()) {
            Some(expiry) => parse_expiry(expiry, &format!("{} \"ca\".\"expiry\"", path.display()))?,
            None => CFSSL_DEFAULT_CA_EXPIRY,
        };
        Ok(CfsslCsr {
            subject,
            hosts,
            key_type,
            ca_validity,
            ca_path_len: raw.ca.and_then(|ca| ca.pathlen),
        })
    }
}

/// A cfssl signing configuration (`ca-config.json`): named profiles with usages and expiry.
#[derive(Debug, Clone)]
pub struct SigningConfig {
    path: PathBuf,
    default: RawProfile,
    profiles: BTreeMap<String, RawProfile>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct RawProfile {
    #[serde(default)]
    usages: Vec<String>,
    #[serde(default)]
    expiry: Option<String>,
}

#[derive(Deserialize)]
struct RawConfig {
    signing: RawSigning,
}

#[derive(Deserialize)]
struct RawSigning {
    #[serde(default)]
    default: RawProfile,
    #[serde(default)]
    profiles: BTreeMap<String, RawProfile>,
}

impl SigningConfig {
    /// Reads `ca-config.json`.
    pub fn load(path: &Path) -> Result<SigningConfig, PkiError> {
        Self::from_json(path, &crate::files::read(path)?)
    }

    /// Parses `ca-config.json` already in memory; `path` names it in errors.
    pub fn from_json(path: &Path, bytes: &[u8]) -> Result<SigningConfig, PkiError> {
        let raw: RawConfig = serde_json::from_slice(bytes).map_err(|error| PkiError::CfsslJson {
            path: path.to_path_buf(),
            reason: format!(
                "not a cfssl signing configuration ({error}); expected {{\"signing\": {{\"default\": {{...}}, \"profiles\": {{...}}}}}}"
            ),
        })?;
        let config = SigningConfig {
            path: path.to_path_buf(),
            default: raw.signing.default,
            profiles: raw.signing.profiles,
        };
        // Check every profile now, so a typo is reported even in a profile not used this time.
        for name in config.profiles.keys() {
            config.profile(name)?;
        }
        Ok(config)
    }

    /// The profile `name`, with the default's usages and expiry filling in what it leaves out.
    pub fn profile(&self, name: &str) -> Result<Profile, PkiError> {
        let raw = self
            .profiles
            .get(name)
            .ok_or_else(|| PkiError::UnknownProfile {
                name: name.to_owned(),
                config: Some(self.path.clone()),
                known: self.profile_names(),
            })?;
        let usage_names = if raw.usages.is_empty() {
            &self.default.usages
        } else {
            &raw.usages
        };
        let usages = if usage_names.is_empty() {
            CFSSL_DEFAULT_USAGES.to_vec()
        } else {
            usage_names
                .iter()
                .map(|usage| {
                    Usage::from_cfssl(usage).ok_or_else(|| PkiError::UnknownUsage {
                        path: self.path.clone(),
                        profile: name.to_owned(),
                        usage: usage.clone(),
                        known: KNOWN_USAGES,
                    })
                })
                .collect::<Result<_, _>>()?
        };
        let expiry = raw.expiry.as_deref().or(self.default.expiry.as_deref());
        let validity = match expiry {
            Some(expiry) => Some(parse_expiry(
                expiry,
                &format!("{} profile {name:?}", self.path.display()),
            )?),
            None => None,
        };
        Ok(Profile {
            name: name.to_owned(),
            usages,
            validity,
        })
    }

    fn profile_names(&self) -> String {
        if self.profiles.is_empty() {
            "(none defined; add one under \"signing\".\"profiles\")".to_owned()
        } else {
            self.profiles.keys().cloned().collect::<Vec<_>>().join(", ")
        }
    }
}

/// Parses a Go duration as cfssl writes expiries: `8760h`, `720h30m`, `90m`, `3600s`.
pub fn parse_expiry(text: &str, origin: &str) -> Result<Duration, PkiError> {
    let bad = |reason: &str| PkiError::BadExpiry {
        origin: origin.to_owned(),
        value: text.to_owned(),
        reason: reason.to_owned(),
    };
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad("is empty"));
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| bad("has a number without a unit (h, m or s)"))?;
        if digits == 0 {
            return Err(bad("does not start with a number"));
        }
        let number: i64 = rest[..digits]
            .parse()
            .map_err(|_| bad("has a number that is too large"))?;
        rest = &rest[digits..];
        let unit_length = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_length] {
            "h" => Duration::hours(1),
            "m" => Duration::minutes(1),
            "s" => Duration::seconds(1),
            _ => return Err(bad("has a unit other than h, m or s")),
        };
        rest = &rest[unit_length..];
        total = number
            .checked_mul(unit.whole_seconds())
            .and_then(|seconds| total.checked_add(Duration::seconds(seconds)))
            .ok_or_else(|| bad("is too long"))?;
    }
    if total <= Duration::ZERO {
        return Err(bad("is not a positive lifetime"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_as_cfssl_writes_them_parse() {
        assert_eq!(parse_expiry("8760h", "t").unwrap(), Duration::days(365));
        assert_eq!(parse_expiry("1h30m", "t").unwrap(), Duration::minutes(90));
        assert_eq!(parse_expiry("720h0m0s", "t").unwrap(), Duration::days(30));
    }

    #[test]
    fn expiry_without_unit_or_with_days_is_refused_with_the_fix() {
        for bad in ["8760", "365d", "", "h", "0h"] {
            let error = parse_expiry(bad, "ca-config.json profile \"client\"").unwrap_err();
            assert!(
                error.to_string().contains("write hours like \"8760h\""),
                "{bad}: {error}"
            );
        }
    }
}
