//! Reload triggers: SIGHUP, and with `--watch` a change to any file moat reads.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use moat_config::Config;
use moat_gateway::Reloader;
use tokio::signal::unix::{Signal, SignalKind};

/// Builds the configuration again for a reload: re-reads `moat.toml`, or for `moat http|tls`
/// validates the same flags again and re-reads their `--policy` file (the other files they
/// name are re-read by the reload).
pub type ConfigSource = Arc<dyn Fn() -> anyhow::Result<Config> + Send + Sync>;

/// How often `--watch` looks at the files. Polling rather than inotify (the `notify` crate):
/// certificates are usually replaced by renaming a new file over the old one, which ends an
/// inotify watch on the old file, and a stat per file per second costs nothing next to TLS.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Starts catching SIGHUP. Call it before telling anyone moat is ready: until then SIGHUP keeps
/// its default action, which ends the process.
pub fn catch_sighup() -> Option<Signal> {
    match tokio::signal::unix::signal(SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGHUP; reloading by signal is off");
            None
        }
    }
}

/// Reloads on every SIGHUP caught by `hangups`; runs until the process ends.
pub async fn reload_on_sighup(mut hangups: Signal, reloader: Reloader, source: ConfigSource) {
    while hangups.recv().await.is_some() {
        reload(&reloader, &source, "SIGHUP").await;
    }
}

/// Reloads when any file of the served endpoints or one of `also_watched` (the configuration
/// file) changes (mtime, size or existence); runs until the process ends.
pub async fn reload_on_change(
    reloader: Reloader,
    source: ConfigSource,
    also_watched: Vec<PathBuf>,
) {
    let watched = |reloader: &Reloader| {
        let mut files = reloader.watched_files();
        files.extend(also_watched.iter().cloned());
        files
    };
    let mut seen = snapshot(&watched(&reloader));
    let mut interval = tokio::time::interval(WATCH_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let now = snapshot(&watched(&reloader));
        if now == seen {
            continue;
        }
        let changed: Vec<String> = now
            .iter()
            .filter(|(path, state)| seen.get(*path) != Some(state))
            .map(|(path, _)| path.display().to_string())
            .collect();
        reload(
            &reloader,
            &source,
            &format!("--watch: {}", changed.join(", ")),
        )
        .await;
        // Files named by the new configuration are watched from now on.
        seen = snapshot(&watched(&reloader));
    }
}

/// What is compared between polls: modification time and size, `None` for a missing file.
type FileState = Option<(SystemTime, u64)>;

fn snapshot(files: &[PathBuf]) -> BTreeMap<PathBuf, FileState> {
    files
        .iter()
        .map(|path| {
            let state = std::fs::metadata(path).ok().map(|meta| {
                (
                    meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    meta.len(),
                )
            });
            (path.clone(), state)
        })
        .collect()
}

/// Runs one reload off the async threads (it reads files and builds TLS setups) and logs the
/// outcome: each change, or why nothing changed.
async fn reload(reloader: &Reloader, source: &ConfigSource, trigger: &str) {
    tracing::info!(
        trigger,
        "reloading certificates, CAs, CRLs and configuration"
    );
    let (reloader, source) = (reloader.clone(), Arc::clone(source));
    let outcome = tokio::task::spawn_blocking(move || {
        let config = source().inspect_err(|_| reloader.config_refused())?;
        anyhow::Ok(reloader.reload(config)?)
    })
    .await;
    match outcome {
        Ok(Ok(summary)) => {
            for change in &summary.changes {
                tracing::info!("reload: {change}");
            }
            if summary.changes.is_empty() {
                tracing::info!("reload complete: nothing changed");
            } else {
                tracing::info!(
                    changes = summary.changes.len(),
                    "reload complete: new connections use the new setup; open ones keep theirs"
                );
            }
        }
        // As at startup, each cause once: the gateway's errors already quote their source.
        Ok(Err(error)) => tracing::error!(
            "reload failed, still serving the previous configuration: {}",
            crate::error_report(&error)
        ),
        Err(error) => tracing::error!(
            %error,
            "reload failed, still serving the previous configuration"
        ),
    }
}
