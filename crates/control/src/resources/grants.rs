//! `/agent_grants`: which agents (a glob on their certificate's name) may publish which
//! hostnames (globs); the edge checks every registration against them.

use moat_store::GrantRow;
use serde_json::{Value, json};

use super::{Kind, text_list};
use crate::api::{AdminApi, Call, Handled};
use crate::api_error::ApiError;
use crate::body::Fields;
use crate::ids::new_id;
use crate::names::{agent_name, hostname_glob};
use crate::paging::Paging;
use crate::times::{rfc3339, unix_now};

const KIND: Kind = Kind {
    what: "agent grant",
    collection: "agent_grants",
};

fn view(row: &GrantRow) -> Value {
    json!({
        "id": row.id,
        "uri": KIND.uri(&row.id),
        "agents": row.agents,
        "hostnames": text_list(&row.hostnames),
        "description": row.description,
        "metadata": row.metadata,
        "created_at": rfc3339(row.created_at),
        "version": row.version,
    })
}

/// `GET /agent_grants`.
pub(crate) fn list(api: &AdminApi, call: Call) -> Handled<'_> {
    Box::pin(async move {
        let read =
            |page: Paging| async move { api.store.grants(page.after.as_deref(), page.limit).await };
        KIND.list(&call, read, view).await
    })
}

/// `POST /agent_grants` `{agents, hostnames, description?, metadata?}`.
pub(crate) fn create(api: &AdminApi, call: Call) -> Handled<'_> {
    Box::pin(async move {
        let mut fields = Fields::parse(
            &call.body,
            &["agents", "hostnames", "description", "metadata"],
        )?;
        let agents: String = fields.required("agents")?;
        let hostnames: Vec<String> = fields.required("hostnames")?;
        let hostnames = globs("hostnames", &hostnames)?;
        if hostnames.is_empty() {
            return Err(ApiError::invalid(
                "hostnames",
                "hostnames is empty; a grant names at least one hostname glob, e.g. [\"*.ci.example.com\"]",
            ));
        }
        let row = GrantRow {
            id: new_id("ag")?,
            agents: agent_name("agents", &agents, true)?,
            hostnames: serde_json::to_string(&hostnames)
                .map_err(|error| ApiError::internal(error.to_string()))?,
            description: fields.description()?.unwrap_or_default(),
            metadata: fields.metadata()?.unwrap_or_default(),
            created_at: unix_now(),
            version: 0,
        };
        let row = api.store.insert_grant(&row).await?;
        Ok(KIND.made(api, &row.id, view(&row), Some(row.version)))
    })
}

/// `GET /agent_grants/{id}`.
pub(crate) fn get(api: &AdminApi, call: Call) -> Handled<'_> {
    Box::pin(async move {
        let found = api.store.grant(&call.id).await?;
        KIND.found(&call.id, found, view, |row| Some(row.version))
    })
}

/// `DELETE /agent_grants/{id}`: revokes it.
pub(crate) fn delete(api: &AdminApi, call: Call) -> Handled<'_> {
    Box::pin(async move {
        KIND.delete(api, &call, |expected| {
            api.store.delete_grant(&call.id, expected)
        })
        .await
    })
}

/// Hostname globs as the edge reads them, each once, in the order given.
pub(crate) fn globs(field: &str, texts: &[String]) -> Result<Vec<String>, ApiError> {
    let mut globs: Vec<String> = Vec::with_capacity(texts.len());
    for text in texts {
        let glob = hostname_glob(field, text)?;
        if !globs.contains(&glob) {
            globs.push(glob);
        }
    }
    Ok(globs)
}
