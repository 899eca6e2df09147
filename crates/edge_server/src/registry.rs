//! Which connected agent publishes which hostname, and the public gateway's configuration that
//! follows from it: every change is applied with the gateway's reload (load, then swap).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use moat_config::{
    ClientAuthMode, Config, CrlExpiredPolicy, EndpointConfig, EndpointKind, ProxyProtocolVersion,
    TelemetryConfig, TerminateAt, Timeouts, TlsVersion, Upstream, UpstreamProtocol, UpstreamScheme,
};
use moat_edge::EdgeState;
use moat_gateway::Reloader;
use moat_telemetry::{EndpointRemoval, Telemetry};
use moat_trust::ClientIdentity;
use moat_tunnel::{EdgeMessage, EndpointSpec, StreamOpener};

use crate::settings::EdgeSettings;
use crate::uploads::{self, Uploaded};

/// The name of the edge's own endpoint: the stand-in that answers for hostnames nobody
/// publishes (parentheses: never a hostname, so never a published endpoint's name).
pub(crate) const EDGE_ENDPOINT: &str = "(edge)";

/// The upstream host of endpoints nobody serves (`.invalid` never resolves, RFC 2606): the
/// gateway answers them offline and never dials it.
pub(crate) const OFFLINE_HOST: &str = "offline.invalid";

/// One connected agent's session.
#[derive(Debug)]
pub(crate) struct AgentLink {
    /// Unique for the edge process's life.
    pub id: u64,
    /// The agent's name: its certificate's CN, else its subject.
    pub name: String,
    /// The agent's verified certificate.
    pub identity: ClientIdentity,
    /// Where it connected from.
    pub address: SocketAddr,
    /// Opens streams to it.
    pub opener: StreamOpener,
    /// Its streams open now: a pool sends new clients to the member with the fewest.
    pub open_streams: AtomicUsize,
}

/// One agent's claim on a hostname, with what it uploaded.
#[derive(Debug)]
struct Member {
    link: Arc<AgentLink>,
    spec: EndpointSpec,
    uploaded: Uploaded,
}

/// A hostname being published, by one agent or a pool.
#[derive(Debug)]
struct Publication {
    /// In order of registration; the first one's material is what the edge serves with.
    members: Vec<Member>,
}

#[derive(Debug, Default)]
struct Published {
    hostnames: BTreeMap<String, Publication>,
    /// tls hostnames published earlier and not now: refused with `unrecognized_name` even
    /// under the edge's domain, whose stand-in speaks HTTP.
    withdrawn_tls: BTreeSet<String>,
}

/// The edge's registry; shared by the agent listener (which changes it) and the tunnel routes
/// (which read it for each public connection).
pub(crate) struct Registry {
    settings: EdgeSettings,
    state: Arc<EdgeState>,
    /// The public gateway's listen address, resolved (never port 0).
    public_addr: SocketAddr,
    published: Mutex<Published>,
    reloader: OnceLock<Reloader>,
    next_link: AtomicU64,
    /// Where agent sessions and endpoint changes are reported (the gateway's own telemetry).
    telemetry: Telemetry,
}

impl Registry {
    pub(crate) fn new(
        settings: EdgeSettings,
        state: Arc<EdgeState>,
        public_addr: SocketAddr,
        telemetry: Telemetry,
    ) -> Registry {
        Registry {
            settings,
            state,
            public_addr,
            published: Mutex::new(Published::default()),
            reloader: OnceLock::new(),
            next_link: AtomicU64::new(1),
            telemetry,
        }
    }

    /// Where the edge reports agent sessions, endpoint changes and tunnel streams.
    pub(crate) fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// The settings the edge started with.
    pub(crate) fn settings(&self) -> &EdgeSettings {
        &self.settings
    }

    /// The edge's trust state (tokens, agent CA, grants).
    pub(crate) fn state(&self) -> &Arc<EdgeState> {
        &self.state
    }

    /// The public address, as clients reach it.
    pub(crate) fn public_addr(&self) -> SocketAddr {
        self.public_addr
    }

    /// Connects the registry to the gateway it configures.
    pub(crate) fn serve_with(&self, reloader: Reloader) {
        let _ = self.reloader.set(reloader);
    }

    /// A number for a new agent link.
    pub(crate) fn next_link_id(&self) -> u64 {
        self.next_link.fetch_add(1, Ordering::Relaxed)
    }

    /// The agent that takes the next stream for `hostname`: the pool member with the fewest
    /// open streams; `None` when nobody publishes it.
    pub(crate) fn pick(&self, hostname: &str) -> Option<Arc<AgentLink>> {
        let published = self.lock();
        published
            .hostnames
            .get(hostname)?
            .members
            .iter()
            .min_by_key(|member| member.link.open_streams.load(Ordering::Relaxed))
            .map(|member| Arc::clone(&member.link))
    }

    /// Publishes `specs` for `link`, each checked against the grants and the hostnames other
    /// agents hold; the answer to each, in order. Accepted ones are served once the gateway
    /// has loaded them: one that fails to load (a bad certificate) is refused with the reason.
    pub(crate) fn register(
        &self,
        link: &Arc<AgentLink>,
        specs: Vec<EndpointSpec>,
    ) -> Vec<EdgeMessage> {
        let mut published = self.lock();
        let mut answers = Vec::new();
        for mut spec in specs {
            let asked = spec.hostname.clone();
            let (kind, terminate_at, pool) = (spec.kind, spec.terminate_at, spec.pool);
            let outcome = self
                .admit(&published, link, &mut spec)
                .and_then(|hostname| self.add(&mut published, link, spec, hostname));
            match outcome {
                Ok(hostname) => match self.apply(&published) {
                    Ok(()) => {
                        tracing::info!(
                            hostname = %hostname,
                            agent = %link.name,
                            agent_address = %link.address,
                            "endpoint published"
                        );
                        self.telemetry.endpoint_published(
                            &hostname,
                            &link.name,
                            kind_name(kind),
                            terminate_at_name(terminate_at),
                            pool,
                        );
                        answers.push(EdgeMessage::Registered {
                            url: self.url_of(&hostname, &published),
                            hostname,
                        });
                    }
                    Err(reason) => {
                        remove_member(&mut published, &hostname, link.id);
                        self.telemetry.endpoint_removed(
                            &hostname,
                            &link.name,
                            EndpointRemoval::RefusedOnLoad,
                        );
                        let _ = self.apply(&published);
                        answers.push(refused(&hostname, reason));
                    }
                },
                Err(reason) => answers.push(refused(&asked, reason)),
            }
        }
        answers
    }

    /// Withdraws `hostnames` that `link` publishes.
    pub(crate) fn withdraw(&self, link: &AgentLink, hostnames: &[String]) {
        let mut published = self.lock();
        for hostname in hostnames {
            let hostname = hostname.trim_end_matches('.').to_ascii_lowercase();
            if remove_member(&mut published, &hostname, link.id) {
                tracing::info!(hostname = %hostname, agent = %link.name, "endpoint removed: the agent withdrew it");
                self.telemetry
                    .endpoint_removed(&hostname, &link.name, EndpointRemoval::Withdrawn);
            }
        }
        if let Err(error) = self.apply(&published) {
            tracing::error!(%error, "cannot apply the edge's configuration after a withdrawal");
        }
    }

    /// Withdraws everything `link` publishes: its session ended.
    pub(crate) fn disconnect(&self, link: &AgentLink, reason: &str) {
        let mut published = self.lock();
        let held: Vec<String> = published
            .hostnames
            .iter()
            .filter(|(_, publication)| {
                publication
                    .members
                    .iter()
                    .any(|member| member.link.id == link.id)
            })
            .map(|(hostname, _)| hostname.clone())
            .collect();
        for hostname in &held {
            remove_member(&mut published, hostname, link.id);
            tracing::info!(hostname = %hostname, agent = %link.name, reason, "endpoint removed: its agent disconnected");
            self.telemetry.endpoint_removed(
                hostname,
                &link.name,
                EndpointRemoval::AgentDisconnected,
            );
        }
        if let Err(error) = self.apply(&published) {
            tracing::error!(%error, "cannot apply the edge's configuration after an agent left");
        }
    }

    /// Checks one spec: its hostname (assigned under the edge's domain when empty), the grant,
    /// and whether another agent holds it. Returns the hostname.
    fn admit(
        &self,
        published: &Published,
        link: &AgentLink,
        spec: &mut EndpointSpec,
    ) -> Result<String, String> {
        let hostname = if spec.hostname.trim().is_empty() {
            self.assign_hostname(published, link)?
        } else {
            spec.hostname.trim_end_matches('.').to_ascii_lowercase()
        };
        if !moat_config::valid_domain(&hostname) || hostname.starts_with("*.") {
            return Err(format!(
                "{hostname:?} is not a hostname an endpoint can be published on; give a DNS name such as app.example.com"
            ));
        }
        let grants = self
            .state
            .grants(self.settings.grants.clone())
            .map_err(|error| error.to_string())?;
        grants
            .permit(&link.identity, &hostname)
            .map_err(|refusal| refusal.to_string())?;
        if let Some(held) = published.hostnames.get(&hostname) {
            if held.members.iter().any(|member| member.link.id == link.id) {
                return Err(format!(
                    "{hostname} is already published on this connection"
                ));
            }
            let first = &held.members[0];
            if !(spec.pool && first.spec.pool) {
                return Err(format!(
                    "{hostname} is published by agent {} ({}); publish another hostname, or \
                     let both agents share it as a pool",
                    first.link.name, first.link.address
                ));
            }
            if first.spec.kind != spec.kind || first.spec.terminate_at != spec.terminate_at {
                return Err(format!(
                    "{hostname} is pooled by agent {} as a different kind of endpoint; pool \
                     members must publish the same kind and terminate TLS at the same place",
                    first.link.name
                ));
            }
        }
        if spec.terminate_at == moat_tunnel::TerminateAt::Edge
            && spec.certificate_pem.is_none()
            && !self.under_domain(&hostname)
            && self.settings.domain.is_some()
        {
            return Err(format!(
                "{hostname} is not under the edge's domain {}, so the edge has no certificate \
                 for it; upload the endpoint's certificate and key, or publish a hostname \
                 under the edge's domain",
                self.settings.domain.as_deref().unwrap_or_default()
            ));
        }
        spec.hostname = hostname.clone();
        Ok(hostname)
    }

    /// A free name for `link` under the edge's domain: the agent's name, then with `-2`, `-3`...
    fn assign_hostname(&self, published: &Published, link: &AgentLink) -> Result<String, String> {
        let Some(suffix) = self
            .settings
            .domain
            .as_deref()
            .and_then(|domain| domain.strip_prefix("*."))
        else {
            return Err("no hostname was given and the edge has no wildcard domain to assign one under; give the endpoint a hostname".to_owned());
        };
        let label: String = link
            .name
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let label = label.trim_matches('-');
        let label = if label.is_empty() { "agent" } else { label };
        (1..1000)
            .map(|n| match n {
                1 => format!("{label}.{suffix}"),
                n => format!("{label}-{n}.{suffix}"),
            })
            .find(|name| !published.hostnames.contains_key(name))
            .ok_or_else(|| format!("no free name for agent {} under {suffix}", link.name))
    }

    fn under_domain(&self, hostname: &str) -> bool {
        self.settings
            .domain
            .as_deref()
            .is_some_and(|domain| moat_config::domain_serves(domain, hostname))
    }

    /// Stores the spec's material and records `link` as (a member of) the hostname's publisher.
    fn add(
        &self,
        published: &mut Published,
        link: &Arc<AgentLink>,
        spec: EndpointSpec,
        hostname: String,
    ) -> Result<String, String> {
        // Named by process too: link numbers start again with each run of the edge.
        let name = format!("{}-{}-{hostname}", std::process::id(), link.id);
        let dir = uploads::root(&self.settings.state_dir()).join(name);
        let uploaded = uploads::store(&dir, &spec).map_err(|error| error.to_string())?;
        published.withdrawn_tls.remove(&hostname);
        published
            .hostnames
            .entry(hostname.clone())
            .or_insert_with(|| Publication {
                members: Vec::new(),
            })
            .members
            .push(Member {
                link: Arc::clone(link),
                spec,
                uploaded,
            });
        Ok(hostname)
    }

    /// Has the gateway serve what `published` says.
    fn apply(&self, published: &Published) -> Result<(), String> {
        let config = self.gateway_config(published)?;
        match self.reloader.get() {
            Some(reloader) => reloader
                .reload(config)
                .map(|_| ())
                .map_err(|error| error.to_string()),
            None => Ok(()),
        }
    }

    /// The public gateway's configuration now.
    pub(crate) fn current_config(&self) -> Result<Config, String> {
        self.gateway_config(&self.lock())
    }

    fn gateway_config(&self, published: &Published) -> Result<Config, String> {
        let mut endpoints = vec![self.edge_endpoint()];
        for (hostname, publication) in &published.hostnames {
            endpoints.push(self.published_endpoint(hostname, &publication.members[0])?);
        }
        for hostname in &published.withdrawn_tls {
            endpoints.push(EndpointConfig {
                name: hostname.clone(),
                domain: hostname.clone(),
                kind: EndpointKind::Tls,
                upstream: Upstream {
                    scheme: UpstreamScheme::Tcp,
                    host: OFFLINE_HOST.to_owned(),
                    port: 1,
                },
                ..self.endpoint_base()
            });
        }
        Ok(Config {
            endpoints,
            telemetry: TelemetryConfig::default(),
            max_connections: moat_config::DEFAULT_MAX_CONNECTIONS,
            edge: None,
            agent: None,
        })
    }

    /// The edge's stand-in: over HTTP under its domain ("endpoint offline"), or, without a
    /// domain, a refusal of every name nobody publishes.
    fn edge_endpoint(&self) -> EndpointConfig {
        let base = self.endpoint_base();
        match &self.settings.domain {
            Some(domain) => EndpointConfig {
                name: EDGE_ENDPOINT.to_owned(),
                kind: EndpointKind::Http,
                domain: domain.clone(),
                crt: self.settings.crt.clone(),
                key: self.settings.key.clone(),
                upstream: Upstream {
                    scheme: UpstreamScheme::Http,
                    host: OFFLINE_HOST.to_owned(),
                    port: 80,
                },
                ..base
            },
            None => EndpointConfig {
                name: EDGE_ENDPOINT.to_owned(),
                kind: EndpointKind::Tls,
                domain: OFFLINE_HOST.to_owned(),
                upstream: Upstream {
                    scheme: UpstreamScheme::Tcp,
                    host: OFFLINE_HOST.to_owned(),
                    port: 1,
                },
                ..base
            },
        }
    }

    /// What every endpoint the edge serves shares.
    fn endpoint_base(&self) -> EndpointConfig {
        EndpointConfig {
            name: String::new(),
            kind: EndpointKind::Http,
            listen: self.public_addr,
            domain: String::new(),
            upstream: Upstream {
                scheme: UpstreamScheme::Http,
                host: OFFLINE_HOST.to_owned(),
                port: 80,
            },
            upstream_ca: None,
            crt: None,
            key: None,
            mutual_tls_cas: Vec::new(),
            crls: Vec::new(),
            client_auth: ClientAuthMode::RequireAndVerify,
            tls_min_version: TlsVersion::Tls12,
            terminate_at: TerminateAt::Edge,
            publish: false,
            pool: false,
            timeouts: Timeouts::default(),
            default: false,
            ca_hints: true,
            session_resumption: true,
            crl_expired: CrlExpiredPolicy::Warn,
            upstream_proxy_protocol: None,
            upstream_protocol: UpstreamProtocol::Auto,
            rules: Vec::new(),
            rule_specs: Vec::new(),
            policy_file: None,
        }
    }

    /// The endpoint the gateway serves for a published hostname, from its first member's spec.
    fn published_endpoint(
        &self,
        hostname: &str,
        member: &Member,
    ) -> Result<EndpointConfig, String> {
        let spec = &member.spec;
        let uploaded = &member.uploaded;
        let kind = match spec.kind {
            moat_tunnel::EndpointKind::Http => EndpointKind::Http,
            moat_tunnel::EndpointKind::Tls => EndpointKind::Tls,
        };
        let terminate_at = match spec.terminate_at {
            moat_tunnel::TerminateAt::Edge => TerminateAt::Edge,
            moat_tunnel::TerminateAt::Agent => TerminateAt::Agent,
        };
        let upstream = match &spec.upstream {
            Some(text) => moat_config::parse_upstream(text, kind)
                .map_err(|problem| format!("upstream {text:?}: {problem}"))?,
            None => Upstream {
                scheme: match kind {
                    EndpointKind::Http => UpstreamScheme::Http,
                    EndpointKind::Tls => UpstreamScheme::Tcp,
                },
                host: "agent.invalid".to_owned(),
                port: 80,
            },
        };
        let (crt, key) = match (&uploaded.crt, &uploaded.key) {
            (Some(crt), Some(key)) => (Some(crt.clone()), Some(key.clone())),
            _ if self.under_domain(hostname) => {
                (self.settings.crt.clone(), self.settings.key.clone())
            }
            _ => (None, None),
        };
        let rules = match &uploaded.rules {
            Some(text) if terminate_at == TerminateAt::Edge => {
                moat_config::load_policy_str(text, &format!("rules of {hostname}"), kind)
                    .map_err(|error| error.to_string())?
            }
            _ => Vec::new(),
        };
        Ok(EndpointConfig {
            name: hostname.to_owned(),
            kind,
            domain: hostname.to_owned(),
            upstream,
            upstream_ca: uploaded.upstream_ca.clone(),
            crt,
            key,
            mutual_tls_cas: uploaded.mutual_tls_cas.iter().cloned().collect(),
            crls: uploaded.crls.iter().cloned().collect(),
            terminate_at,
            rules,
            upstream_proxy_protocol: match spec.upstream_proxy_protocol {
                Some(1) => Some(ProxyProtocolVersion::V1),
                Some(2) => Some(ProxyProtocolVersion::V2),
                Some(other) => {
                    return Err(format!(
                        "PROXY protocol version {other} does not exist; use 1 or 2"
                    ));
                }
                None => None,
            },
            upstream_protocol: match spec.upstream_protocol.as_deref() {
                None => UpstreamProtocol::Auto,
                Some(text) => UpstreamProtocol::parse(text).ok_or_else(|| {
                    format!("upstream protocol {text:?} does not exist; use http1, http2 or auto")
                })?,
            },
            client_auth: if spec.client_certificate_optional {
                ClientAuthMode::Request
            } else {
                ClientAuthMode::RequireAndVerify
            },
            ..self.endpoint_base()
        })
    }

    /// The URL the public reaches `hostname` at.
    fn url_of(&self, hostname: &str, published: &Published) -> String {
        let scheme = match published
            .hostnames
            .get(hostname)
            .map(|publication| publication.members[0].spec.kind)
        {
            Some(moat_tunnel::EndpointKind::Tls) => "tls",
            _ => "https",
        };
        match self.public_addr.port() {
            443 => format!("{scheme}://{hostname}"),
            port => format!("{scheme}://{hostname}:{port}"),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Published> {
        self.published
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Removes `link`'s claim on `hostname` and its upload; true when it held one.
fn remove_member(published: &mut Published, hostname: &str, link: u64) -> bool {
    let Some(publication) = published.hostnames.get_mut(hostname) else {
        return false;
    };
    let Some(index) = publication
        .members
        .iter()
        .position(|member| member.link.id == link)
    else {
        return false;
    };
    let member = publication.members.remove(index);
    uploads::remove(&member.uploaded);
    if publication.members.is_empty() {
        published.hostnames.remove(hostname);
        if member.spec.kind == moat_tunnel::EndpointKind::Tls {
            published.withdrawn_tls.insert(hostname.to_owned());
        }
    }
    true
}

/// `http` or `tls`, as audit events name an endpoint's kind.
fn kind_name(kind: moat_tunnel::EndpointKind) -> &'static str {
    match kind {
        moat_tunnel::EndpointKind::Http => "http",
        moat_tunnel::EndpointKind::Tls => "tls",
    }
}

/// `edge` or `agent`, as audit events name where an endpoint's TLS ends.
fn terminate_at_name(terminate_at: moat_tunnel::TerminateAt) -> &'static str {
    match terminate_at {
        moat_tunnel::TerminateAt::Edge => "edge",
        moat_tunnel::TerminateAt::Agent => "agent",
    }
}

fn refused(hostname: &str, reason: String) -> EdgeMessage {
    tracing::warn!(hostname, reason = %reason, "registration refused");
    EdgeMessage::Refused {
        hostname: hostname.to_owned(),
        reason,
    }
}
