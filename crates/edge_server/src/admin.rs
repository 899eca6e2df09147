//! The admin API on the edge: its listener (client certificates from the admin CAs), and what
//! the API asks of the edge — making join tokens with the edge's agent CA, re-reading the store.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use moat_control::{
    AdminApi, AdminListener, AdminTls, EdgeHooks, HookError, IssuedToken, TokenRequest,
};
use moat_edge::{AgentCaError, EdgeState, HostnameGlob, JoinError};

use crate::control::ControlPlane;
use crate::error::EdgeError;

/// What the API asks of this edge.
struct EdgeAdminHooks {
    state: Arc<EdgeState>,
    control: Arc<ControlPlane>,
    /// The agent address tokens carry (`host:port`).
    token_address: String,
}

impl EdgeHooks for EdgeAdminHooks {
    fn issue_join_token(
        &self,
        request: TokenRequest,
    ) -> Pin<Box<dyn Future<Output = Result<IssuedToken, HookError>> + Send + '_>> {
        Box::pin(async move {
            let grant = request
                .grant
                .iter()
                .map(|glob| HostnameGlob::parse(glob))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| HookError::Refused {
                    field: Some("grant"),
                    message: error.to_string(),
                })?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_secs());
            match self
                .state
                .new_token(&self.token_address, grant, request.ttl, now)
                .await
            {
                Ok((token, row)) => {
                    tracing::info!(token = %row.id, description = %request.description, "join token made through the admin API");
                    Ok(IssuedToken {
                        token: token.to_text(),
                        row,
                    })
                }
                Err(JoinError::AgentCa(refusal @ AgentCaError::JoinUnavailable { .. })) => {
                    Err(HookError::Refused {
                        field: None,
                        message: refusal.to_string(),
                    })
                }
                Err(error) => Err(HookError::Failed {
                    message: error.to_string(),
                }),
            }
        })
    }

    fn changed(&self) {
        self.control.kick();
        let store = self.control.store().clone();
        tokio::spawn(async move {
            if let Err(error) = store.notify_changed().await {
                tracing::warn!(%error, "cannot notify the other edges; they read the change within 5 s");
            }
        });
    }
}

/// Binds the admin listener on `address`: its certificate from the edge's admin CA (made on
/// first start, with a local administrator's certificate), admins trusted by `admin_cas` or
/// that CA.
pub(crate) async fn bind_admin(
    address: SocketAddr,
    state_dir: &Path,
    names: &[String],
    admin_cas: Option<&Path>,
    state: Arc<EdgeState>,
    control: Arc<ControlPlane>,
    token_address: String,
) -> Result<AdminListener, EdgeError> {
    let material = moat_edge::open_admin(state_dir, names, admin_cas)?;
    let hooks = Arc::new(EdgeAdminHooks {
        state,
        control: Arc::clone(&control),
        token_address,
    });
    let api = Arc::new(AdminApi::new(control.store().clone(), hooks));
    let tls = AdminTls {
        cert_chain_pem: material.listener_chain_pem,
        key_pem: material.listener_key_pem,
        admin_cas_pem: material.admin_cas_pem,
        admin_cas_origin: material.admin_cas_origin,
    };
    Ok(AdminListener::bind(address, tls, api).await?)
}
