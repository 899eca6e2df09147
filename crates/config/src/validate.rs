//! The unvalidated endpoint description that both `moat.toml` and command-line flags fill in,
//! and its validation into the [`Config`] model.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

use crate::duration::parse_duration;
use crate::error::{ConfigError, FieldError};
use crate::model::{
    ClientAuthMode, Config, EndpointConfig, EndpointKind, TerminateAt, Timeouts, TlsVersion,
    UpstreamScheme,
};
use crate::rules::{RuleContext, RuleSpec, validate_rules};
use crate::upstream::parse_upstream;

/// The address an endpoint listens on when none is given.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8443";
/// The hostname an endpoint serves when none is given.
pub const DEFAULT_DOMAIN: &str = "localhost";

/// One endpoint as written by the user, before validation: the keys of an `[[endpoints]]`
/// table, which are also the `moat http` / `moat tls` flags. Values stay text so that every
/// mistake is reported with its field, all at once.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    /// Unique endpoint name (required in a file).
    pub name: Option<String>,
    /// `"http"` or `"tls"`.
    pub kind: Option<String>,
    /// `IP:PORT` to listen on; default `0.0.0.0:8443`.
    pub listen: Option<String>,
    /// The hostname served; default `localhost`.
    pub domain: Option<String>,
    /// `PORT`, `HOST:PORT` or a URL.
    #[serde(default, deserialize_with = "upstream_text")]
    pub upstream: Option<String>,
    /// CA file verifying an `https://` upstream.
    pub upstream_ca: Option<PathBuf>,
    /// Server certificate chain (PEM).
    pub crt: Option<PathBuf>,
    /// Server private key (PEM).
    pub key: Option<PathBuf>,
    /// CA bundles whose client certificates are accepted.
    #[serde(default, deserialize_with = "path_list")]
    pub mutual_tls_cas: Vec<PathBuf>,
    /// Certificate revocation lists (PEM or DER).
    #[serde(default, deserialize_with = "path_list")]
    pub crls: Vec<PathBuf>,
    /// `"require-and-verify"` (default) or `"request"`.
    pub client_auth: Option<String>,
    /// `"1.2"` (default) or `"1.3"`.
    #[serde(default, deserialize_with = "tls_version_text")]
    pub tls_min_version: Option<String>,
    /// `"edge"` (default) or `"agent"`; `tls` endpoints only.
    pub terminate_at: Option<String>,
    /// Time limits; each missing one keeps its default.
    #[serde(default)]
    pub timeouts: TimeoutsSpec,
    /// Takes clients without SNI on a listen address shared by several endpoints.
    pub default: Option<bool>,
    /// `false` leaves the CA names out of the CertificateRequest.
    pub ca_hints: Option<bool>,
    /// `"warn"` (default) or `"refuse"`.
    pub crl_expired: Option<String>,
    /// `false` turns off TLS session resumption (session ids and tickets), so every
    /// connection makes a full handshake and its certificate is verified again.
    pub session_resumption: Option<bool>,
    /// `1` or `2`: a PROXY protocol header to the upstream (tls endpoints).
    #[serde(default, deserialize_with = "proxy_protocol_text")]
    pub upstream_proxy_protocol: Option<String>,
    /// Access rules in order (`[[endpoints.rules]]`); the first covering a request decides.
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
    /// The `--policy` file the rules were read from, so that errors name it (flags only).
    #[serde(skip)]
    pub policy_file: Option<PathBuf>,
}

/// The `[endpoints.timeouts]` table: durations such as `"10s"`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsSpec {
    /// TLS handshake and request headers; default 10s.
    pub request_header: Option<String>,
    /// Idle client connection; default 60s.
    pub idle: Option<String>,
    /// Opening the upstream connection; default 5s.
    pub upstream_connect: Option<String>,
    /// Waiting for the upstream's response; default 60s.
    pub upstream_response: Option<String>,
    /// Waiting for a slow request body, in all; default 20s.
    pub request_body: Option<String>,
    /// Bytes per second of request body that earn one more second of waiting; default 500.
    pub request_body_min_rate: Option<u64>,
}

/// `upstream = 8080` as well as `upstream = "8080"`.
fn upstream_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    string_or_number(
        deserializer,
        "a port number or a string such as \"8080\" or \"http://127.0.0.1:8080\"",
    )
}

/// `tls_min_version = 1.3` as well as `tls_min_version = "1.3"`.
fn tls_version_text<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    string_or_number(deserializer, "\"1.2\" or \"1.3\"")
}

/// `upstream_proxy_protocol = 2` as well as `upstream_proxy_protocol = "2"`.
fn proxy_protocol_text<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    string_or_number(deserializer, "1 or 2")
}

/// A string or a number, as text; anything else is refused with what the key takes
/// (`expected`) and what was found, rather than serde's "did not match any variant".
fn string_or_number<'de, D: Deserializer<'de>>(
    deserializer: D,
    expected: &'static str,
) -> Result<Option<String>, D::Error> {
    use serde::de::{Error, MapAccess, SeqAccess, Visitor};

    struct Scalar(&'static str);

    impl Scalar {
        fn found<E: Error>(&self, found: &str) -> E {
            E::custom(format!("expected {}, found {found}", self.0))
        }
    }

    impl<'de> Visitor<'de> for Scalar {
        type Value = String;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
        fn visit_str<E: Error>(self, text: &str) -> Result<String, E> {
            Ok(text.to_owned())
        }
        fn visit_i64<E: Error>(self, number: i64) -> Result<String, E> {
            Ok(number.to_string())
        }
        fn visit_u64<E: Error>(self, number: u64) -> Result<String, E> {
            Ok(number.to_string())
        }
        fn visit_f64<E: Error>(self, number: f64) -> Result<String, E> {
            Ok(number.to_string())
        }
        fn visit_bool<E: Error>(self, flag: bool) -> Result<String, E> {
            Err(self.found(&format!("{flag}")))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<String, A::Error> {
            Err(self.found("an array"))
        }
        // Also a TOML date or time, which toml hands over as a one-key table.
        fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<String, A::Error> {
            Err(self.found("a table"))
        }
    }

    deserializer.deserialize_any(Scalar(expected)).map(Some)
}

/// A list of file paths. A single string is refused with the list to write instead, and is
/// not echoed when it holds a PEM rather than a path.
fn path_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<PathBuf>, D::Error> {
    use serde::de::{Error, SeqAccess, Visitor};

    struct Paths;

    impl<'de> Visitor<'de> for Paths {
        type Value = Vec<PathBuf>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a list of files such as [\"FILE\"]")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<PathBuf>, A::Error> {
            let mut paths = Vec::new();
            while let Some(path) = seq.next_element()? {
                paths.push(path);
            }
            Ok(paths)
        }
        fn visit_str<E: Error>(self, text: &str) -> Result<Vec<PathBuf>, E> {
            Err(E::custom(if text.contains("-----BEGIN ") {
                "expected a list of files, found the contents of a PEM file; give the path of \
                 the file that holds it, as [\"FILE\"]"
                    .to_owned()
            } else {
                format!("expected a list of files, found a string; write [{text:?}]")
            }))
        }
    }

    deserializer.deserialize_any(Paths)
}

/// How field paths are written: `endpoints[1].upstream` in a file, `--upstream` for flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldStyle {
    /// `endpoints[INDEX].key`, for `moat.toml`.
    File,
    /// `--key-with-dashes`, for `moat http` / `moat tls` flags.
    Flags,
}

/// Collects problems while one endpoint is validated, naming fields in the chosen style.
pub(crate) struct Problems<'a> {
    pub(crate) style: FieldStyle,
    pub(crate) index: usize,
    pub(crate) list: &'a mut Vec<FieldError>,
}

impl Problems<'_> {
    fn field(&self, key: &str) -> String {
        match self.style {
            FieldStyle::File => format!("endpoints[{}].{key}", self.index),
            FieldStyle::Flags => match key.strip_prefix("timeouts.") {
                Some(timeout) => format!("--{}-timeout", timeout.replace('_', "-")),
                None if key == "crls" => "--crl".to_string(),
                None if key == "ca_hints" => "--no-ca-hints".to_string(),
                None if key == "session_resumption" => "--no-session-resumption".to_string(),
                None => format!("--{}", key.replace('_', "-")),
            },
        }
    }

    pub(crate) fn push(&mut self, key: &str, message: impl Into<String>) {
        let path = self.field(key);
        self.list.push(FieldError {
            path,
            message: message.into(),
        });
    }
}

impl Config {
    /// Validates endpoint specs into a [`Config`], resolving relative paths against
    /// `base_dir` (the config file's directory) and checking that every named file exists.
    ///
    /// `origin` names the source in errors (`moat.toml`, `moat http`). Every problem is
    /// reported, not just the first.
    pub fn from_specs(
        specs: Vec<EndpointSpec>,
        base_dir: Option<&Path>,
        origin: &str,
        style: FieldStyle,
    ) -> Result<Config, ConfigError> {
        validate_indexed(
            specs.into_iter().enumerate().collect(),
            base_dir,
            origin,
            style,
            Vec::new(),
        )
    }
}

/// Validates specs that keep their position in the source (some may have been dropped earlier
/// with a problem already in `problems`), so field paths name the right `endpoints[INDEX]`.
pub(crate) fn validate_indexed(
    specs: Vec<(usize, EndpointSpec)>,
    base_dir: Option<&Path>,
    origin: &str,
    style: FieldStyle,
    mut problems: Vec<FieldError>,
) -> Result<Config, ConfigError> {
    let mut endpoints = Vec::new();
    let mut seen_names: HashMap<String, usize> = HashMap::new();
    let mut indices = Vec::new();
    for (index, spec) in specs {
        let mut endpoint_problems = Problems {
            style,
            index,
            list: &mut problems,
        };
        if let Some(endpoint) = validate_endpoint(spec, base_dir, &mut endpoint_problems) {
            indices.push(index);
            if let Some(first) = seen_names.insert(endpoint.name.clone(), index) {
                endpoint_problems.push(
                    "name",
                    format!(
                        "{:?} is already the name of endpoints[{first}]; names must be unique",
                        endpoint.name
                    ),
                );
            }
            endpoints.push(endpoint);
        }
    }
    crate::operations::check_shared_addresses(&endpoints, &indices, style, &mut problems);
    if problems.is_empty() && endpoints.is_empty() {
        problems.push(FieldError {
            path: "endpoints".to_string(),
            message:
                "no endpoints; add an [[endpoints]] table with at least name, kind and upstream"
                    .to_string(),
        });
    }
    if problems.is_empty() {
        Ok(Config {
            endpoints,
            telemetry: crate::TelemetryConfig::default(),
            max_connections: crate::model::DEFAULT_MAX_CONNECTIONS,
        })
    } else {
        Err(ConfigError::Invalid {
            origin: origin.to_string(),
            problems,
        })
    }
}

/// Validates one endpoint; returns `None` when any problem was recorded.
fn validate_endpoint(
    spec: EndpointSpec,
    base_dir: Option<&Path>,
    problems: &mut Problems<'_>,
) -> Option<EndpointConfig> {
    let before = problems.list.len();

    let kind = match spec.kind.as_deref() {
        Some("http") => Some(EndpointKind::Http),
        Some("tls") => Some(EndpointKind::Tls),
        Some(other) => {
            problems.push(
                "kind",
                format!("{other:?} is not an endpoint kind; use \"http\" or \"tls\""),
            );
            None
        }
        None => {
            problems.push("kind", "missing; add kind = \"http\" or kind = \"tls\"");
            None
        }
    };

    let operations = crate::operations::validate(&spec, kind, problems);

    let name = match spec.name {
        Some(name) if valid_name(&name) => Some(name),
        Some(name) => {
            problems.push(
                "name",
                format!("{name:?} is not a valid name; use letters, digits, '.', '_' and '-' only"),
            );
            None
        }
        None => match (problems.style, kind) {
            // Flags name the endpoint after its command, like `moat http`.
            (FieldStyle::Flags, Some(EndpointKind::Http)) => Some("http".to_string()),
            (FieldStyle::Flags, Some(EndpointKind::Tls)) => Some("tls".to_string()),
            (FieldStyle::Flags, None) => None,
            (FieldStyle::File, _) => {
                problems.push("name", "missing; add e.g. name = \"app\"");
                None
            }
        },
    };

    let listen_text = spec.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen = match listen_text.parse::<SocketAddr>() {
        Ok(listen) => Some(listen),
        Err(_) => {
            problems.push(
                "listen",
                format!("{listen_text:?} is not an IP:port address; write e.g. \"0.0.0.0:8443\" or \"127.0.0.1:0\""),
            );
            None
        }
    };

    let domain = spec.domain.unwrap_or_else(|| DEFAULT_DOMAIN.to_string());
    if !valid_domain(&domain) {
        problems.push(
            "domain",
            format!("{domain:?} is not a DNS name; write e.g. \"app.example.com\""),
        );
    }

    let upstream = match (spec.upstream.as_deref(), kind) {
        (None, _) => {
            problems.push(
                "upstream",
                "missing; give the service to forward to, e.g. \"8080\" or \"http://app.internal:8080\"",
            );
            None
        }
        (Some(_), None) => None,
        (Some(text), Some(kind)) => match parse_upstream(text, kind) {
            Ok(upstream) => Some(upstream),
            Err(message) => {
                problems.push("upstream", message);
                None
            }
        },
    };

    let resolve = |path: PathBuf| match base_dir {
        Some(base) if path.is_relative() => base.join(path),
        _ => path,
    };
    let upstream_ca = spec.upstream_ca.map(resolve);
    let crt = spec.crt.map(resolve);
    let key = spec.key.map(resolve);
    let mutual_tls_cas: Vec<PathBuf> = spec.mutual_tls_cas.into_iter().map(resolve).collect();
    let crls: Vec<PathBuf> = spec.crls.into_iter().map(resolve).collect();

    if let Some(upstream) = &upstream {
        match (&upstream_ca, upstream.scheme) {
            (Some(_), UpstreamScheme::Https) | (None, _) => {}
            (Some(_), _) => problems.push(
                "upstream_ca",
                "is only used for an https:// upstream; remove it or make the upstream https://",
            ),
        }
    }
    match (&crt, &key) {
        (Some(_), None) => problems.push(
            "key",
            "missing; a server certificate (crt) needs its private key (key)",
        ),
        (None, Some(_)) => problems.push(
            "crt",
            "missing; a server private key (key) needs its certificate (crt)",
        ),
        _ => {}
    }
    for (field, path) in [("upstream_ca", &upstream_ca), ("crt", &crt), ("key", &key)] {
        if let Some(path) = path {
            check_file(field, path, problems);
        }
    }
    for (position, path) in mutual_tls_cas.iter().enumerate() {
        check_file(
            &list_field("mutual_tls_cas", position, problems.style),
            path,
            problems,
        );
    }
    for (position, path) in crls.iter().enumerate() {
        check_file(
            &list_field("crls", position, problems.style),
            path,
            problems,
        );
    }
    if !crls.is_empty() && mutual_tls_cas.is_empty() {
        problems.push(
            "crls",
            "revocation lists need the CAs that issued them; give the CA file too \
             (mutual_tls_cas, --mutual-tls-cas) or drop the CRL",
        );
    }

    let client_auth = match spec.client_auth.as_deref() {
        None | Some("require-and-verify") => Some(ClientAuthMode::RequireAndVerify),
        Some("request") => Some(ClientAuthMode::Request),
        Some(other) => {
            problems.push(
                "client_auth",
                format!("{other:?} is not a client verification strategy; use \"require-and-verify\" or \"request\""),
            );
            None
        }
    };
    if spec.client_auth.is_some() && mutual_tls_cas.is_empty() {
        problems.push(
            "client_auth",
            "needs the CAs of the client certificates: without them none is asked for; give the \
             CA file (mutual_tls_cas, --mutual-tls-cas)",
        );
    }

    if kind == Some(EndpointKind::Tls) && client_auth == Some(ClientAuthMode::Request) {
        problems.push(
            "client_auth",
            "\"request\" applies to http endpoints only: a tls endpoint has no requests to refuse, so \
             it always requires a certificate; remove it",
        );
    }
    if kind == Some(EndpointKind::Tls)
        && (spec.timeouts.request_body.is_some() || spec.timeouts.request_body_min_rate.is_some())
    {
        problems.push(
            "timeouts.request_body",
            "applies to http endpoints only: a tls endpoint forwards a byte stream without \
             request bodies; remove it (timeouts.idle bounds a silent connection)",
        );
    }
    if kind == Some(EndpointKind::Tls) && spec.timeouts.upstream_response.is_some() {
        problems.push(
            "timeouts.upstream_response",
            "applies to http endpoints only: a tls endpoint forwards a byte stream without \
             responses; remove it (timeouts.idle bounds a silent connection)",
        );
    }

    let tls_min_version = match spec.tls_min_version.as_deref() {
        None | Some("1.2") => Some(TlsVersion::Tls12),
        Some("1.3") => Some(TlsVersion::Tls13),
        Some(other) => {
            problems.push(
                "tls_min_version",
                format!("{other:?} is not a supported TLS version; use \"1.2\" or \"1.3\""),
            );
            None
        }
    };

    let terminate_at = match (spec.terminate_at.as_deref(), kind) {
        (None, _) => Some(TerminateAt::default()),
        (Some(_), Some(EndpointKind::Http)) => {
            problems.push(
                "terminate_at",
                "applies to tls endpoints only; an http endpoint always terminates TLS at moat; remove it",
            );
            None
        }
        (Some("edge"), _) => Some(TerminateAt::Edge),
        (Some("agent"), _) => Some(TerminateAt::Agent),
        (Some(other), _) => {
            problems.push(
                "terminate_at",
                format!("{other:?} is not a termination point; use \"edge\" or \"agent\""),
            );
            None
        }
    };

    let timeouts = validate_timeouts(&spec.timeouts, problems);

    let rule_context = RuleContext {
        prefix: match (problems.style, &spec.policy_file) {
            (FieldStyle::File, _) => problems.field("rules"),
            (FieldStyle::Flags, Some(file)) => format!("--policy {}: rules", file.display()),
            (FieldStyle::Flags, None) => "rules".to_string(),
        },
        kind,
        has_cas: !mutual_tls_cas.is_empty(),
    };
    let rules = validate_rules(spec.rules, &rule_context, problems.list);

    if problems.list.len() != before {
        return None;
    }
    Some(EndpointConfig {
        name: name?,
        kind: kind?,
        listen: listen?,
        domain,
        upstream: upstream?,
        upstream_ca,
        crt,
        key,
        mutual_tls_cas,
        crls,
        client_auth: client_auth?,
        tls_min_version: tls_min_version?,
        terminate_at: terminate_at?,
        timeouts: timeouts?,
        default: spec.default.unwrap_or(false),
        ca_hints: spec.ca_hints.unwrap_or(true),
        session_resumption: spec.session_resumption.unwrap_or(true),
        crl_expired: operations?.crl_expired,
        upstream_proxy_protocol: operations?.upstream_proxy_protocol,
        rules: rules?,
        policy_file: spec.policy_file,
    })
}

fn validate_timeouts(spec: &TimeoutsSpec, problems: &mut Problems<'_>) -> Option<Timeouts> {
    let mut timeouts = Timeouts::default();
    let mut valid = true;
    for (key, text, slot) in [
        (
            "request_header",
            &spec.request_header,
            &mut timeouts.request_header,
        ),
        ("idle", &spec.idle, &mut timeouts.idle),
        (
            "upstream_connect",
            &spec.upstream_connect,
            &mut timeouts.upstream_connect,
        ),
        (
            "upstream_response",
            &spec.upstream_response,
            &mut timeouts.upstream_response,
        ),
        (
            "request_body",
            &spec.request_body,
            &mut timeouts.request_body,
        ),
    ] {
        let Some(text) = text else { continue };
        match parse_duration(text) {
            Ok(duration) if duration.is_zero() => {
                problems.push(&format!("timeouts.{key}"), "must be longer than zero");
                valid = false;
            }
            Ok(duration) => *slot = duration,
            Err(message) => {
                problems.push(&format!("timeouts.{key}"), message);
                valid = false;
            }
        }
    }
    if let Some(rate) = spec.request_body_min_rate {
        timeouts.request_body_min_rate = rate;
    }
    valid.then_some(timeouts)
}

/// The path of one element of a list field: `mutual_tls_cas[0]` in a file, the flag otherwise.
fn list_field(key: &str, position: usize, style: FieldStyle) -> String {
    match style {
        FieldStyle::File => format!("{key}[{position}]"),
        FieldStyle::Flags => key.to_string(),
    }
}

fn check_file(field: &str, path: &Path, problems: &mut Problems<'_>) {
    // A PEM pasted where its file's path belongs (`--crt "$(cat server.crt)"`) would otherwise
    // be printed whole, key material included, as a file that does not exist.
    let text = path.to_string_lossy();
    if let Some(begin) = text.find("-----BEGIN ") {
        let label = text[begin..].lines().next().unwrap_or("-----BEGIN");
        problems.push(
            field,
            format!(
                "holds the contents of a PEM file ({label}...), not a path; give the path of the \
                 file that holds it"
            ),
        );
        return;
    }
    if !path.is_file() {
        problems.push(
            field,
            format!("{}: no such file; check the path", path.display()),
        );
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A DNS name as SNI carries it: dot-separated labels of letters, digits, `-` (and `*` first).
fn valid_domain(domain: &str) -> bool {
    let domain = domain.strip_prefix("*.").unwrap_or(domain);
    !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}
