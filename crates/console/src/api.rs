//! The inspector's routes: the page, and the JSON API on ngrok's paths where ngrok has one.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the page (and `/assets/…`) |
//! | `GET /api/requests/http` | exchanges, newest first; filters `path`, `status` (`404`, `4xx`), `subject` (`-`: none), `min_ms`, `max_ms`, `method`, `tunnel_name`, `limit` |
//! | `GET /api/requests/http/{id}` | one exchange with its bodies |
//! | `POST /api/requests/http` | replay `{"id": …, "modify": {method, path, headers, body, body_base64}}` → 201 and the new exchange |
//! | `DELETE /api/requests/http` | forget every exchange → 204 |
//! | `GET /api/handshakes/refused` | refused handshakes, newest first (`limit`) |
//! | `GET /api/tunnels` | the endpoints served |
//! | `GET /api/status` | uptime, endpoints, edge sessions, request rate, latency percentiles |
//! | `GET /api/events` | Server-Sent Events: `request`, `refusal`, `cleared`, `status`, `lagged` |

use std::convert::Infallible;

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::assets::asset;
use crate::feed::FeedBody;
use crate::filters::{DEFAULT_LIMIT, Filter};
use crate::inspector::{Inspector, ReplayChanges, ReplayError};

/// Response bodies: a page, JSON, or the live feed.
pub(crate) type ApiBody = UnsyncBoxBody<Bytes, Infallible>;

/// The largest replay request read (changes may carry a body).
const MAX_REPLAY_REQUEST: usize = 8 << 20;

/// A replay request (`POST /api/requests/http`), as ngrok's API takes it plus `modify`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayRequest {
    id: String,
    /// ngrok names the tunnel; the id alone says which endpoint here.
    #[allow(dead_code)]
    tunnel_name: Option<String>,
    #[serde(default)]
    modify: Option<ReplayChanges>,
}

/// Answers one request that passed the listener's origin checks.
pub(crate) async fn route(inspector: &Inspector, request: Request<Incoming>) -> Response<ApiBody> {
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let method = request.method().clone();
    if !path.starts_with("/api/") {
        return match (
            asset(&path),
            method == Method::GET || method == Method::HEAD,
        ) {
            (Some(asset), true) => {
                let mut response = Response::new(full(Bytes::from_static(asset.body.as_bytes())));
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
                response
            }
            (Some(_), false) => not_allowed("GET"),
            (None, _) => error(StatusCode::NOT_FOUND, format!("no page at {path}")),
        };
    }
    match (path.as_str(), method) {
        ("/api/requests/http", Method::GET) => match Filter::parse(&query) {
            Ok(filter) => ok_json(&json!({
                "uri": "/api/requests/http",
                "requests": inspector.list(&filter),
            })),
            Err(problem) => error(StatusCode::BAD_REQUEST, problem.to_string()),
        },
        ("/api/requests/http", Method::DELETE) => {
            inspector.clear();
            empty(StatusCode::NO_CONTENT)
        }
        ("/api/requests/http", Method::POST) => replay(inspector, request).await,
        ("/api/requests/http", _) => not_allowed("GET, POST, DELETE"),
        ("/api/handshakes/refused", Method::GET) => {
            let limit = match Filter::parse(&query) {
                Ok(filter) if query.contains("limit") => filter.limit,
                Ok(_) => DEFAULT_LIMIT,
                Err(problem) => return error(StatusCode::BAD_REQUEST, problem.to_string()),
            };
            ok_json(&json!({
                "uri": "/api/handshakes/refused",
                "handshakes": inspector.refusals(limit),
            }))
        }
        ("/api/tunnels", Method::GET) => ok_json(&inspector.tunnels()),
        ("/api/status", Method::GET) => ok_json(&inspector.status()),
        ("/api/events", Method::GET) => {
            let mut response = Response::new(FeedBody::follow(inspector.follow()).boxed_unsync());
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        ("/api/handshakes/refused" | "/api/tunnels" | "/api/status" | "/api/events", _) => {
            not_allowed("GET")
        }
        (path, method) => match path.strip_prefix("/api/requests/http/") {
            Some(id) if method == Method::GET => match inspector.find(id) {
                Some(entry) => ok_json(&entry.detail()),
                None => error(
                    StatusCode::NOT_FOUND,
                    format!("no captured request has id {id:?} (it may have left the ring)"),
                ),
            },
            Some(_) => not_allowed("GET"),
            None => error(StatusCode::NOT_FOUND, format!("no API route at {path}")),
        },
    }
}

/// `POST /api/requests/http`: replays a captured request, perhaps changed.
async fn replay(inspector: &Inspector, request: Request<Incoming>) -> Response<ApiBody> {
    let is_json = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim_start().starts_with("application/json"));
    if !is_json {
        // A form or text/plain POST from another site would need no CORS preflight; JSON does.
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the replay as Content-Type: application/json".to_owned(),
        );
    }
    let body = match Limited::new(request.into_body(), MAX_REPLAY_REQUEST)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(problem) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the replay request could not be read whole: {problem}"),
            );
        }
    };
    let asked: ReplayRequest = match serde_json::from_slice(&body) {
        Ok(asked) => asked,
        Err(problem) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "the replay request is not {{\"id\": ..., \"modify\": {{...}}}}: {problem}"
                ),
            );
        }
    };
    match inspector
        .replay(&asked.id, asked.modify.unwrap_or_default())
        .await
    {
        Ok(entry) => {
            let mut response = json_response(StatusCode::CREATED, &entry.detail());
            if let Ok(location) = HeaderValue::from_str(&format!("/api/requests/http/{}", entry.id))
            {
                response
                    .headers_mut()
                    .insert(http::header::LOCATION, location);
            }
            response
        }
        Err(problem) => {
            let status = match problem {
                ReplayError::NotFound(_) => StatusCode::NOT_FOUND,
                ReplayError::BodyTruncated { .. } => StatusCode::CONFLICT,
                ReplayError::Invalid { .. } => StatusCode::BAD_REQUEST,
                ReplayError::Unavailable => StatusCode::BAD_GATEWAY,
                ReplayError::ChangesNeedTheEdge => StatusCode::CONFLICT,
            };
            error(status, problem.to_string())
        }
    }
}

fn full(bytes: Bytes) -> ApiBody {
    Full::new(bytes).boxed_unsync()
}

fn json_response(status: StatusCode, value: &Value) -> Response<ApiBody> {
    let mut response = Response::new(full(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn ok_json(value: &Value) -> Response<ApiBody> {
    json_response(StatusCode::OK, value)
}

fn empty(status: StatusCode) -> Response<ApiBody> {
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = status;
    response
}

/// ngrok's error shape: `{error_code, status_code, msg, details}`.
pub(crate) fn error(status: StatusCode, message: String) -> Response<ApiBody> {
    json_response(
        status,
        &json!({
            "error_code": status.as_u16(),
            "status_code": status.as_u16(),
            "msg": message,
            "details": {},
        }),
    )
}

fn not_allowed(allow: &'static str) -> Response<ApiBody> {
    let mut response = error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("this route takes {allow}"),
    );
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    response
}
