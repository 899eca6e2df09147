//! Which connected agent publishes which hostname, and the public gateway's configuration that
//! follows from it: every change is applied with the gateway's reload (load, then swap).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use moat_config::{
    ClientAuthMode, Config, CrlExpiredPolicy, EndpointConfig, EndpointKind, ProxyProtocolVersion,
    TelemetryConfig, TerminateAt, Timeouts, TlsVersion, Upstream, UpstreamProtocol, UpstreamScheme,
};
use moat_edge::{EdgeState, Grants};
use moat_gateway::Reloader;
use moat_telemetry::{EndpointRemoval, Telemetry};
use moat_trust::ClientIdentity;
use moat_tunnel::{EdgeMessage, EndpointSpec, StreamOpener};

use crate::control::{ControlPlane, ControlView, DefinedEndpoint};
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
    /// Its session's id in the store (`ts_…`).
    pub session: String,
    /// Whether the store holds its session (recording it failed while the store was down).
    pub recorded: AtomicBool,
    /// Notified when an operator ended the session: the agent is disconnected.
    pub ended: tokio::sync::Notify,
    /// Messages for the agent that do not answer one of its own (an endpoint withdrawn).
    pub notices: tokio::sync::mpsc::UnboundedSender<EdgeMessage>,
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
    control: Arc<ControlPlane>,
    /// How the store's session records name this edge.
    edge_name: String,
    /// Every connected agent, by link id: their sessions' leases are renewed together.
    links: Mutex<BTreeMap<u64, Arc<AgentLink>>>,
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
        control: Arc<ControlPlane>,
        public_addr: SocketAddr,
        telemetry: Telemetry,
    ) -> Registry {
        let edge_name = settings.edge_name(public_addr);
        Registry {
            settings,
            state,
            control,
            edge_name,
            links: Mutex::new(BTreeMap::new()),
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

    /// The control plane: the store and this edge's view of it.
    pub(crate) fn control(&self) -> &Arc<ControlPlane> {
        &self.control
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
        let view = self.control.view();
        self.revoke_disallowed(&mut published, &view);
        let mut answers = Vec::new();
        for mut spec in specs {
            let asked = spec.hostname.clone();
            let (kind, terminate_at, pool) = (spec.kind, spec.terminate_at, spec.pool);
            let outcome = self
                .admit(&published, &view, link, &mut spec)
                .and_then(|hostname| self.add(&mut published, link, spec, hostname));
            match outcome {
                Ok(hostname) => match self.apply(&published) {
                    Ok(()) => {
                        let (kind, terminate_at, pool) = published
                            .hostnames
                            .get(&hostname)
                            .and_then(|publication| publication.members.last())
                            .map_or((kind, terminate_at, pool), |member| {
                                (member.spec.kind, member.spec.terminate_at, member.spec.pool)
                            });
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
        view: &ControlView,
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
        if let Some(defined) = view.endpoints.get(&hostname) {
            if let Err(problem) = &defined.rules {
                return Err(format!(
                    "{hostname} is defined on the edge (endpoint {}) but its definition does \
                     not load ({problem}); the edge's operator must fix it",
                    defined.id
                ));
            }
            spec.pool = defined.pool;
        }
        self.may_publish(view, link, &hostname, spec)?;
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

    /// Whether the control plane lets `link` publish `hostname` as `spec` asks: a grant covers
    /// it, it is not reserved for another agent, and an edge-defined endpoint of that name is
    /// of the same kind and terminates TLS at the same place. (A definition that does not load
    /// keeps its hostname unserved without removing the publication: fixed, it is served again.)
    fn may_publish(
        &self,
        view: &ControlView,
        link: &AgentLink,
        hostname: &str,
        spec: &EndpointSpec,
    ) -> Result<(), String> {
        Grants::new(self.settings.grants.clone())
            .with(view.grants.iter().cloned())
            .permit(&link.identity, hostname)
            .map_err(|refusal| refusal.to_string())?;
        if let Some(owner) = view.reservations.get(hostname)
            && *owner != link.name
        {
            return Err(format!(
                "{hostname} is reserved for agent {owner}; publish another hostname, or ask the \
                 edge's operator to release the reservation"
            ));
        }
        if let Some(defined) = view.endpoints.get(hostname) {
            let (kind, terminate_at) = spec_kind(spec);
            if defined.kind != kind || defined.terminate_at != terminate_at {
                return Err(format!(
                    "{hostname} is defined on the edge (endpoint {}) as a {} endpoint \
                     terminating TLS at the {}; publish it that way",
                    defined.id,
                    crate::control::kind_text(defined.kind),
                    crate::control::place_text(defined.terminate_at)
                ));
            }
        }
        Ok(())
    }

    /// Removes every publication the control plane no longer allows (a grant removed, a
    /// reservation or an edge definition added).
    fn revoke_disallowed(&self, published: &mut Published, view: &ControlView) {
        let mut revoked = Vec::new();
        for (hostname, publication) in &published.hostnames {
            for member in &publication.members {
                if let Err(reason) = self.may_publish(view, &member.link, hostname, &member.spec) {
                    revoked.push((hostname.clone(), Arc::clone(&member.link), reason));
                }
            }
        }
        for (hostname, link, reason) in revoked {
            remove_member(published, &hostname, link.id);
            tracing::warn!(hostname = %hostname, agent = %link.name, reason = %reason, "endpoint removed: the control plane no longer allows it");
            self.telemetry
                .endpoint_removed(&hostname, &link.name, EndpointRemoval::Revoked);
            let _ = link
                .notices
                .send(EdgeMessage::Withdrawn { hostname, reason });
        }
    }

    /// Applies the control plane's view after it changed: publications it no longer allows
    /// are removed, and the gateway loads the rest with the store's CAs and rules (the
    /// gateway's reload: load, then swap, open connections kept).
    pub(crate) fn reconcile(&self) {
        let mut published = self.lock();
        let view = self.control.view();
        self.revoke_disallowed(&mut published, &view);
        if let Err(error) = self.apply(&published) {
            tracing::error!(%error, "cannot apply the control plane's change");
        }
    }

    /// Records `link`'s session in the store, under a lease this edge renews.
    pub(crate) async fn open_session(&self, link: &Arc<AgentLink>) {
        self.links
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(link.id, Arc::clone(link));
        self.record_session(link).await;
    }

    async fn record_session(&self, link: &AgentLink) {
        match self
            .control
            .store()
            .open_session(
                &link.session,
                &link.name,
                &self.edge_name,
                unix_now(),
                SESSION_LEASE,
            )
            .await
        {
            Ok(()) => link.recorded.store(true, Ordering::Relaxed),
            Err(error) => {
                tracing::warn!(agent = %link.name, %error, "cannot record the agent's session; trying again at the next renewal");
            }
        }
    }

    /// Forgets `link`'s session: its agent left.
    pub(crate) async fn close_session(&self, link: &AgentLink) {
        self.links
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&link.id);
        if let Err(error) = self.control.store().end_session(&link.session).await {
            tracing::warn!(agent = %link.name, %error, "cannot remove the agent's session from the store; its lease lapses instead");
        }
    }

    /// Renews the lease of every session this edge holds; a session the store no longer has
    /// was ended by an operator, and its agent is disconnected. Lapsed sessions of any edge
    /// (one that crashed) are swept.
    pub(crate) async fn renew_sessions(&self) {
        let links: Vec<Arc<AgentLink>> = self
            .links
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .values()
            .cloned()
            .collect();
        let store = self.control.store();
        let now = unix_now();
        for link in links {
            if !link.recorded.load(Ordering::Relaxed) {
                self.record_session(&link).await;
                continue;
            }
            match store
                .renew_session(&link.session, &self.edge_name, now, SESSION_LEASE)
                .await
            {
                Ok(true) => {}
                Ok(false) => link.ended.notify_one(),
                Err(error) => {
                    tracing::warn!(agent = %link.name, %error, "cannot renew the agent's session lease");
                }
            }
        }
        if let Err(error) = store.sweep_sessions(now).await {
            tracing::warn!(%error, "cannot sweep lapsed sessions");
        }
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
        let view = self.control.view();
        let mut endpoints = vec![self.edge_endpoint()];
        for (hostname, publication) in &published.hostnames {
            let defined = view.endpoints.get(hostname);
            if defined.is_some_and(|defined| defined.rules.is_err()) {
                // Fails closed: never served without the operator's definition.
                continue;
            }
            endpoints.push(self.published_endpoint(hostname, &publication.members[0], defined)?);
        }
        // Defined on the edge and published by nobody: under the edge's domain (whose
        // certificate serves them) they answer "endpoint offline" after their own handshake.
        for (hostname, defined) in &view.endpoints {
            if published.hostnames.contains_key(hostname)
                || defined.rules.is_err()
                || !self.under_domain(hostname)
            {
                continue;
            }
            let kind = defined.kind;
            endpoints.push(EndpointConfig {
                name: hostname.clone(),
                domain: hostname.clone(),
                kind,
                crt: self.settings.crt.clone(),
                key: self.settings.key.clone(),
                mutual_tls_cas: defined.ca_files.clone(),
                upstream: Upstream {
                    scheme: match kind {
                        EndpointKind::Http => UpstreamScheme::Http,
                        EndpointKind::Tls => UpstreamScheme::Tcp,
                    },
                    host: OFFLINE_HOST.to_owned(),
                    port: 1,
                },
                ..self.endpoint_base()
            });
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
    /// An edge definition (`defined`) wins: its CAs replace the agent's (and the agent's CRLs,
    /// which are of the agent's CAs) and its rules replace the agent's, each when it has any.
    fn published_endpoint(
        &self,
        hostname: &str,
        member: &Member,
        defined: Option<&DefinedEndpoint>,
    ) -> Result<EndpointConfig, String> {
        let spec = &member.spec;
        let uploaded = &member.uploaded;
        let (kind, terminate_at) = spec_kind(spec);
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
        let mut rules = match &uploaded.rules {
            Some(text) if terminate_at == TerminateAt::Edge => {
                moat_config::load_policy_str(text, &format!("rules of {hostname}"), kind)
                    .map_err(|error| error.to_string())?
            }
            _ => Vec::new(),
        };
        let mut mutual_tls_cas: Vec<_> = uploaded.mutual_tls_cas.iter().cloned().collect();
        let mut crls: Vec<_> = uploaded.crls.iter().cloned().collect();
        if let Some(defined) = defined {
            let defined_rules = defined.rules.as_ref().map_err(|problem| {
                format!("the edge's definition of {hostname} does not load: {problem}")
            })?;
            if !defined.ca_files.is_empty() {
                mutual_tls_cas = defined.ca_files.clone();
                crls.clear();
            }
            if !defined_rules.is_empty() {
                rules = defined_rules.clone();
            }
        }
        Ok(EndpointConfig {
            name: hostname.to_owned(),
            kind,
            domain: hostname.to_owned(),
            upstream,
            upstream_ca: uploaded.upstream_ca.clone(),
            crt,
            key,
            mutual_tls_cas,
            crls,
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

/// How long a session record lives without renewal: an edge that crashed loses its sessions
/// from the store after this (they are renewed every few seconds while the edge runs).
const SESSION_LEASE: i64 = 30;

/// Unix seconds now.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

/// The kind and TLS placement `spec` asks for, in the configuration's terms.
fn spec_kind(spec: &EndpointSpec) -> (EndpointKind, TerminateAt) {
    (
        match spec.kind {
            moat_tunnel::EndpointKind::Http => EndpointKind::Http,
            moat_tunnel::EndpointKind::Tls => EndpointKind::Tls,
        },
        match spec.terminate_at {
            moat_tunnel::TerminateAt::Edge => TerminateAt::Edge,
            moat_tunnel::TerminateAt::Agent => TerminateAt::Agent,
        },
    )
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
