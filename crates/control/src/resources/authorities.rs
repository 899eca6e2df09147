//! `/certificate_authorities`: the CAs endpoints trust, uploaded as PEM and checked by the
//! gateway's own bundle reader, so the API refuses a non-CA in the gateway's words. The PEM is
//! immutable (as at ngrok); the description and metadata change against a version.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use moat_store::{CaRow, Change};
use moat_trust::CaBundle;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use serde_json::{Value, json};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer as _;

use super::Kind;
use crate::api::{AdminApi, Call, Handled};
use crate::api_error::ApiError;
use crate::body::Fields;
use crate::ids::new_id;
use crate::paging::Paging;
use crate::preconditions::{expected_version, if_match_version};
use crate::reply::Reply;
use crate::times::{rfc3339, unix_now};

const KIND: Kind = Kind {
    what: "certificate authority",
    collection: "certificate_authorities",
};

/// The field that holds the PEM; it also names the "file" in the bundle reader's messages.
const PEM_FIELD: &str = "ca_pem";

fn view(row: &CaRow) -> Value {
    json!({
        "id": row.id,
        "uri": KIND.uri(&row.id),
        "ca_pem": row.ca_pem,
        "subject_common_name": row.subject_common_name,
        "not_before": rfc3339(row.not_before),
        "not_after": rfc3339(row.not_after),
        "description": row.description,
        "metadata": row.metadata,
        "created_at": rfc3339(row.created_at),
        "version": row.version,
    })
}

/// `GET /certificate_authorities`.
pub(crate) fn list(api: &AdminApi, call: Call) -> Handled<'_> {
    Box::pin(async move {
        let read =
            |page: Paging| async move { api.store.cas(page.after.as_deref(), page.limit).await };
        KIND.list(&call, read, view).await
    })
}

/// `POST /certificate_authorities` `{ca_pem, description?, metadata?}`.
pub(crate) fn create(api: &AdminApi, call: Call) -> Handled<'_> {
    Box::pin(async move {
        let mut fields = Fields::parse(&call.body, &[PEM_FIELD, "description", "metadata"])?;
        let pem: String = fields.required(PEM_FIELD)?;
        let description = fields.description()?.unwrap_or_default();
        let metadata = fields.metadata()?.unwrap_or_default();
        let ca = read_ca(&pem)?;
        let row = CaRow {
            id: new_id("ca")?,
            ca_pem: ca.pem,
            subject_common_name: ca.common_name,
            not_before: ca.not_before,
            not_after: ca.not_after,
            description,
            metadata,
            created_at: unix_now(),
            version: 0,
        };
        let row = api.store.insert_ca(&row).await?;
        Ok(KIND.made(api, &row.id, view(&row), Some(row.version)))
    })
}

/// `GET /certificate_authorities/{id}`.
pub(crate) fn get(api: &AdminApi, call: Call) -> Handled<'_> {
    Box::pin(async move {
        let found = api.store.ca(&call.id).await?;
        KIND.found(&call.id, found, view, |row| Some(row.version))
    })
}

/// `PATCH /certificate_authorities/{id}` `{description?, metadata?, version?}`.
pub(crate) fn update(api: &AdminApi, call: Call) -> Handled<'_> {
    Box::pin(async move {
        let mut fields = Fields::parse(&call.body, &["description", "metadata", "version"])?;
        let description = fields.description()?;
        let metadata = fields.metadata()?;
        let expected = expected_version(
            if_match_version(call.if_match.as_deref())?,
            fields.take("version")?,
        )?;
        let (id, description, metadata) = (call.id.as_str(), &description, &metadata);
        let row = KIND
            .change(api, id, expected, |expected| async move {
                let Some(current) = api.store.ca(id).await? else {
                    return Ok(Change::NotFound);
                };
                Ok(api
                    .store
                    .update_ca(
                        id,
                        expected.unwrap_or(current.version),
                        description.as_deref().unwrap_or(&current.description),
                        metadata.as_deref().unwrap_or(&current.metadata),
                    )
                    .await?)
            })
            .await?;
        Ok(Reply::ok(view(&row)).at_version(row.version))
    })
}

/// `DELETE /certificate_authorities/{id}`: refused while an endpoint trusts it.
pub(crate) fn delete(api: &AdminApi, call: Call) -> Handled<'_> {
    Box::pin(async move {
        KIND.delete(api, &call, |expected| {
            api.store.delete_ca(&call.id, expected)
        })
        .await
    })
}

/// What the API keeps of an uploaded CA.
struct UploadedCa {
    /// The one certificate, PEM, without whatever text surrounded it.
    pem: String,
    common_name: String,
    not_before: i64,
    not_after: i64,
}

/// Reads `pem` as exactly one certificate that is a CA, with the gateway's bundle reader.
fn read_ca(pem: &str) -> Result<UploadedCa, ApiError> {
    let blocks = CertificateDer::pem_slice_iter(pem.as_bytes()).count();
    if blocks > 1 {
        return Err(ApiError::invalid(
            PEM_FIELD,
            format!(
                "{PEM_FIELD} holds {blocks} certificates; a certificate authority is one certificate: upload each CA on its own"
            ),
        ));
    }
    let invalid = |message: String| ApiError::invalid(PEM_FIELD, message);
    let bundle = CaBundle::from_bytes(Path::new(PEM_FIELD), pem.as_bytes())
        .map_err(|error| invalid(error.to_string()))?;
    let ca = bundle
        .iter()
        .next()
        .ok_or_else(|| invalid(format!("{PEM_FIELD} holds no certificate")))?;
    let der = ca.der().as_ref();
    let (_, certificate) =
        X509Certificate::from_der(der).map_err(|error| invalid(format!("{PEM_FIELD}: {error}")))?;
    let common_name = certificate
        .subject()
        .iter_common_name()
        .next()
        .and_then(|name| name.as_str().ok())
        .unwrap_or_default()
        .to_owned();
    let validity = certificate.validity();
    Ok(UploadedCa {
        pem: pem_of(der),
        common_name,
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
    })
}

/// `der` as a PEM certificate, 64 characters a line (RFC 7468).
fn pem_of(der: &[u8]) -> String {
    let base64 = STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in base64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}
