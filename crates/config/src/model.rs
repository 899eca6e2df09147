//! The validated shape of a moat configuration: what every endpoint serves, trusts and forwards to.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything one moat process runs: built from `moat.toml` or from the flags of `moat http` /
/// `moat tls`, so both paths share one validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The endpoints, in file order; names are unique.
    pub endpoints: Vec<EndpointConfig>,
    /// Where audit events go and where metrics are served.
    pub telemetry: TelemetryConfig,
    /// Client connections served at once across every endpoint; one more is closed at once.
    pub max_connections: usize,
    /// The `[edge]` table: what `moat edge` runs; `None` when the file has none.
    pub edge: Option<EdgeConfig>,
    /// The `[agent]` table: the edge that `publish = true` endpoints go through.
    pub agent: Option<AgentConfig>,
}

/// The settings of an edge (`moat edge`): where it listens, its domain and certificate, whom it
/// trusts as agents and what they may publish. Globs stay text; the edge parses them again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeConfig {
    /// Where public clients connect.
    pub listen: SocketAddr,
    /// Where agents connect (mutual TLS).
    pub agent_listen: SocketAddr,
    /// Names agents reach the agent listener by; the first is the address tokens carry.
    pub agent_names: Vec<String>,
    /// The edge's domain, usually a wildcard such as `*.tunnel.example.com`.
    pub domain: Option<String>,
    /// Certificate chain for `domain`; `None`: moat's local CA issues one.
    pub crt: Option<PathBuf>,
    /// Private key of `crt`; present exactly when `crt` is.
    pub key: Option<PathBuf>,
    /// CAs of the agents' own certificates, instead of the edge's agent CA.
    pub agent_cas: Option<PathBuf>,
    /// Which agents may publish which hostnames, besides the grants of join tokens.
    pub grants: Vec<EdgeGrant>,
    /// How long an agent may stay silent before its endpoints are withdrawn.
    pub heartbeat_tolerance: Duration,
    /// Where the admin API listens; `None`: `off`, it does not.
    pub admin_listen: Option<SocketAddr>,
    /// CAs of the admin API's administrators; `None`: the edge's own admin CA.
    pub admin_cas: Option<PathBuf>,
    /// The control-plane store: a `postgres://` URL or a SQLite file; `None`: the default file.
    pub store: Option<String>,
}

/// One grant of an edge: agents whose certificate CN matches `agents` may publish hostnames
/// matching one of `hostnames`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeGrant {
    /// A CN, exact or a glob (`ci-*`).
    pub agents: String,
    /// Exact hostnames or `*.` and a domain; at least one.
    pub hostnames: Vec<String>,
}

/// The settings of an agent: the edge its published endpoints go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// `HOST:PORT` of each edge's agent listener: the agent keeps a session to every one
    /// (and to every address a name resolves to).
    pub edges: Vec<String>,
}

/// How many client connections moat serves at once unless told otherwise: about 150 MB of
/// connection state at moat's 15 KiB per idle mTLS connection, and within a raised file limit.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// Process-wide observability settings (top-level keys of `moat.toml`, or flags): one audit
/// stream and one metrics listener serve every endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TelemetryConfig {
    /// File the audit events are appended to; `None` writes them to stdout.
    pub audit_log: Option<PathBuf>,
    /// Address of the Prometheus `/metrics`, `/healthz` and `/readyz` listener; `None` serves none.
    pub metrics_listen: Option<SocketAddr>,
}

/// One listening endpoint: where it listens, which certificate it shows, whom it lets in, and
/// where it forwards.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointConfig {
    /// Unique name, used in logs and to pick endpoints in `moat start NAME`.
    pub name: String,
    /// HTTP reverse proxy or raw TLS forwarding.
    pub kind: EndpointKind,
    /// The socket address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// The hostname this endpoint serves (SNI and Host); also the SAN of an auto-issued certificate.
    pub domain: String,
    /// Where traffic goes after the client is let in.
    pub upstream: Upstream,
    /// CA bundle that verifies an `https://` upstream; the system has no roots otherwise.
    pub upstream_ca: Option<PathBuf>,
    /// Server certificate chain (PEM); `None` means moat issues one from its local CA.
    pub crt: Option<PathBuf>,
    /// Server private key (PEM); present exactly when `crt` is.
    pub key: Option<PathBuf>,
    /// PEM files of CAs whose client certificates are accepted; empty means no client
    /// certificate is asked for.
    pub mutual_tls_cas: Vec<PathBuf>,
    /// Certificate revocation lists (PEM or DER), each issued by one of `mutual_tls_cas`.
    pub crls: Vec<PathBuf>,
    /// Whether a client certificate is mandatory at the handshake.
    pub client_auth: ClientAuthMode,
    /// The oldest TLS version accepted.
    pub tls_min_version: TlsVersion,
    /// Where TLS is terminated when the endpoint is published through an edge (without an
    /// edge it ends in this process either way).
    pub terminate_at: TerminateAt,
    /// Published through an edge (by the agent) instead of listening on `listen`.
    pub publish: bool,
    /// When published: share the hostname with other agents that pool it (the edge sends each
    /// new connection to the member with the fewest open streams).
    pub pool: bool,
    /// Limits on slow clients and slow upstreams.
    pub timeouts: Timeouts,
    /// On a listen address shared by several endpoints, this one takes clients that send no
    /// SNI (others are refused with unrecognized_name).
    pub default: bool,
    /// Whether the CertificateRequest names the accepted CAs; large bundles overflow it.
    pub ca_hints: bool,
    /// Whether clients may resume TLS sessions (by session id or ticket). `false`: every
    /// connection makes a full handshake and its certificate is verified again. A tls endpoint
    /// whose rules read connection facts (`source_ip`, CEL) never resumes, whatever this says.
    pub session_resumption: bool,
    /// What happens to clients of a CA whose CRL is past its nextUpdate.
    pub crl_expired: CrlExpiredPolicy,
    /// The PROXY protocol header sent at the start of each upstream connection, if any.
    pub upstream_proxy_protocol: Option<ProxyProtocolVersion>,
    /// The HTTP version an http endpoint speaks to its upstream.
    pub upstream_protocol: UpstreamProtocol,
    /// Access rules in order; empty means every client with a verified certificate passes.
    pub rules: Vec<moat_policy::Rule>,
    /// The same rules as written, for an agent that hands them to the edge enforcing them.
    pub rule_specs: Vec<crate::rules::RuleSpec>,
    /// The `--policy` file the rules came from (flags only), so that a reload and `--watch`
    /// know to read it again.
    pub policy_file: Option<PathBuf>,
}

/// The answer to a CRL that is past its nextUpdate (its issuer stopped vouching for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CrlExpiredPolicy {
    /// Log loudly and keep checking clients against the stale CRL.
    #[default]
    Warn,
    /// Refuse every client of the CA (alert unknown_ca) until a fresh CRL is loaded.
    Refuse,
}

/// The HTTP version an http endpoint speaks to its upstream. gRPC needs HTTP/2 (trailers,
/// streams in both directions at once); most web upstreams speak only HTTP/1.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpstreamProtocol {
    /// HTTP/2 for a client's HTTP/2 gRPC request (`content-type: application/grpc*`), by prior
    /// knowledge (h2c) to an `http://` upstream; to an `https://` upstream, whatever its ALPN
    /// picks of h2 and http/1.1; else HTTP/1.1.
    #[default]
    Auto,
    /// HTTP/1.1 always, as nginx's `proxy_pass`.
    Http1,
    /// HTTP/2 always: h2c by prior knowledge to `http://`, ALPN h2 to `https://` (nginx's
    /// `grpc_pass`). WebSocket upgrades still go over HTTP/1.1.
    Http2,
}

impl UpstreamProtocol {
    /// The name the configuration uses (`auto`, `http1`, `http2`).
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamProtocol::Auto => "auto",
            UpstreamProtocol::Http1 => "http1",
            UpstreamProtocol::Http2 => "http2",
        }
    }

    /// The protocol named `text`, as [`UpstreamProtocol::as_str`] writes it.
    pub fn parse(text: &str) -> Option<UpstreamProtocol> {
        match text {
            "auto" => Some(UpstreamProtocol::Auto),
            "http1" => Some(UpstreamProtocol::Http1),
            "http2" => Some(UpstreamProtocol::Http2),
            _ => None,
        }
    }
}

/// The PROXY protocol version (HAProxy's spec) that tells an upstream who connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProtocolVersion {
    /// The text header: addresses only.
    V1,
    /// The binary header: addresses plus TLS facts (version, SNI, client CN) as TLVs.
    V2,
}

/// What an endpoint does with a connection once the client is let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointKind {
    /// Terminate TLS and reverse-proxy HTTP/1.1 and HTTP/2 requests.
    Http,
    /// Terminate TLS and forward the decrypted byte stream over TCP.
    Tls,
}

/// The service behind an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// How moat talks to it.
    pub scheme: UpstreamScheme,
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

/// The protocol moat speaks to an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamScheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS, verified against `upstream_ca`.
    Https,
    /// A raw TCP stream (`moat tls`).
    Tcp,
}

/// ngrok's client verification strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuthMode {
    /// A valid client certificate is required to finish the handshake.
    #[default]
    RequireAndVerify,
    /// A certificate is asked for and verified when given; a client without one reaches the
    /// request policy, which refuses it with 403 unless a rule lets it pass.
    Request,
}

/// A TLS protocol version bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum TlsVersion {
    /// TLS 1.2 (RFC 5246).
    #[default]
    Tls12,
    /// TLS 1.3 (RFC 8446).
    Tls13,
}

/// Where TLS is terminated for a `moat tls` endpoint (ngrok's `--terminate-at`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TerminateAt {
    /// At the public edge.
    #[default]
    Edge,
    /// At the agent next to the service (zero-knowledge edge).
    Agent,
}

/// Time limits that keep slow or stuck peers from holding resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Time allowed for the TLS handshake and for a client to send a request's headers.
    pub request_header: Duration,
    /// How long a client connection may sit without a request before it is closed.
    pub idle: Duration,
    /// Time allowed to open a connection to the upstream (502 when exceeded).
    pub upstream_connect: Duration,
    /// Time allowed for the upstream to start its response (504 when exceeded).
    pub upstream_response: Duration,
    /// Waiting for a slow client's request body may add up to this (408 when exceeded) ...
    pub request_body: Duration,
    /// ... plus one second for every this many bytes received (0: nothing added).
    pub request_body_min_rate: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            request_header: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            upstream_connect: Duration::from_secs(5),
            upstream_response: Duration::from_secs(60),
            request_body: Duration::from_secs(20),
            request_body_min_rate: 500,
        }
    }
}
