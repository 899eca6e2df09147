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

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use moat_config::{Config, EndpointConfig};
use rustls_pki_types::UnixTime;

use crate::endpoint::{LoadedEndpoint, files_of};
use crate::error::GatewayError;
use crate::sni::Routes;
use crate::telemetry::Telemetry;
use crate::telemetry::expiry;
use crate::telemetry::metrics::ReloadOutcome;

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
    /// Counts reloads and republishes the expiry of what the new load uses.
    telemetry: Telemetry,
    /// Every bound socket and the endpoints it serves.
    slots: Vec<(ListenKey, Arc<ArcSwap<Routes>>)>,
    /// The configuration now served; the lock also keeps reloads from overlapping.
    current: Mutex<Config>,
}

/// What a successful reload changed, one sentence per change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    /// E.g. `endpoint app: cas.pem changed`; empty when nothing changed.
    pub changes: Vec<String>,
    /// Changes that need a restart (listen addresses added or given up), not applied.
    pub needs_restart: Vec<String>,
}

impl Reloader {
    /// A reloader for the sockets in `slots`, which now serve `config`.
    pub(crate) fn new(
        config: Config,
        moat_home: PathBuf,
        slots: Vec<(ListenKey, Arc<ArcSwap<Routes>>)>,
        telemetry: Telemetry,
    ) -> Reloader {
        Reloader {
            inner: Arc::new(Inner {
                moat_home,
                telemetry,
                slots,
                current: Mutex::new(config),
            }),
        }
    }

    /// Every file the served endpoints read (certificates, keys, CAs, CRLs, upstream CAs):
    /// what `moat start --watch` polls, besides the configuration file.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let current = self.lock_current();
        let mut files: Vec<PathBuf> = current.endpoints.iter().flat_map(files_of).collect();
        files.sort();
        files.dedup();
        files
    }

    /// Loads every endpoint of `config` (re-reading all its files) and, when all load, serves
    /// them for new connections and logs each change. On error nothing changes and the error
    /// names the file and the fix. Endpoints on a listen address that is not bound are left out
    /// (a restart binds it), and an address no longer in `config` keeps its endpoints.
    pub fn reload(&self, config: Config) -> Result<ReloadSummary, GatewayError> {
        let outcome = self.apply(config);
        let telemetry = &self.inner.telemetry;
        match outcome {
            Ok(_) => {
                telemetry.config_reloaded(ReloadOutcome::Success);
                let certificates: Vec<_> = self
                    .inner
                    .slots
                    .iter()
                    .flat_map(|(_, routes)| routes.load().endpoints().to_vec())
                    .flat_map(|endpoint| {
                        expiry::certificates_in_use(&endpoint.config, endpoint.issued_leaf.as_ref())
                    })
                    .collect();
                telemetry.track_certificates(&certificates);
            }
            Err(_) => telemetry.config_reloaded(ReloadOutcome::Failure),
        }
        outcome
    }

    /// The reload itself; [`Reloader::reload`] adds the bookkeeping.
    fn apply(&self, config: Config) -> Result<ReloadSummary, GatewayError> {
        let mut current = self.lock_current();
        let running: HashMap<String, Arc<LoadedEndpoint>> = self
            .inner
            .slots
            .iter()
            .flat_map(|(_, routes)| routes.load().endpoints().to_vec())
            .map(|endpoint| (endpoint.config.name.clone(), endpoint))
            .collect();

        let mut needs_restart = Vec::new();
        let mut groups: HashMap<ListenKey, Vec<Arc<LoadedEndpoint>>> = HashMap::new();
        let mut served = Vec::new();
        for endpoint in &config.endpoints {
            let key = ListenKey::of(endpoint);
            if !self.inner.slots.iter().any(|(slot, _)| *slot == key) {
                needs_restart.push(format!(
                    "endpoint {} listens on {}, which is not bound; restart moat to serve it",
                    endpoint.name, endpoint.listen
                ));
                continue;
            }
            let previous = running.get(&endpoint.name);
            let loaded = match previous {
                // Unchanged endpoints keep their load, so their clients keep resuming.
                Some(previous) if previous.is_current(endpoint) => Arc::clone(previous),
                _ => Arc::new(LoadedEndpoint::load(
                    endpoint,
                    &self.inner.moat_home,
                    previous.map(Arc::as_ref),
                    &self.inner.telemetry,
                )?),
            };
            groups.entry(key).or_default().push(loaded);
            served.push(endpoint.name.clone());
        }

        let mut changes = Vec::new();
        for (key, routes) in &self.inner.slots {
            let Some(members) = groups.get(key) else {
                let kept: Vec<String> = routes
                    .load()
                    .endpoints()
                    .iter()
                    .map(|endpoint| endpoint.config.name.clone())
                    .collect();
                needs_restart.push(format!(
                    "the configuration no longer has endpoints on {}; endpoint(s) {} keep \
                     serving there until moat restarts",
                    describe(key, routes),
                    kept.join(", ")
                ));
                continue;
            };
            for member in members {
                changes.extend(describe_changes(
                    running.get(&member.config.name).map(Arc::as_ref),
                    member,
                ));
            }
        }
        // An endpoint is gone when its address is served anew without it (an address left
        // out of the configuration keeps its endpoints, reported above).
        for (key, routes) in &self.inner.slots {
            if !groups.contains_key(key) {
                continue;
            }
            for endpoint in routes.load().endpoints() {
                if !served.contains(&endpoint.config.name) {
                    changes.push(format!("endpoint {} removed", endpoint.config.name));
                }
            }
        }

        // Everything loaded: now swap, each address at once.
        for (key, routes) in &self.inner.slots {
            if let Some(members) = groups.remove(key) {
                routes.store(Arc::new(Routes::new(members)));
            }
        }
        let now = UnixTime::now();
        for (_, routes) in &self.inner.slots {
            for endpoint in routes.load().endpoints() {
                endpoint.log_stale_crls(now);
            }
        }
        *current = config;
        Ok(ReloadSummary {
            changes,
            needs_restart,
        })
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
            for (_, routes) in &self.inner.slots {
                for endpoint in routes.load().endpoints() {
                    endpoint.log_stale_crls(now);
                }
            }
        }
    }

    fn lock_current(&self) -> std::sync::MutexGuard<'_, Config> {
        // A panic mid-reload happens before the swap, so the stored config is still the served one.
        self.inner
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The address of a slot, for a log line.
fn describe(key: &ListenKey, routes: &ArcSwap<Routes>) -> String {
    match key {
        ListenKey::Address(address) => address.to_string(),
        ListenKey::Fresh(_) => routes
            .load()
            .endpoints()
            .first()
            .map(|endpoint| endpoint.config.listen.to_string())
            .unwrap_or_default(),
    }
}

/// What differs between an endpoint's previous load and this one.
fn describe_changes(previous: Option<&LoadedEndpoint>, next: &LoadedEndpoint) -> Vec<String> {
    let name = &next.config.name;
    let Some(previous) = previous else {
        return vec![format!("endpoint {name} added on {}", next.config.listen)];
    };
    let mut changes = Vec::new();
    if previous.config != next.config {
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
