//! `/tunnel_sessions`: the agents connected now, by the leases their edges renew; deleting one
//! ends it in the store, and the edge that holds it closes the agent's connection when its next
//! renewal finds it gone.

use moat_store::SessionRow;
use serde_json::{Value, json};

use super::Kind;
use crate::api::{AdminApi, Call, Handled};
use crate::paging::Paging;
use crate::reply::Reply;
use crate::times::{rfc3339, unix_now};

const KIND: Kind = Kind {
    what: "tunnel session",
    collection: "tunnel_sessions",
};

fn view(row: &SessionRow) -> Value {
    json!({
        "id": row.id,
        "uri": KIND.uri(&row.id),
        "agent": row.agent,
        "edge": row.edge,
        "started_at": rfc3339(row.started_at),
        "heartbeat_at": rfc3339(row.heartbeat_at),
        "lease_until": rfc3339(row.lease_until),
    })
}

/// `GET /tunnel_sessions`: the live ones (a lapsed lease is an edge that stopped renewing).
pub(crate) fn list(api: &AdminApi, call: Call) -> Handled<'_> {
    Box::pin(async move {
        let read = |page: Paging| async move {
            let now = unix_now();
            api.store
                .live_session_page(now, page.after.as_deref(), page.limit)
                .await
        };
        KIND.list(&call, read, view).await
    })
}

/// `GET /tunnel_sessions/{id}`.
pub(crate) fn get(api: &AdminApi, call: Call) -> Handled<'_> {
    Box::pin(async move {
        let found = api.store.live_session(&call.id, unix_now()).await?;
        KIND.found(&call.id, found, view, |_| None)
    })
}

/// `DELETE /tunnel_sessions/{id}`: disconnects the agent (at its edge's next renewal).
pub(crate) fn delete(api: &AdminApi, call: Call) -> Handled<'_> {
    Box::pin(async move {
        if !api.store.end_session(&call.id).await? {
            return Err(KIND.not_found(&call.id));
        }
        api.hooks.changed();
        Ok(Reply::no_content())
    })
}
