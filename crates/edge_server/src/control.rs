//! The control plane as one edge sees it: the store's CAs, edge-defined endpoints, grants and
//! reservations, read again on every change notification and every few seconds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use moat_config::{EndpointKind, TerminateAt};
use moat_edge::Grant;
use moat_pki::files::{PUBLIC_MODE, write_atomic};
use moat_store::{ControlState, Store, StoreError};
use tokio::sync::Notify;

/// What the edge serves from the store, parsed: the registry judges registrations by it and
/// builds the gateway's configuration from it.
#[derive(Debug, Default)]
pub(crate) struct ControlView {
    /// The grants the store holds (the API's and those joins recorded).
    pub grants: Vec<Grant>,
    /// Reserved hostname → the agent (certificate CN) it is reserved for.
    pub reservations: BTreeMap<String, String>,
    /// Edge-defined endpoints by hostname.
    pub endpoints: BTreeMap<String, DefinedEndpoint>,
}

/// An endpoint the edge's operator defined: what it is wins over what an agent asks for.
#[derive(Debug)]
pub(crate) struct DefinedEndpoint {
    /// Its id in the store.
    pub id: String,
    pub kind: EndpointKind,
    pub terminate_at: TerminateAt,
    /// Whether several agents may publish it together.
    pub pool: bool,
    /// Its CAs, one PEM file each; empty: the publishing agent's own CAs apply.
    pub ca_files: Vec<PathBuf>,
    /// Its access rules; empty: the publishing agent's own rules apply. `Err`: the stored
    /// definition does not load, and the hostname is not served at all until it is fixed
    /// (serving it without the operator's rules would let more clients in).
    pub rules: Result<Vec<moat_policy::Rule>, String>,
}

/// The store and this edge's parsed view of it.
#[derive(Debug)]
pub(crate) struct ControlPlane {
    store: Store,
    /// Where the CAs' PEM files are written for the gateway to load.
    cas_dir: PathBuf,
    /// The state last read, to tell whether a read changed anything.
    last: tokio::sync::Mutex<Option<ControlState>>,
    view: Mutex<Arc<ControlView>>,
    /// Wakes the edge's control loop at once (this edge's API made a change).
    kick: Notify,
}

impl ControlPlane {
    /// The control plane over `store`, writing CA files under `state_dir`; nothing read yet.
    pub(crate) fn new(store: Store, state_dir: &Path) -> ControlPlane {
        let cas_dir = state_dir.join("control-cas");
        // Files of a previous run: what the store holds now is written again at the first read.
        let _ = std::fs::remove_dir_all(&cas_dir);
        ControlPlane {
            store,
            cas_dir,
            last: tokio::sync::Mutex::new(None),
            view: Mutex::new(Arc::new(ControlView::default())),
            kick: Notify::new(),
        }
    }

    /// The store.
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// The view as last read.
    pub(crate) fn view(&self) -> Arc<ControlView> {
        Arc::clone(
            &self
                .view
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    /// Asks the control loop to read the store now.
    pub(crate) fn kick(&self) {
        self.kick.notify_one();
    }

    /// Resolves when [`ControlPlane::kick`] was called.
    pub(crate) async fn kicked(&self) {
        self.kick.notified().await;
    }

    /// Reads the store; `true` when what it holds changed since the last read (the view is
    /// then replaced, and the caller must apply it).
    pub(crate) async fn refresh(&self) -> Result<bool, StoreError> {
        let mut last = self.last.lock().await;
        let state = self.store.control_state().await?;
        if last.as_ref() == Some(&state) {
            return Ok(false);
        }
        let view = self.parse(&state);
        *self
            .view
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(view);
        *last = Some(state);
        Ok(true)
    }

    /// The view of `state`, with each CA written to its file (named by id and version, so a
    /// changed CA is a new file and the gateway's reload sees the change).
    fn parse(&self, state: &ControlState) -> ControlView {
        let mut ca_files = BTreeMap::new();
        if let Err(error) = std::fs::create_dir_all(&self.cas_dir) {
            tracing::error!(dir = %self.cas_dir.display(), %error, "cannot make the directory of the CAs for the gateway");
        }
        for ca in &state.cas {
            let path = self.cas_dir.join(format!("{}.v{}.pem", ca.id, ca.version));
            match write_atomic(&path, ca.ca_pem.as_bytes(), PUBLIC_MODE) {
                Ok(()) => {
                    ca_files.insert(ca.id.clone(), path);
                }
                Err(error) => {
                    tracing::error!(ca = %ca.id, %error, "cannot write a CA for the gateway")
                }
            }
        }
        remove_other_files(&self.cas_dir, &ca_files.values().cloned().collect());
        let grants = state
            .grants
            .iter()
            .filter_map(|row| match Grant::from_row(row) {
                Ok(grant) => Some(grant),
                Err(problem) => {
                    tracing::warn!(%problem, "a stored grant is ignored until it is fixed");
                    None
                }
            })
            .collect();
        let reservations = state
            .reservations
            .iter()
            .map(|row| (row.hostname.to_ascii_lowercase(), row.agent.clone()))
            .collect();
        let endpoints = state
            .endpoints
            .iter()
            .map(|row| {
                let hostname = row.hostname.to_ascii_lowercase();
                (hostname, defined_endpoint(row, &ca_files))
            })
            .collect();
        ControlView {
            grants,
            reservations,
            endpoints,
        }
    }
}

/// One stored endpoint, parsed; what does not parse makes its rules `Err`, so it is not served.
fn defined_endpoint(
    row: &moat_store::EndpointRow,
    ca_files: &BTreeMap<String, PathBuf>,
) -> DefinedEndpoint {
    let kind = match row.kind.as_str() {
        "tls" => Ok(EndpointKind::Tls),
        "http" => Ok(EndpointKind::Http),
        other => Err(format!("kind {other:?} is neither http nor tls")),
    };
    let terminate_at = match row.terminate_at.as_str() {
        "agent" => Ok(TerminateAt::Agent),
        "edge" => Ok(TerminateAt::Edge),
        other => Err(format!("terminate_at {other:?} is neither edge nor agent")),
    };
    let files: Result<Vec<PathBuf>, String> = row
        .ca_ids
        .iter()
        .map(|id| {
            ca_files
                .get(id)
                .cloned()
                .ok_or_else(|| format!("its CA {id} could not be written for the gateway"))
        })
        .collect();
    let rules = (|| {
        let kind = kind.clone()?;
        terminate_at.clone()?;
        files.clone()?;
        if row.rules.trim().is_empty() {
            return Ok(Vec::new());
        }
        let origin = format!("rules of endpoint {} ({})", row.id, row.hostname);
        moat_config::load_policy_str(&row.rules, &origin, kind).map_err(|error| error.to_string())
    })();
    if let Err(problem) = &rules {
        tracing::error!(
            endpoint = %row.id,
            hostname = %row.hostname,
            %problem,
            "an edge-defined endpoint does not load; its hostname is not served until it is fixed"
        );
    }
    DefinedEndpoint {
        id: row.id.clone(),
        kind: kind.unwrap_or(EndpointKind::Http),
        terminate_at: terminate_at.unwrap_or(TerminateAt::Edge),
        pool: row.pool,
        ca_files: files.unwrap_or_default(),
        rules,
    }
}

/// Deletes the files in `dir` that are not in `keep` (CAs deleted or changed since).
fn remove_other_files(dir: &Path, keep: &BTreeSet<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !keep.contains(&path) {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// `http` or `tls`, as the store and the API name an endpoint's kind.
pub(crate) fn kind_text(kind: EndpointKind) -> &'static str {
    match kind {
        EndpointKind::Http => "http",
        EndpointKind::Tls => "tls",
    }
}

/// `edge` or `agent`, as the store and the API name where TLS ends.
pub(crate) fn place_text(terminate_at: TerminateAt) -> &'static str {
    match terminate_at {
        TerminateAt::Edge => "edge",
        TerminateAt::Agent => "agent",
    }
}

/// How often an edge reads the store without being told to: repairs a missed notification,
/// and renews its sessions' leases well within [`crate::registry`]'s 30 s.
const REREAD_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The edge's control loop, until `stopping`: reads the store when another edge notifies a
/// change, when this edge's API made one, and every [`REREAD_EVERY`]; applies what changed;
/// renews the sessions' leases (disconnecting agents whose session an operator ended).
pub(crate) async fn follow_store(
    registry: Arc<crate::registry::Registry>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let control = Arc::clone(registry.control());
    let mut feed: Option<moat_store::ChangeFeed> = None;
    loop {
        if feed.is_none() {
            feed = match control.store().change_feed().await {
                Ok(feed) => Some(feed),
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for the other edges' changes; reading the store every 5 s");
                    None
                }
            };
        }
        tokio::select! {
            notified = next_change(&mut feed) => {
                if let Err(error) = notified {
                    tracing::warn!(%error, "the change notifications stopped; listening again");
                    feed = None;
                }
            }
            () = control.kicked() => {}
            () = tokio::time::sleep(REREAD_EVERY) => {}
            () = crate::agents::stopped(&mut stopping) => break,
        }
        match control.refresh().await {
            Ok(true) => {
                let registry = Arc::clone(&registry);
                // Reloading loads certificates and files: off the async workers.
                let _ = tokio::task::spawn_blocking(move || registry.reconcile()).await;
            }
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(%error, "cannot read the store; serving what it held before");
            }
        }
        registry.renew_sessions().await;
    }
}

async fn next_change(feed: &mut Option<moat_store::ChangeFeed>) -> Result<(), StoreError> {
    match feed {
        Some(feed) => feed.changed().await,
        None => std::future::pending().await,
    }
}
