//! The API's refusals as ngrok shapes them: `{error_code, status_code, msg, details}`, where the
//! message names the field at fault and the fix.

use http::StatusCode;
use serde::Serialize;

/// One refusal of one request; becomes the JSON error body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {msg}")]
pub(crate) struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable code for scripts (`MOAT_INVALID_FIELD`, …), listed in the OpenAPI document.
    pub code: &'static str,
    /// What is wrong and what to do, for a person.
    pub msg: String,
    /// What a script needs besides the code.
    pub details: Details,
}

/// The machine-readable part of a refusal; absent parts are left out of the JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Details {
    /// The request field (or header, or query parameter) at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The endpoints that still use a certificate authority.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<String>>,
    /// The record's version now, when the client's was stale.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_version: Option<i64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, msg: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            msg: msg.into(),
            details: Details::default(),
        }
    }

    /// A field of the request (body field, header or query parameter) holds what cannot be used.
    pub fn invalid(field: &str, msg: impl Into<String>) -> ApiError {
        let mut error = ApiError::new(StatusCode::BAD_REQUEST, "MOAT_INVALID_FIELD", msg);
        error.details.field = Some(field.to_owned());
        error
    }

    /// The body is not a JSON object.
    pub fn bad_json(msg: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "MOAT_BAD_JSON", msg)
    }

    /// The edge refused what was asked as a whole or in `field` (a hook's refusal).
    pub fn refused(field: Option<&str>, msg: impl Into<String>) -> ApiError {
        let mut error = ApiError::new(StatusCode::BAD_REQUEST, "MOAT_REFUSED", msg);
        error.details.field = field.map(str::to_owned);
        error
    }

    /// No route, or no record with that id.
    pub fn not_found(msg: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "MOAT_NOT_FOUND", msg)
    }

    /// The route exists but not with this method; `allow` lists the methods it has.
    pub fn method_not_allowed(method: &str, path: &str, allow: &str) -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MOAT_METHOD_NOT_ALLOWED",
            format!("{path} does not take {method}; it takes {allow}"),
        )
    }

    /// The change would clash with another record (a hostname taken, a CA in use, a used token).
    pub fn conflict(field: Option<&str>, msg: impl Into<String>) -> ApiError {
        let mut error = ApiError::new(StatusCode::CONFLICT, "MOAT_CONFLICT", msg);
        error.details.field = field.map(str::to_owned);
        error
    }

    /// The record changed since the version the client named (`If-Match` or `version`).
    pub fn stale(what: &str, id: &str, expected: i64, current_version: i64) -> ApiError {
        let mut error = ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "MOAT_VERSION_MISMATCH",
            format!(
                "{what} {id} is at version {current_version}, not {expected}: someone changed it \
                 since you read it; read it again, then send your change with If-Match: \
                 \"{current_version}\""
            ),
        );
        error.details.current_version = Some(current_version);
        error
    }

    /// The body is larger than the API reads.
    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "MOAT_BODY_TOO_LARGE",
            format!("the body is larger than {limit} bytes, the most this API reads"),
        )
    }

    /// A body that is not declared as JSON.
    pub fn not_json(content_type: &str) -> ApiError {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "MOAT_UNSUPPORTED_MEDIA_TYPE",
            format!(
                "the body's Content-Type is {content_type:?}; send JSON with Content-Type: application/json"
            ),
        )
    }

    /// The edge or its store failed; the admin can only retry or look at the edge.
    pub fn internal(msg: impl Into<String>) -> ApiError {
        let error = ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "MOAT_INTERNAL", msg);
        tracing::error!(error = %error.msg, "admin API request failed");
        error
    }

    /// The JSON body of this refusal.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "error_code": self.code,
            "status_code": self.status.as_u16(),
            "msg": self.msg,
            "details": self.details,
        })
    }
}

impl From<moat_store::StoreError> for ApiError {
    fn from(error: moat_store::StoreError) -> ApiError {
        ApiError::internal(error.to_string())
    }
}
