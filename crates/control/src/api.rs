//! The router: one table of every route (its path, methods and handlers) that both
//! [`AdminApi::handle`] and the OpenAPI test read, so neither can have a route the other lacks.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE, IF_MATCH};
use http::{HeaderMap, HeaderValue, Method, Request, Response};
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::body::Body;
use moat_store::Store;

use crate::api_error::ApiError;
use crate::hooks::EdgeHooks;
use crate::reply::{self, Reply};
use crate::resources::{authorities, endpoints, grants, reservations, sessions, tokens};

/// The largest request body the API reads: 1 MiB holds a CA's PEM or an endpoint's rules many
/// times over.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What a handler returns: its reply or refusal, later.
pub(crate) type Handled<'a> = Pin<Box<dyn Future<Output = Result<Reply, ApiError>> + Send + 'a>>;

/// One method of one route.
type Handler = for<'a> fn(&'a AdminApi, Call) -> Handled<'a>;

/// One path of the API and what each of its methods does.
pub struct Route {
    /// The path; `{id}` stands for one segment, the record's id.
    pub path: &'static str,
    handlers: &'static [(&'static str, Handler)],
}

impl Route {
    /// The methods this path takes, e.g. `GET`, `POST`.
    pub fn methods(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.handlers.iter().map(|(method, _)| *method)
    }

    /// True when `path` (without its query) is this route's, e.g. `/endpoints/ep_1` for
    /// `/endpoints/{id}`.
    pub fn serves(&self, path: &str) -> bool {
        self.matches(path).is_some()
    }

    /// `Some(id)` when `path` is this route's (`None` inside for a path without `{id}`).
    fn matches(&self, path: &str) -> Option<Option<String>> {
        let mut id = None;
        let mut wanted = self.path.split('/');
        let mut given = path.split('/');
        loop {
            match (wanted.next(), given.next()) {
                (None, None) => return Some(id),
                (Some("{id}"), Some(segment)) if !segment.is_empty() => {
                    id = Some(segment.to_owned());
                }
                (Some(wanted), Some(segment)) if wanted == segment => {}
                _ => return None,
            }
        }
    }

    fn handler(&self, method: &Method) -> Option<Handler> {
        self.handlers
            .iter()
            .find(|(name, _)| *name == method.as_str())
            .map(|(_, handler)| *handler)
    }

    fn allow(&self) -> String {
        self.methods().collect::<Vec<_>>().join(", ")
    }
}

/// Every route the API serves; `/openapi.json` documents each of them. The edge console's pages
/// (`/`, `/console` and below) are no API routes and are left out of the document on purpose:
/// the listener answers them before the API (`console/mod.rs`), as HTML, script and events.
pub const ROUTES: &[Route] = &[
    Route {
        path: "/openapi.json",
        handlers: &[("GET", crate::openapi::get)],
    },
    Route {
        path: "/certificate_authorities",
        handlers: &[("GET", authorities::list), ("POST", authorities::create)],
    },
    Route {
        path: "/certificate_authorities/{id}",
        handlers: &[
            ("GET", authorities::get),
            ("PATCH", authorities::update),
            ("DELETE", authorities::delete),
        ],
    },
    Route {
        path: "/endpoints",
        handlers: &[("GET", endpoints::list), ("POST", endpoints::create)],
    },
    Route {
        path: "/endpoints/{id}",
        handlers: &[
            ("GET", endpoints::get),
            ("PATCH", endpoints::update),
            ("DELETE", endpoints::delete),
        ],
    },
    Route {
        path: "/reserved_domains",
        handlers: &[("GET", reservations::list), ("POST", reservations::create)],
    },
    Route {
        path: "/reserved_domains/{id}",
        handlers: &[("GET", reservations::get), ("DELETE", reservations::delete)],
    },
    Route {
        path: "/agent_grants",
        handlers: &[("GET", grants::list), ("POST", grants::create)],
    },
    Route {
        path: "/agent_grants/{id}",
        handlers: &[("GET", grants::get), ("DELETE", grants::delete)],
    },
    Route {
        path: "/join_tokens",
        handlers: &[("GET", tokens::list), ("POST", tokens::create)],
    },
    Route {
        path: "/join_tokens/{id}",
        handlers: &[("GET", tokens::get), ("DELETE", tokens::delete)],
    },
    Route {
        path: "/tunnel_sessions",
        handlers: &[("GET", sessions::list)],
    },
    Route {
        path: "/tunnel_sessions/{id}",
        handlers: &[("GET", sessions::get), ("DELETE", sessions::delete)],
    },
];

/// One request as a handler sees it, its body read.
#[derive(Debug)]
pub(crate) struct Call {
    /// The record's id, on the routes with `{id}`.
    pub id: String,
    /// The query string, for lists.
    pub query: Option<String>,
    /// The `If-Match` header, for changes.
    pub if_match: Option<String>,
    /// The body, at most [`MAX_BODY_BYTES`].
    pub body: Bytes,
}

/// The admin API over one store: answers requests, and tells the edge of every change it
/// commits. Cheap to share behind an `Arc`; the listener and tests call [`AdminApi::handle`].
pub struct AdminApi {
    pub(crate) store: Store,
    pub(crate) hooks: Arc<dyn EdgeHooks>,
}

impl std::fmt::Debug for AdminApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminApi")
            .field("store", &self.store.backend())
            .finish_non_exhaustive()
    }
}

impl AdminApi {
    /// The API over `store`; `hooks` make join tokens and hear of every committed change.
    pub fn new(store: Store, hooks: Arc<dyn EdgeHooks>) -> AdminApi {
        AdminApi { store, hooks }
    }

    /// Answers one request (every route of [`ROUTES`]). Never fails: a refusal is a JSON
    /// error response.
    pub async fn handle<B>(&self, request: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body + Send,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = request.into_parts();
        let path = parts.uri.path();
        let Some((route, id)) = ROUTES
            .iter()
            .find_map(|route| route.matches(path).map(|id| (route, id)))
        else {
            return reply::response(Err(ApiError::not_found(format!(
                "no route {path}; GET /openapi.json lists the API's routes"
            ))));
        };
        let Some(handler) = route.handler(&parts.method) else {
            let allow = route.allow();
            let mut response = reply::response(Err(ApiError::method_not_allowed(
                parts.method.as_str(),
                route.path,
                &allow,
            )));
            if let Ok(allow) = HeaderValue::from_str(&allow) {
                response.headers_mut().insert(ALLOW, allow);
            }
            return response;
        };
        let body = match read_body(&parts.method, &parts.headers, body).await {
            Ok(body) => body,
            Err(refusal) => return reply::response(Err(refusal)),
        };
        let call = Call {
            id: id.unwrap_or_default(),
            query: parts.uri.query().map(str::to_owned),
            if_match: parts
                .headers
                .get(IF_MATCH)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned),
            body,
        };
        reply::response(handler(self, call).await)
    }
}

/// The request's body, at most [`MAX_BODY_BYTES`]; a POST or PATCH must declare it JSON.
async fn read_body<B>(method: &Method, headers: &HeaderMap, body: B) -> Result<Bytes, ApiError>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return Err(ApiError::too_large(MAX_BODY_BYTES));
    }
    if *method == Method::POST || *method == Method::PATCH {
        let content_type = headers
            .get(CONTENT_TYPE)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .unwrap_or_default();
        let media_type = content_type.split(';').next().unwrap_or("").trim();
        if !media_type.eq_ignore_ascii_case("application/json") {
            return Err(ApiError::not_json(&content_type));
        }
    }
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::too_large(MAX_BODY_BYTES))
        }
        Err(error) => Err(ApiError::bad_json(format!(
            "the body could not be read: {error}"
        ))),
    }
}
