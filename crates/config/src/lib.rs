//! The Config model shared by command-line flags and `moat.toml`: endpoints, parsed and validated.
//!
//! Both paths fill in [`EndpointSpec`]s (text, as the user wrote it) and go through
//! [`Config::from_specs`], so a flag and a file key are checked by the same rules and every
//! problem is reported with its field.
//!
//! A `moat.toml` with every key (relative paths are resolved against the file's directory):
//!
//! ```toml
//! audit_log = "audit.jsonl"         # audit events appended here; absent or "-": stdout
//! metrics_listen = "127.0.0.1:9090" # /metrics, /healthz, /readyz; absent: not served
//! max_connections = 10000           # client connections at once, all endpoints together
//!
//! [[endpoints]]
//! name = "app"                      # unique; `moat start app` runs only this endpoint
//! kind = "http"                     # "http" (reverse proxy) or "tls" (raw TCP forwarding)
//! listen = "0.0.0.0:8443"           # default
//! domain = "app.example.com"        # default "localhost"
//! upstream = "https://api.internal:8443" # 8080, host:port, http://, https:// (tls: tcp://)
//! upstream_ca = "internal-ca.pem"   # only for an https:// upstream
//! crt = "server.crt"                # with key; both absent: issued by moat's local CA
//! key = "server.key"
//! mutual_tls_cas = ["cas.pem"]      # client certificates must chain to one of these CAs
//! crls = ["ca.crl"]                 # PEM or DER
//! client_auth = "require-and-verify" # or "request" (http only: no certificate -> 403)
//! tls_min_version = "1.2"           # or "1.3"
//! # terminate_at = "edge"           # through an edge: TLS ends at "edge" or "agent"
//! default = false                   # on a shared listen address: takes clients without SNI
//! ca_hints = true                   # false: no CA names in the CertificateRequest
//! session_resumption = true         # false: no session ids or tickets; every connection does a
//!                                   # full handshake (tls endpoints whose rules have
//!                                   # source_ip or expressions never resume)
//! crl_expired = "warn"              # or "refuse": a CRL past nextUpdate refuses its CA's clients
//! # upstream_proxy_protocol = 2     # tls endpoints only: PROXY protocol header, 1 or 2
//! upstream_protocol = "auto"        # http only: "http1", "http2" (gRPC, h2c to http://) or
//!                                   # "auto": HTTP/2 for gRPC requests and h2-by-ALPN upstreams
//! # publish = true                  # published through the [agent]'s edge instead of listening
//! # pool = true                     # published: share the hostname with other pooling agents
//!
//! [endpoints.timeouts]              # units ms, s, m, h; these are the defaults
//! request_header = "10s"            # TLS handshake and request headers
//! idle = "60s"
//! upstream_connect = "5s"
//! upstream_response = "60s"         # http only: 504 after this long
//! request_body = "20s"              # http only: a slow request body may keep moat waiting this
//! request_body_min_rate = 500       #   long in all, plus 1 s per 500 bytes received (408 after)
//!
//! [[endpoints.rules]]               # tried in order; the first covering host × path decides
//! name = "health"
//! paths = ["/healthz"]
//! action = "bypass"                 # no certificate needed
//!
//! [[endpoints.rules]]
//! name = "admins"
//! hosts = ["app.example.com"]       # exact or "*.example.com"; none: every host
//! paths = ["/admin/*"]              # also matches "/admin"; none: every path (tls: no paths)
//! action = "allow"                  # "allow" (selectors decide), "deny" or "bypass"
//! include = [{ common_name = "ops-*" }]        # any one must match
//! require = [{ organization = "Example" }]     # all must match
//! exclude = [{ serial = "0a1b2c" }]            # none may match
//! expressions = ["conn.tls.client.subject.common_name != 'ops-intern'"] # CEL, all true
//!
//! [[endpoints.rules]]
//! name = "everyone"
//! action = "allow"
//! include = [{ valid_certificate = true }]
//!
//! [agent]                           # `moat start` publishes the publish = true endpoints
//! edge = "edge.example.com:4443"    # the edge's agent listener
//!
//! [edge]                            # `moat edge --config FILE`; the settings of its flags
//! listen = "0.0.0.0:443"            # public clients; default
//! agent_listen = "0.0.0.0:4443"     # agents; default
//! agent_names = ["edge.example.com"] # in the agent listener's certificate; first: in tokens
//! domain = "*.tunnel.example.com"   # names under it need no certificate from the agent
//! crt = "tunnel.crt"                # with key, for domain; both absent: moat's local CA
//! key = "tunnel.key"
//! agent_cas = "agents.pem"          # agents' own CAs instead of the edge's agent CA
//! heartbeat_tolerance = "15s"       # silence before an agent's endpoints are withdrawn
//! store = "postgres://moat:PASSWORD@db.internal/moat" # several edges; default: SQLite in $MOAT_HOME/edge
//! admin_listen = "127.0.0.1:9443"   # the admin API (JSON over HTTPS, admin client certificates); "off"
//! admin_cas = "admins.pem"          # the API's administrators; default: the edge's own admin CA
//!
//! [[edge.grants]]                   # agents (certificate CN glob) may publish hostnames
//! agents = "ci-*"
//! hostnames = ["*.ci.example.com"]
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod domain;
mod duration;
mod error;
mod file;
mod hostname_glob;
mod model;
mod operations;
mod problems;
mod rules;
mod spec;
mod tunnel;
mod upstream;
mod validate;

pub use domain::{domain_serves, valid_domain};
pub use duration::parse_duration;
pub use error::{ConfigError, FieldError};
pub use hostname_glob::{GlobError, HostnameGlob};
pub use model::{
    AgentConfig, ClientAuthMode, Config, CrlExpiredPolicy, DEFAULT_MAX_CONNECTIONS, EdgeConfig,
    EdgeGrant, EndpointConfig, EndpointKind, ProxyProtocolVersion, TelemetryConfig, TerminateAt,
    Timeouts, TlsVersion, Upstream, UpstreamProtocol, UpstreamScheme,
};
pub use problems::FieldStyle;
pub use rules::{RuleSpec, load_policy_file, load_policy_str, policy_text, read_policy_file};
pub use spec::{
    AgentSpec, DEFAULT_ADMIN_LISTEN, DEFAULT_AGENT_LISTEN, DEFAULT_DOMAIN, DEFAULT_EDGE_LISTEN,
    DEFAULT_HEARTBEAT_TOLERANCE, DEFAULT_LISTEN, EdgeSpec, EndpointSpec, GrantSpec, TimeoutsSpec,
};
pub use upstream::parse_upstream;
