//! The API's OpenAPI 3.1 document, written by hand in `openapi.json` beside this file and
//! embedded in the binary; the crate's tests check it against the routes and the real answers.

use std::sync::LazyLock;

use serde_json::Value;

use crate::api::{AdminApi, Call, Handled};
use crate::api_error::ApiError;
use crate::reply::Reply;

/// The document's text, as `GET /openapi.json` serves it.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

/// The document parsed once; a broken document is a build mistake the tests catch.
static DOCUMENT: LazyLock<Result<Value, String>> =
    LazyLock::new(|| serde_json::from_str(OPENAPI_JSON).map_err(|error| error.to_string()));

/// `GET /openapi.json`.
pub(crate) fn get(_api: &AdminApi, _call: Call) -> Handled<'_> {
    Box::pin(async {
        match &*DOCUMENT {
            Ok(document) => Ok(Reply::ok(document.clone())),
            Err(error) => Err(ApiError::internal(format!(
                "the embedded OpenAPI document is not JSON: {error}"
            ))),
        }
    })
}
