//! The API's resources, one file each; here what their handlers share: lists in pages,
//! creations, reading one record, changes and deletions against a version, and JSON lists the
//! store keeps as text.

pub(crate) mod authorities;
pub(crate) mod endpoints;
pub(crate) mod grants;
pub(crate) mod reservations;
pub(crate) mod sessions;
pub(crate) mod tokens;

use std::future::Future;

use moat_store::{Change, Page, StoreError};
use serde_json::Value;

use crate::api::{AdminApi, Call};
use crate::api_error::ApiError;
use crate::paging::{Paging, list_reply};
use crate::preconditions::{UNVERSIONED_TRIES, if_match_version};
use crate::reply::Reply;

/// What the handlers of one resource say of it in paths and messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kind {
    /// In messages: "certificate authority".
    pub what: &'static str,
    /// The collection's path without its slash: `certificate_authorities`.
    pub collection: &'static str,
}

impl Kind {
    /// The path of the record `id`.
    pub fn uri(&self, id: &str) -> String {
        format!("/{}/{id}", self.collection)
    }

    /// No record `id` of this kind.
    pub fn not_found(&self, id: &str) -> ApiError {
        ApiError::not_found(format!(
            "no {} {id}; GET /{} lists them",
            self.what, self.collection
        ))
    }

    /// The reply to a list request: the page `read` returns for the call's `limit` and
    /// `after`, each record shown by `view`.
    pub async fn list<T, F, Fut>(
        &self,
        call: &Call,
        read: F,
        view: impl Fn(&T) -> Value,
    ) -> Result<Reply, ApiError>
    where
        F: FnOnce(Paging) -> Fut,
        Fut: Future<Output = Result<Page<T>, StoreError>>,
    {
        let paging = Paging::from_query(call.query.as_deref())?;
        let limit = paging.limit;
        Ok(list_reply(
            self.collection,
            read(paging).await?,
            limit,
            view,
        ))
    }

    /// The reply to a creation, once the edge is told: the new record `id` shown as `body`,
    /// with its ETag when it has a `version`.
    pub fn made(&self, api: &AdminApi, id: &str, body: Value, version: Option<i64>) -> Reply {
        api.hooks.changed();
        let reply = Reply::created(body, self.uri(id));
        match version {
            Some(version) => reply.at_version(version),
            None => reply,
        }
    }

    /// The reply to a GET of one record: `found` shown by `view`, with its ETag when it has a
    /// version.
    pub fn found<T>(
        &self,
        id: &str,
        found: Option<T>,
        view: impl Fn(&T) -> Value,
        version: impl Fn(&T) -> Option<i64>,
    ) -> Result<Reply, ApiError> {
        let row = found.ok_or_else(|| self.not_found(id))?;
        let reply = Reply::ok(view(&row));
        Ok(match version(&row) {
            Some(version) => reply.at_version(version),
            None => reply,
        })
    }

    /// Deletes the record of `call` with `delete`, against the version of its `If-Match` (any
    /// when it has none), and tells the edge.
    pub async fn delete<F, Fut>(
        &self,
        api: &AdminApi,
        call: &Call,
        delete: F,
    ) -> Result<Reply, ApiError>
    where
        F: FnOnce(Option<i64>) -> Fut,
        Fut: Future<Output = Result<Change<()>, StoreError>>,
    {
        let expected = if_match_version(call.if_match.as_deref())?;
        match delete(expected).await? {
            Change::Done(()) => {
                api.hooks.changed();
                Ok(Reply::no_content())
            }
            Change::NotFound => Err(self.not_found(&call.id)),
            Change::Conflict { current_version } => Err(match expected {
                Some(expected) => ApiError::stale(self.what, &call.id, expected, current_version),
                None => ApiError::conflict(
                    None,
                    format!(
                        "{} {} changed while it was being deleted; read it again and delete it then",
                        self.what, call.id
                    ),
                ),
            }),
            Change::InUse { endpoints } => {
                let mut refusal = ApiError::conflict(
                    None,
                    format!(
                        "{} {} is used by endpoint{} {}; remove it from their certificate_authority_ids first",
                        self.what,
                        call.id,
                        if endpoints.len() == 1 { "" } else { "s" },
                        endpoints.join(", ")
                    ),
                );
                refusal.details.endpoints = Some(endpoints);
                Err(refusal)
            }
        }
    }

    /// Makes a change with `attempt`, given the version to make it against: the client's
    /// (`expected`), or else the version `attempt` reads, tried again up to
    /// [`UNVERSIONED_TRIES`] times when another change slipped in between. Tells the edge
    /// when it is done.
    pub async fn change<T, F, Fut>(
        &self,
        api: &AdminApi,
        id: &str,
        expected: Option<i64>,
        attempt: F,
    ) -> Result<T, ApiError>
    where
        F: Fn(Option<i64>) -> Fut,
        Fut: Future<Output = Result<Change<T>, ApiError>>,
    {
        for _ in 0..UNVERSIONED_TRIES {
            match attempt(expected).await? {
                Change::Done(row) => {
                    api.hooks.changed();
                    return Ok(row);
                }
                Change::NotFound => return Err(self.not_found(id)),
                Change::Conflict { current_version } => {
                    if let Some(expected) = expected {
                        return Err(ApiError::stale(self.what, id, expected, current_version));
                    }
                }
                Change::InUse { .. } => {
                    return Err(ApiError::internal(format!(
                        "the store answered a change of {} {id} with \"in use\"",
                        self.what
                    )));
                }
            }
        }
        Err(ApiError::conflict(
            None,
            format!(
                "{} {id} kept changing while this change was tried {UNVERSIONED_TRIES} times; try again",
                self.what
            ),
        ))
    }
}

/// A list the store keeps as JSON text (a grant's hostnames, a token's grant), as a JSON array
/// of strings; text that is not one (written by hand into the database) is shown as one string.
pub(crate) fn text_list(json: &str) -> Vec<String> {
    serde_json::from_str(json).unwrap_or_else(|error| {
        tracing::warn!(%error, "a list in the store is not a JSON array of strings");
        vec![json.to_owned()]
    })
}
