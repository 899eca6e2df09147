//! After a `101 Switching Protocols` (e.g. WebSocket), copies bytes both ways between client and upstream.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

/// Joins the client's and the upstream's upgraded connections once both sides have switched,
/// and copies until either closes or the gateway shuts down (a tunnel has no request boundary
/// at which to stop gracefully).
pub(super) fn spawn_tunnel(
    client: OnUpgrade,
    upstream: OnUpgrade,
    mut shutdown: watch::Receiver<bool>,
    endpoint: String,
) {
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(both) => both,
            Err(err) => {
                tracing::debug!(endpoint = %endpoint, error = %err, "upgrade did not complete");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        tokio::select! {
            copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                match copied {
                    Ok((up, down)) => tracing::debug!(
                        endpoint = %endpoint, bytes_to_upstream = up, bytes_to_client = down,
                        "upgraded connection closed"
                    ),
                    Err(err) => tracing::debug!(
                        endpoint = %endpoint, error = %err, "upgraded connection ended with an error"
                    ),
                }
            }
            () = super::shutdown_requested(&mut shutdown) => {
                tracing::debug!(endpoint = %endpoint, "upgraded connection closed for shutdown");
            }
        }
    });
}
