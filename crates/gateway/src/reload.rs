//! Reloading certificates, CA bundles, CRLs and the configuration while serving.
//!
//! Everything is loaded first, and only when all of it loads are the endpoints swapped in, so
//! a bad file leaves the running setup untouched.
//!
//! New handshakes use the new endpoints; connections already accepted keep the endpoint (and so
//! the trust) they started with until they close. Each load has its own rustls `ServerConfig`,
//! and with it its own session cache and ticket keys: a session made under the old trust cannot
//! be resumed under the new one, so a client whose CA was removed or whose certificate was
//! revoked has to make a full handshake, and is refused. An endpoint whose configuration and
//! files are unchanged keeps its load, so its clients go on resuming.
//!
//! A listen address the configuration gains is bound by the reload; one it drops stops
//! accepting, and the connections open on it go on until they end. The first start is a reload
//! from nothing ([`Reloader::start`]): one place binds, groups and routes endpoints.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use moat_config::{Config, EndpointConfig};
use rustls_pki_types::UnixTime;
use tokio::sync::{mpsc, watch};

use crate::GatewayOptions;
use crate::endpoint::{LoadedEndpoint, files_of};
use crate::entrance::{self, Entrance, HandedIn};
use crate::error::GatewayError;
use crate::sni::Routes;
use crate::upstream_route::UpstreamRoutes;
use moat_proxy::http::inspect::RequestObserver;
use moat_telemetry::Telemetry;
use moat_telemetry::expiry;
use moat_telemetry::metrics::ReloadOutcome;

/// How often stale CRLs are reported again after the report at load.
const STALE_CRL_REPORT_INTERVAL: Duration = Duration::from_secs(60 * 60);

/// Which listening socket an endpoint belongs to: its address, or, for port 0 (a fresh port per
/// endpoint), the endpoint itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum ListenKey {
    /// A fixed address, possibly shared by several endpoints.
    Address(SocketAddr),
    /// Port 0: the named endpoint's own socket.
    Fresh(String),
}

impl ListenKey {
    /// The socket `endpoint` is served on.
    pub(crate) fn of(endpoint: &EndpointConfig) -> ListenKey {
        if endpoint.listen.port() == 0 {
            ListenKey::Fresh(endpoint.name.clone())
        } else {
            ListenKey::Address(endpoint.listen)
        }
    }
}

/// Swaps new endpoints into a running gateway; cheap to clone, one reload at a time.
#[derive(Clone)]
pub struct Reloader {
    inner: Arc<Inner>,
}

struct Inner {
    moat_home: PathBuf,
    /// Where endpoints' clients go when not to their upstream over TCP.
    upstream_routes: Option<Arc<dyn UpstreamRoutes>>,
    /// Whether a lone endpoint on an address still requires its name in the SNI.
    strict_sni: bool,
    /// Whether sockets are left unbound: connections come through entrances only.
    streams_only: bool,
    /// Counts reloads and republishes the expiry of what the new load uses.
    telemetry: Telemetry,
    /// The request inspector every HTTP endpoint reports to, when there is one.
    request_observer: Option<Arc<dyn RequestObserver>>,
    /// The served configuration and sockets; the lock also keeps reloads from overlapping.
    state: Mutex<State>,
    /// Sockets a reload bound, for the serving gateway to accept on.
    new_listeners: mpsc::UnboundedSender<NewListener>,
}

struct State {
    config: Config,
    slots: Vec<Slot>,
}

/// One bound socket as the reloader sees it.
pub(crate) struct Slot {
    /// Which endpoints belong on it.
    pub(crate) key: ListenKey,
    /// What it serves; swapped by a reload.
    pub(crate) routes: Arc<ArcSwap<Routes>>,
    /// Set when its address leaves the configuration: it stops accepting.
    pub(crate) retire: watch::Sender<bool>,
    /// The address it is bound to.
    pub(crate) local_addr: SocketAddr,
    /// Where connections that arrive on streams join the socket's accepted ones.
    pub(crate) entrance: Entrance,
}

/// A socket bound by a reload for an address the configuration gained.
pub(crate) struct NewListener {
    /// `None` when the gateway takes connections through its entrances only.
    pub(crate) listener: Option<std::net::TcpListener>,
    /// The address bound, or the configured one when none is.
    pub(crate) local_addr: SocketAddr,
    pub(crate) routes: Arc<ArcSwap<Routes>>,
    pub(crate) retired: watch::Receiver<bool>,
    /// The connections handed in through the address's [`Entrance`].
    pub(crate) handed_in: mpsc::Receiver<HandedIn>,
}

/// What a successful reload changed, one sentence per change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    /// E.g. `endpoint app: cas.pem changed`; empty when nothing changed.
    pub changes: Vec<String>,
}

impl Reloader {
    /// A reloader serving nothing yet; every socket it binds is sent to `new_listeners`.
    pub(crate) fn new(
        options: &GatewayOptions,
        new_listeners: mpsc::UnboundedSender<NewListener>,
    ) -> Reloader {
        let nothing = Config {
            endpoints: Vec::new(),
            telemetry: Default::default(),
            max_connections: moat_config::DEFAULT_MAX_CONNECTIONS,
            edge: None,
            agent: None,
        };
        Reloader {
            inner: Arc::new(Inner {
                moat_home: options.moat_home.clone(),
                upstream_routes: options.upstream_routes.clone(),
                strict_sni: options.strict_sni,
                streams_only: options.streams_only,
                telemetry: options.telemetry.clone(),
                request_observer: options.request_observer.clone(),
                state: Mutex::new(State {
                    config: nothing,
                    slots: Vec::new(),
                }),
                new_listeners,
            }),
        }
    }

    /// The first start: a reload from nothing, so the first bind and every later one go through
    /// the same code. Returns every endpoint with the address it is bound to.
    pub(crate) fn start(
        &self,
        config: Config,
    ) -> Result<Vec<(Arc<LoadedEndpoint>, SocketAddr)>, GatewayError> {
        self.lock_state().config.max_connections = config.max_connections;
        self.apply(config)?;
        self.inner
            .telemetry
            .track_certificates(&self.certificates_in_use());
        let state = self.lock_state();
        Ok(state
            .slots
            .iter()
            .flat_map(|slot| {
                slot.routes
                    .load()
                    .endpoints()
                    .iter()
                    .map(|endpoint| (Arc::clone(endpoint), slot.local_addr))
                    .collect::<Vec<_>>()
            })
            .collect())
    }

    /// What the served endpoints use that expires (certificates, CAs, CRLs), for the gauges.
    fn certificates_in_use(&self) -> Vec<expiry::ExpiringItem> {
        self.lock_state()
            .slots
            .iter()
            .flat_map(|slot| slot.routes.load().endpoints().to_vec())
            .flat_map(|endpoint| {
                crate::expiry_items::certificates_in_use(
                    &endpoint.config,
                    endpoint.issued_leaf.as_ref(),
                )
            })
            .collect()
    }

    /// The entrance for connections that arrive on streams to the endpoints served on
    /// `local_addr` (the address they are bound to, as in
    /// [`BoundEndpoint::local_addr`](crate::BoundEndpoint::local_addr)); `None` when no endpoint
    /// is served there. For an address a reload added, ask after that reload.
    pub fn entrance(&self, local_addr: SocketAddr) -> Option<Entrance> {
        self.lock_state()
            .slots
            .iter()
            .find(|slot| slot.local_addr == local_addr)
            .map(|slot| slot.entrance.clone())
    }

    /// The entrance of the slot serving the endpoint named `name`.
    pub fn entrance_of(&self, name: &str) -> Option<Entrance> {
        self.lock_state()
            .slots
            .iter()
            .find(|slot| {
                slot.routes
                    .load()
                    .endpoints()
                    .iter()
                    .any(|endpoint| endpoint.config.name == name)
            })
            .map(|slot| slot.entrance.clone())
    }

    /// Every file the served endpoints read (certificates, keys, CAs, CRLs, upstream CAs, the
    /// `--policy` file): what `--watch` polls, besides the configuration file.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let state = self.lock_state();
        let mut files: Vec<PathBuf> = state.config.endpoints.iter().flat_map(files_of).collect();
        files.sort();
        files.dedup();
        files
    }

    /// Loads every endpoint of `config` (re-reading all its files), binds the listen addresses
    /// it adds and, when all of that succeeds, serves the endpoints for new connections, stops
    /// accepting on addresses it no longer has (their open connections go on), and reports
    /// each change. On error nothing changes and the error names the file (or address) and the
    /// fix.
    pub fn reload(&self, config: Config) -> Result<ReloadSummary, GatewayError> {
        let outcome = self.apply(config);
        let telemetry = &self.inner.telemetry;
        match outcome {
            Ok(_) => {
                telemetry.config_reloaded(ReloadOutcome::Success);
                telemetry.track_certificates(&self.certificates_in_use());
            }
            Err(_) => telemetry.config_reloaded(ReloadOutcome::Failure),
        }
        outcome
    }

    /// Counts and audits a reload that ended before it reached the gateway because its
    /// configuration could not be built (a `moat.toml` or `--policy` file that no longer
    /// parses): the running configuration stays, as after any failed [`Reloader::reload`].
    pub fn config_refused(&self) {
        self.inner.telemetry.config_reloaded(ReloadOutcome::Failure);
    }

    /// The reload itself; [`Reloader::reload`] adds the bookkeeping.
    fn apply(&self, config: Config) -> Result<ReloadSummary, GatewayError> {
        let mut state = self.lock_state();
        let running: HashMap<String, Arc<LoadedEndpoint>> = state
            .slots
            .iter()
            .flat_map(|slot| slot.routes.load().endpoints().to_vec())
            .map(|endpoint| (endpoint.config.name.clone(), endpoint))
            .collect();

        let mut groups: Vec<(ListenKey, Vec<Arc<LoadedEndpoint>>)> = Vec::new();
        for endpoint in &config.endpoints {
            let previous = running.get(&endpoint.name);
            let loaded = match previous {
                // Unchanged endpoints keep their load, so their clients keep resuming.
                Some(previous) if previous.is_current(endpoint) => Arc::clone(previous),
                _ => Arc::new(LoadedEndpoint::load(
                    endpoint,
                    &self.inner.moat_home,
                    previous.map(Arc::as_ref),
                    &self.inner.telemetry,
                    self.inner.request_observer.as_ref(),
                    self.inner
                        .upstream_routes
                        .as_ref()
                        .and_then(|routes| routes.route(endpoint)),
                )?),
            };
            let key = ListenKey::of(endpoint);
            match groups.iter_mut().find(|(group, _)| *group == key) {
                Some((_, members)) => members.push(loaded),
                None => groups.push((key, vec![loaded])),
            }
        }
        let served: Vec<&str> = config.endpoints.iter().map(|e| e.name.as_str()).collect();

        // New addresses are bound before anything changes, so a busy port fails the reload.
        let mut fresh = Vec::new();
        for (key, members) in &groups {
            if state.slots.iter().any(|slot| slot.key == *key) {
                continue;
            }
            let first = &members[0].config;
            let bind_error = |source| GatewayError::Bind {
                endpoint: first.name.clone(),
                address: first.listen,
                source,
            };
            if self.inner.streams_only {
                fresh.push((key.clone(), members.clone(), None, first.listen));
                continue;
            }
            let listener = std::net::TcpListener::bind(first.listen).map_err(bind_error)?;
            listener.set_nonblocking(true).map_err(bind_error)?;
            let local_addr = listener.local_addr().map_err(bind_error)?;
            fresh.push((key.clone(), members.clone(), Some(listener), local_addr));
        }

        let mut changes = Vec::new();
        for slot in &state.slots {
            let old = slot.routes.load();
            let address = slot.local_addr;
            match groups.iter().find(|(key, _)| *key == slot.key) {
                Some((_, members)) => {
                    for member in members {
                        changes.extend(describe_changes(
                            running.get(&member.config.name).map(Arc::as_ref),
                            member,
                        ));
                    }
                    for endpoint in old.endpoints() {
                        if !served.contains(&endpoint.config.name.as_str()) {
                            changes.push(format!("endpoint {} removed", endpoint.config.name));
                        }
                    }
                }
                None => {
                    for endpoint in old.endpoints() {
                        if !served.contains(&endpoint.config.name.as_str()) {
                            changes.push(format!("endpoint {} removed", endpoint.config.name));
                        }
                    }
                    changes.push(format!(
                        "stopped listening on {address}: no endpoint is configured there any more; its open connections go on"
                    ));
                }
            }
        }
        for (_, members, _, local_addr) in &fresh {
            for member in members {
                if !running.contains_key(&member.config.name) {
                    changes.push(format!(
                        "endpoint {} added on {local_addr}",
                        member.config.name
                    ));
                }
                member.log_ready(*local_addr);
            }
        }

        // Everything loaded and bound: now swap, each address at once.
        let mut kept = Vec::with_capacity(state.slots.len());
        for slot in state.slots.drain(..) {
            match groups.iter().position(|(key, _)| *key == slot.key) {
                Some(index) => {
                    let (_, members) = groups.swap_remove(index);
                    slot.routes
                        .store(Arc::new(Routes::new(members, self.inner.strict_sni)));
                    kept.push(slot);
                }
                None => {
                    let _ = slot.retire.send(true);
                }
            }
        }
        state.slots = kept;
        for (key, members, listener, local_addr) in fresh {
            let routes = Arc::new(ArcSwap::from_pointee(Routes::new(
                members,
                self.inner.strict_sni,
            )));
            let (retire, retired) = watch::channel(false);
            let (queue, handed_in) = entrance::queue();
            state.slots.push(Slot {
                key,
                routes: Arc::clone(&routes),
                retire,
                local_addr,
                entrance: Entrance::new(local_addr, queue),
            });
            // Closed only when the gateway stopped serving, and then nothing is to be served.
            let _ = self.inner.new_listeners.send(NewListener {
                listener,
                local_addr,
                routes,
                retired,
                handed_in,
            });
        }
        let now = UnixTime::now();
        for slot in &state.slots {
            for endpoint in slot.routes.load().endpoints() {
                endpoint.log_stale_crls(now);
            }
        }
        // The connection permits are counted from the first start; a new cap needs a restart.
        let served_cap = state.config.max_connections;
        if config.max_connections != served_cap {
            changes.push(format!(
                "max_connections {} is not applied until moat restarts; serving at most {served_cap}",
                config.max_connections
            ));
        }
        state.config = Config {
            max_connections: served_cap,
            ..config
        };
        Ok(ReloadSummary { changes })
    }

    /// Logs stale CRLs every hour, so one that ages past its nextUpdate while moat runs is
    /// reported without a reload; runs until aborted.
    pub(crate) async fn report_stale_crls_hourly(self) {
        let mut interval = tokio::time::interval(STALE_CRL_REPORT_INTERVAL);
        // The first tick is immediate, and load already reported.
        interval.tick().await;
        loop {
            interval.tick().await;
            let now = UnixTime::now();
            let endpoints: Vec<Arc<LoadedEndpoint>> = self
                .lock_state()
                .slots
                .iter()
                .flat_map(|slot| slot.routes.load().endpoints().to_vec())
                .collect();
            for endpoint in endpoints {
                endpoint.log_stale_crls(now);
            }
        }
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic mid-reload happens before the swap, so the stored state is still the served one.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What differs between an endpoint's previous load and this one.
fn describe_changes(previous: Option<&LoadedEndpoint>, next: &LoadedEndpoint) -> Vec<String> {
    let name = &next.config.name;
    let Some(previous) = previous else {
        return vec![format!("endpoint {name} added on {}", next.config.listen)];
    };
    let mut changes = Vec::new();
    // Rules read from a policy file that changed are that file's change, reported below.
    let policy_file_changed = next
        .config
        .policy_file
        .as_ref()
        .is_some_and(|file| previous.file_digests.get(file) != next.file_digests.get(file));
    let mut before = (*previous.config).clone();
    if policy_file_changed {
        before.rules.clone_from(&next.config.rules);
        before.rule_specs.clone_from(&next.config.rule_specs);
    }
    if before != *next.config {
        changes.push(format!("endpoint {name}: configuration changed"));
    }
    for (path, digest) in &next.file_digests {
        match previous.file_digests.get(path) {
            Some(before) if before == digest => {}
            Some(_) => changes.push(format!("endpoint {name}: {} changed", show(path))),
            None => changes.push(format!("endpoint {name}: now reads {}", show(path))),
        }
    }
    changes
}

fn show(path: &Path) -> String {
    path.display().to_string()
}
