//! What a handler answers, and how it and a refusal become an HTTP response.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, LOCATION};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde_json::Value;

use crate::api_error::ApiError;

/// A handler's answer: the status, the JSON body (none for 204) and the record's version.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reply {
    status: StatusCode,
    body: Option<Value>,
    etag: Option<i64>,
    location: Option<String>,
}

impl Reply {
    /// 200 with `body`.
    pub fn ok(body: Value) -> Reply {
        Reply {
            status: StatusCode::OK,
            body: Some(body),
            etag: None,
            location: None,
        }
    }

    /// 201 with the new record, which lives at `uri`.
    pub fn created(body: Value, uri: String) -> Reply {
        Reply {
            status: StatusCode::CREATED,
            body: Some(body),
            etag: None,
            location: Some(uri),
        }
    }

    /// 204: done, nothing to show (a deletion).
    pub fn no_content() -> Reply {
        Reply {
            status: StatusCode::NO_CONTENT,
            body: None,
            etag: None,
            location: None,
        }
    }

    /// The answer about a record at `version`: its `ETag` is `"<version>"`, what `If-Match`
    /// sends back.
    pub fn at_version(mut self, version: i64) -> Reply {
        self.etag = Some(version);
        self
    }
}

/// The HTTP response for a handler's outcome.
pub(crate) fn response(outcome: Result<Reply, ApiError>) -> Response<Full<Bytes>> {
    let reply = outcome.unwrap_or_else(|error| Reply {
        status: error.status,
        body: Some(error.body()),
        etag: None,
        location: None,
    });
    let mut response = Response::new(Full::new(
        reply
            .body
            .as_ref()
            .map(|body| Bytes::from(body.to_string()))
            .unwrap_or_default(),
    ));
    *response.status_mut() = reply.status;
    let headers = response.headers_mut();
    if reply.body.is_some() {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    // A join token's text is in one response only; no cache along the way may keep it.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(version) = reply.etag
        && let Ok(value) = HeaderValue::from_str(&format!("\"{version}\""))
    {
        headers.insert(ETAG, value);
    }
    if let Some(uri) = reply.location
        && let Ok(value) = HeaderValue::from_str(&uri)
    {
        headers.insert(LOCATION, value);
    }
    response
}
