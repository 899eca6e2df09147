//! The unvalidated endpoint description that both `moat.toml` and command-line flags fill in.

use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

use crate::rules::RuleSpec;

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
    /// `"edge"` (default) or `"agent"`: where TLS ends when the endpoint is published.
    pub terminate_at: Option<String>,
    /// `true`: published through the edge of the `[agent]` table instead of listening.
    pub publish: Option<bool>,
    /// `true`: share the published hostname with other agents that pool it.
    pub pool: Option<bool>,
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
    /// `"auto"` (default), `"http1"` or `"http2"`: the HTTP version spoken to the upstream
    /// (http endpoints).
    pub upstream_protocol: Option<String>,
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

/// The address the edge listens on for public clients when none is given.
pub const DEFAULT_EDGE_LISTEN: &str = "0.0.0.0:443";
/// The address the edge listens on for agents when none is given.
pub const DEFAULT_AGENT_LISTEN: &str = "0.0.0.0:4443";
/// Where an edge's admin API listens unless told otherwise: loopback only.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9443";
/// How long an agent may stay silent before the edge withdraws its endpoints, unless told.
pub const DEFAULT_HEARTBEAT_TOLERANCE: &str = "15s";

/// The `[edge]` table as written (the settings of `moat edge`), before validation.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeSpec {
    /// `IP:PORT` where public clients connect; default `0.0.0.0:443`.
    pub listen: Option<String>,
    /// `IP:PORT` where agents connect; default `0.0.0.0:4443`.
    pub agent_listen: Option<String>,
    /// Names agents reach the agent listener by (its certificate); the first goes in tokens.
    #[serde(default)]
    pub agent_names: Vec<String>,
    /// The edge's (wildcard) domain, e.g. `*.tunnel.example.com`.
    pub domain: Option<String>,
    /// Certificate chain (PEM) for `domain`.
    pub crt: Option<PathBuf>,
    /// Private key (PEM) of `crt`.
    pub key: Option<PathBuf>,
    /// CAs (PEM) of the agents' own certificates, instead of the edge's agent CA.
    pub agent_cas: Option<PathBuf>,
    /// Silence allowed before an agent's endpoints are withdrawn; default `15s`.
    pub heartbeat_tolerance: Option<String>,
    /// `IP:PORT` of the admin API, or `off`; default `127.0.0.1:9443`.
    pub admin_listen: Option<String>,
    /// CAs (PEM) of the admin API's administrators; default: the edge's own admin CA.
    pub admin_cas: Option<PathBuf>,
    /// The control-plane store: a `postgres://` URL (several edges) or a SQLite file
    /// (relative to the file); default `$MOAT_HOME/edge/store.db`.
    pub store: Option<String>,
    /// `[[edge.grants]]`: which agents may publish which hostnames.
    #[serde(default)]
    pub grants: Vec<GrantSpec>,
}

/// One `[[edge.grants]]` table as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantSpec {
    /// The agents' certificate CN, exact or a glob such as `ci-*`.
    pub agents: Option<String>,
    /// Hostname globs they may publish: exact names or `*.` and a domain.
    pub hostnames: Option<Vec<String>>,
}

/// The `[agent]` table as written: the edge this process publishes through.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    /// `HOST:PORT` of the edge's agent listener, or several (`["a:4443", "b:4443"]`): the
    /// agent keeps a session to each.
    pub edge: Option<OneOrMany>,
}

/// A string or an array of strings (`edge = "a:4443"` as well as `edge = ["a:4443", "b:4443"]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The strings, in order.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        }
    }
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
