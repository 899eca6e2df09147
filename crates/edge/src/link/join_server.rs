//! The edge's side of a join: read the agent's request, redeem its token and sign its CSR, answer.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};

use super::LinkError;
use super::join_wire::{JoinAnswer, JoinRequest, read_message, write_message};
use crate::join::{EdgeState, JoinedAgent};

/// How long the edge waits for a joining agent's request once TLS is up: the agent sends it
/// at once, so 10 s only ends connections that stall.
pub const JOIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one join on a connection that negotiated `moat-join/1`: reads the request, runs
/// [`EdgeState::join`] (one transaction of the store), answers `Joined` or
/// `Refused` (the refusal is the [`crate::JoinError`]'s text, which names the fix) and closes.
/// Returns the joined agent, or [`LinkError::JoinRefused`] with the same reason for the edge's log.
/// When the answer cannot be written after a successful join, the token is spent and the error
/// says so through [`LinkError::Io`]: the agent needs a new token.
pub async fn serve_join<S>(mut stream: S, state: Arc<EdgeState>) -> Result<JoinedAgent, LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    serve_join_from(&mut stream, state, "a joining agent").await
}

async fn serve_join_from<S>(
    stream: &mut S,
    state: Arc<EdgeState>,
    peer: &str,
) -> Result<JoinedAgent, LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let request: JoinRequest =
        match tokio::time::timeout(JOIN_REQUEST_TIMEOUT, read_message(stream, peer)).await {
            Ok(request) => request?,
            Err(_) => {
                return Err(LinkError::Timeout {
                    step: "waiting for the join request",
                    peer: peer.to_owned(),
                    after: JOIN_REQUEST_TIMEOUT,
                });
            }
        };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let outcome = state
        .join(&request.token, request.csr_pem.as_bytes(), now)
        .await;
    let answer = match &outcome {
        Ok(joined) => JoinAnswer::Joined {
            certificate_pem: joined.certificate_pem.clone(),
            ca_pem: joined.ca_pem.clone(),
            agent_name: joined.agent_name.to_string(),
            grant: joined.grant.iter().map(ToString::to_string).collect(),
        },
        Err(error) => JoinAnswer::Refused {
            message: error.to_string(),
        },
    };
    write_message(stream, &answer, peer).await?;
    // close_notify, so the agent reads the answer and then a clean end. The answer is already
    // flushed; a failure here loses nothing the agent needs.
    let _ = stream.shutdown().await;
    outcome.map_err(|source| LinkError::JoinRefused {
        peer: peer.to_owned(),
        source: Box::new(source),
    })
}
