//! `/join_tokens`: one-time invitations for agents. The edge makes them (the token pins its
//! agent CA); the API shows each token's text once, at creation, and never its secret again.

use std::time::Duration;

use moat_config::parse_duration;
use moat_store::{JoinTokenRow, RedeemRefusal};
use serde_json::{Value, json};

use super::grants::globs;
use super::{Kind, text_list};
use crate::api::{AdminApi, Call, Handled};
use crate::api_error::ApiError;
use crate::body::Fields;
use crate::hooks::{HookError, TokenRequest};
use crate::paging::Paging;
use crate::reply::Reply;
use crate::times::rfc3339;

const KIND: Kind = Kind {
    what: "join token",
    collection: "join_tokens",
};

/// How long a token works when the request names no `ttl`, as `moat edge token`'s default.
const DEFAULT_TTL: &str = "1h";

fn view(row: &JoinTokenRow) -> Value {
    json!({
        "id": row.id,
        "uri": KIND.uri(&row.id),
        "created_at": rfc3339(row.created_at),
        "expires_at": rfc3339(row.expires_at),
        "grant": text_list(&row.grant_json),
        "used_at": row.used_at.map(rfc3339),
        "used_by": row.used_by,
    })
}

/// `GET /join_tokens`: without secrets (the store has only their hashes).
pub(crate) fn list(api: &AdminApi, call: Call) -> Handled<'_> {
    Box::pin(async move {
        let read = |page: Paging| async move {
            api.store
                .join_token_page(page.after.as_deref(), page.limit)
                .await
        };
        KIND.list(&call, read, view).await
    })
}

/// `POST /join_tokens` `{grant?, ttl?, description?}`: the edge makes the token; the reply's
/// `token` is its text, shown this once.
pub(crate) fn create(api: &AdminApi, call: Call) -> Handled<'_> {
    Box::pin(async move {
        let mut fields = Fields::parse(&call.body, &["grant", "ttl", "description"])?;
        let grant: Vec<String> = fields.take("grant")?.unwrap_or_default();
        let ttl: String = fields
            .take("ttl")?
            .unwrap_or_else(|| DEFAULT_TTL.to_owned());
        let request = TokenRequest {
            grant: globs("grant", &grant)?,
            ttl: time_to_live(&ttl)?,
            description: fields.description()?.unwrap_or_default(),
        };
        let issued = api
            .hooks
            .issue_join_token(request)
            .await
            .map_err(|error| match error {
                HookError::Refused { field, message } => ApiError::refused(field, message),
                HookError::Failed { message } => ApiError::internal(message),
            })?;
        let mut body = view(&issued.row);
        body["token"] = Value::String(issued.token);
        Ok(KIND.made(api, &issued.row.id, body, None))
    })
}

/// `GET /join_tokens/{id}`.
pub(crate) fn get(api: &AdminApi, call: Call) -> Handled<'_> {
    Box::pin(async move {
        let found = api.store.join_token(&call.id).await?;
        KIND.found(&call.id, found, view, |_| None)
    })
}

/// `DELETE /join_tokens/{id}`: revokes a token no agent has used yet.
pub(crate) fn delete(api: &AdminApi, call: Call) -> Handled<'_> {
    Box::pin(async move {
        match api.store.revoke_join_token(&call.id).await? {
            Ok(()) => {
                api.hooks.changed();
                Ok(Reply::no_content())
            }
            Err(RedeemRefusal::Used { id, used_at }) => Err(ApiError::conflict(
                None,
                format!(
                    "join token {id} was used at {}; a used token is spent and stays as the record of that join: to stop the agent, delete its grants or end its tunnel sessions",
                    rfc3339(used_at)
                ),
            )),
            Err(_) => Err(KIND.not_found(&call.id)),
        }
    })
}

/// `ttl` as a duration above zero.
fn time_to_live(ttl: &str) -> Result<Duration, ApiError> {
    match parse_duration(ttl) {
        Ok(ttl) if !ttl.is_zero() => Ok(ttl),
        Ok(_) => Err(ApiError::invalid(
            "ttl",
            "ttl is zero; a token must work for some time, e.g. \"1h\"",
        )),
        Err(problem) => Err(ApiError::invalid("ttl", format!("ttl: {problem}"))),
    }
}
