//! `/endpoints`: hostnames the edge's operator defines (how each is served, the CAs it trusts,
//! its rules), checked as the gateway will read them, and changed against a version.

use moat_config::{EndpointKind, load_policy_str};
use moat_store::{Change, EndpointRefusal, EndpointRow};
use serde_json::{Value, json};

use super::Kind;
use crate::api::{AdminApi, Call, Handled};
use crate::api_error::ApiError;
use crate::body::Fields;
use crate::ids::new_id;
use crate::names::exact_hostname;
use crate::paging::Paging;
use crate::preconditions::{expected_version, if_match_version};
use crate::reply::Reply;
use crate::times::{rfc3339, unix_now};

const KIND: Kind = Kind {
    what: "endpoint",
    collection: "endpoints",
};

/// The most CAs one endpoint trusts on an edge, as at ngrok: a handshake's CertificateRequest
/// names every one of them.
pub(crate) const MAX_CAS: usize = 10;

/// The fields a client sets; PATCH takes `version` too.
const FIELDS: [&str; 8] = [
    "hostname",
    "kind",
    "terminate_at",
    "pool",
    "certificate_authority_ids",
    "rules",
    "description",
    "metadata",
];

fn view(row: &EndpointRow) -> Value {
    json!({
        "id": row.id,
        "uri": KIND.uri(&row.id),
        "hostname": row.hostname,
        "kind": row.kind,
        "terminate_at": row.terminate_at,
        "pool": row.pool,
        "certificate_authority_ids": row.ca_ids,
        "rules": row.rules,
        "description": row.description,
        "metadata": row.metadata,
        "created_at": rfc3339(row.created_at),
        "version": row.version,
    })
}

/// `GET /endpoints`.
pub(crate) fn list(api: &AdminApi, call: Call) -> Handled<'_> {
    Box::pin(async move {
        let read = |page: Paging| async move {
            api.store.endpoints(page.after.as_deref(), page.limit).await
        };
        KIND.list(&call, read, view).await
    })
}

/// `POST /endpoints` `{hostname, kind?, terminate_at?, pool?, certificate_authority_ids?,
/// rules?, description?, metadata?}`.
pub(crate) fn create(api: &AdminApi, call: Call) -> Handled<'_> {
    Box::pin(async move {
        let mut fields = Fields::parse(&call.body, &FIELDS)?;
        let hostname: String = fields.required("hostname")?;
        let mut row = EndpointRow {
            id: new_id("ep")?,
            hostname,
            kind: "http".to_owned(),
            terminate_at: "edge".to_owned(),
            pool: false,
            ca_ids: Vec::new(),
            rules: String::new(),
            description: String::new(),
            metadata: String::new(),
            created_at: unix_now(),
            version: 0,
        };
        Changes::take(&mut fields)?.apply(&mut row)?;
        match api.store.insert_endpoint(&row).await? {
            Ok(row) => Ok(KIND.made(api, &row.id, view(&row), Some(row.version))),
            Err(refusal) => Err(refused(refusal)),
        }
    })
}

/// `GET /endpoints/{id}`.
pub(crate) fn get(api: &AdminApi, call: Call) -> Handled<'_> {
    Box::pin(async move {
        let found = api.store.endpoint(&call.id).await?;
        KIND.found(&call.id, found, view, |row| Some(row.version))
    })
}

/// `PATCH /endpoints/{id}`: the fields given replace the endpoint's, and the whole is checked
/// again.
pub(crate) fn update(api: &AdminApi, call: Call) -> Handled<'_> {
    Box::pin(async move {
        let mut known = FIELDS.to_vec();
        known.push("version");
        let mut fields = Fields::parse(&call.body, &known)?;
        let changes = Changes::take(&mut fields)?;
        let expected = expected_version(
            if_match_version(call.if_match.as_deref())?,
            fields.take("version")?,
        )?;
        let (id, changes) = (call.id.as_str(), &changes);
        let row = KIND
            .change(api, id, expected, |expected| async move {
                let Some(mut row) = api.store.endpoint(id).await? else {
                    return Ok(Change::NotFound);
                };
                let version = expected.unwrap_or(row.version);
                changes.clone().apply(&mut row)?;
                api.store
                    .update_endpoint(version, &row)
                    .await?
                    .map_err(refused)
            })
            .await?;
        Ok(Reply::ok(view(&row)).at_version(row.version))
    })
}

/// `DELETE /endpoints/{id}`.
pub(crate) fn delete(api: &AdminApi, call: Call) -> Handled<'_> {
    Box::pin(async move {
        KIND.delete(api, &call, |expected| {
            api.store.delete_endpoint(&call.id, expected)
        })
        .await
    })
}

/// The fields a request sets, each `None` when not given.
#[derive(Debug, Clone, Default)]
struct Changes {
    hostname: Option<String>,
    kind: Option<String>,
    terminate_at: Option<String>,
    pool: Option<bool>,
    ca_ids: Option<Vec<String>>,
    rules: Option<String>,
    description: Option<String>,
    metadata: Option<String>,
}

impl Changes {
    fn take(fields: &mut Fields) -> Result<Changes, ApiError> {
        Ok(Changes {
            hostname: fields.take("hostname")?,
            kind: fields.take("kind")?,
            terminate_at: fields.take("terminate_at")?,
            pool: fields.take("pool")?,
            ca_ids: fields.take("certificate_authority_ids")?,
            rules: fields.take("rules")?,
            description: fields.description()?,
            metadata: fields.metadata()?,
        })
    }

    /// Sets the given fields on `row`, then checks the endpoint as a whole.
    fn apply(self, row: &mut EndpointRow) -> Result<(), ApiError> {
        let set = |slot: &mut String, value: Option<String>| {
            if let Some(value) = value {
                *slot = value;
            }
        };
        set(&mut row.hostname, self.hostname);
        set(&mut row.kind, self.kind);
        set(&mut row.terminate_at, self.terminate_at);
        set(&mut row.rules, self.rules);
        set(&mut row.description, self.description);
        set(&mut row.metadata, self.metadata);
        if let Some(pool) = self.pool {
            row.pool = pool;
        }
        if let Some(ca_ids) = self.ca_ids {
            row.ca_ids = ca_ids;
        }
        check(row)
    }
}

/// Checks an endpoint as the gateway will read it, and puts it in its normal form (hostname
/// lower-case, CA ids sorted once each, blank rules empty).
fn check(row: &mut EndpointRow) -> Result<(), ApiError> {
    row.hostname = exact_hostname("hostname", &row.hostname)?;
    let kind = match row.kind.as_str() {
        "http" => EndpointKind::Http,
        "tls" => EndpointKind::Tls,
        other => {
            return Err(ApiError::invalid(
                "kind",
                format!("kind {other:?} is not an endpoint kind; use \"http\" or \"tls\""),
            ));
        }
    };
    let at_agent = match row.terminate_at.as_str() {
        "edge" => false,
        "agent" => true,
        other => {
            return Err(ApiError::invalid(
                "terminate_at",
                format!(
                    "terminate_at {other:?} is not a termination point; use \"edge\" or \"agent\""
                ),
            ));
        }
    };
    row.ca_ids.sort();
    row.ca_ids.dedup();
    if row.ca_ids.len() > MAX_CAS {
        return Err(ApiError::invalid(
            "certificate_authority_ids",
            format!(
                "certificate_authority_ids names {} CAs; an endpoint trusts at most {MAX_CAS}",
                row.ca_ids.len()
            ),
        ));
    }
    if row.rules.trim().is_empty() {
        row.rules.clear();
    }
    if at_agent {
        // The TLS session ends at the agent: the edge never sees the client's certificate.
        for (field, set) in [
            ("certificate_authority_ids", !row.ca_ids.is_empty()),
            ("rules", !row.rules.is_empty()),
        ] {
            if set {
                return Err(ApiError::invalid(
                    field,
                    format!(
                        "{field} must be empty when terminate_at is \"agent\": TLS ends at the agent, so the edge never sees the client's certificate; set them on the agent, or terminate at the edge"
                    ),
                ));
            }
        }
    }
    if !row.rules.is_empty() {
        if row.ca_ids.is_empty() {
            return Err(ApiError::invalid(
                "rules",
                "rules decide which client certificates pass, but the endpoint trusts no CA; \
                 give certificate_authority_ids, or leave rules empty",
            ));
        }
        load_policy_str(&row.rules, "rules", kind)
            .map_err(|error| ApiError::invalid("rules", error.to_string()))?;
    }
    Ok(())
}

/// The store's refusal as the API's: a hostname taken is a conflict, an unknown CA a bad field.
fn refused(refusal: EndpointRefusal) -> ApiError {
    match refusal {
        EndpointRefusal::HostnameTaken { .. } => ApiError::conflict(
            Some("hostname"),
            format!("{refusal}; pick another hostname, or change that endpoint"),
        ),
        EndpointRefusal::UnknownCa { .. } => ApiError::invalid(
            "certificate_authority_ids",
            format!(
                "certificate_authority_ids: {refusal}; POST it to /certificate_authorities first"
            ),
        ),
    }
}
