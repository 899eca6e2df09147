//! `/reserved_domains`: hostnames kept for one agent (by its certificate's name); the edge
//! refuses them to every other agent.

use moat_store::ReservationRow;
use serde_json::{Value, json};

use super::Kind;
use crate::api::{AdminApi, Call, Handled};
use crate::api_error::ApiError;
use crate::body::Fields;
use crate::ids::new_id;
use crate::names::{agent_name, exact_hostname};
use crate::paging::Paging;
use crate::times::{rfc3339, unix_now};

const KIND: Kind = Kind {
    what: "reserved domain",
    collection: "reserved_domains",
};

fn view(row: &ReservationRow) -> Value {
    json!({
        "id": row.id,
        "uri": KIND.uri(&row.id),
        "hostname": row.hostname,
        "agent": row.agent,
        "description": row.description,
        "metadata": row.metadata,
        "created_at": rfc3339(row.created_at),
        "version": row.version,
    })
}

/// `GET /reserved_domains`.
pub(crate) fn list(api: &AdminApi, call: Call) -> Handled<'_> {
    Box::pin(async move {
        let read = |page: Paging| async move {
            api.store
                .reservations(page.after.as_deref(), page.limit)
                .await
        };
        KIND.list(&call, read, view).await
    })
}

/// `POST /reserved_domains` `{hostname, agent, description?, metadata?}`.
pub(crate) fn create(api: &AdminApi, call: Call) -> Handled<'_> {
    Box::pin(async move {
        let mut fields = Fields::parse(
            &call.body,
            &["hostname", "agent", "description", "metadata"],
        )?;
        let hostname: String = fields.required("hostname")?;
        let agent: String = fields.required("agent")?;
        let row = ReservationRow {
            id: new_id("rd")?,
            hostname: exact_hostname("hostname", &hostname)?,
            agent: agent_name("agent", &agent, false)?,
            description: fields.description()?.unwrap_or_default(),
            metadata: fields.metadata()?.unwrap_or_default(),
            created_at: unix_now(),
            version: 0,
        };
        match api.store.reserve(&row).await? {
            Ok(row) => Ok(KIND.made(api, &row.id, view(&row), Some(row.version))),
            Err(taken) => Err(ApiError::conflict(
                Some("hostname"),
                format!("{taken}; release it first (DELETE {})", KIND.uri(&taken.id)),
            )),
        }
    })
}

/// `GET /reserved_domains/{id}`.
pub(crate) fn get(api: &AdminApi, call: Call) -> Handled<'_> {
    Box::pin(async move {
        let found = api.store.reservation(&call.id).await?;
        KIND.found(&call.id, found, view, |row| Some(row.version))
    })
}

/// `DELETE /reserved_domains/{id}`: releases the hostname.
pub(crate) fn delete(api: &AdminApi, call: Call) -> Handled<'_> {
    Box::pin(async move {
        KIND.delete(api, &call, |expected| api.store.release(&call.id, expected))
            .await
    })
}
