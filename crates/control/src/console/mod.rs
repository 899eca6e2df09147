//! The edge console (issue 16): a page on the admin listener — behind the same client
//! certificate check as the API — showing the connected agents and their endpoints, the CAs and
//! their days to expiry, a live feed of handshakes and refusals, and the last hour in charts.
//! Changes go through the API itself: the page calls it with `fetch()`.
//!
//! ```text
//! GET /                   303 to /console
//! GET /console            the page (assets/console.html), its script and style beside it
//! GET /console/agents     this edge's agent sessions and what each publishes (agents.rs)
//! GET /console/charts     the last hour in one-minute buckets (charts.rs)
//! GET /console/certificates  what the endpoints use, agents' uploads included (in_use.rs)
//! GET /console/events     the feed as Server-Sent Events (feed.rs, stream.rs)
//! ```
//!
//! [`Console`] is a [`Subscriber`] of the edge's telemetry: every event updates the feed, the
//! charts, the agents and the certificates in use as it happens.

mod agents;
mod assets;
mod charts;
mod feed;
mod in_use;
mod stream;

use std::convert::Infallible;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, LOCATION};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use moat_telemetry::{Event, Subscriber};
use serde_json::Value;
use tokio::sync::watch;

use crate::times::unix_now;
use agents::LiveAgents;
use assets::Asset;
use charts::Charts;
use feed::Feed;
use in_use::InUse;
use stream::EventStream;

/// A response of the admin listener: the API's whole JSON bodies, or the console's stream.
pub type AdminBody = BoxBody<Bytes, Infallible>;

/// What the console knows, fed by the edge's telemetry; shared by the listener's connections.
#[derive(Debug)]
pub struct Console {
    feed: Feed,
    charts: Charts,
    agents: LiveAgents,
    in_use: InUse,
    /// Turns true when the listener stops, ending the event streams (they never end on
    /// their own, and the listener's drain would wait for them).
    closing: watch::Sender<bool>,
}

impl Default for Console {
    fn default() -> Console {
        Console {
            feed: Feed::default(),
            charts: Charts::default(),
            agents: LiveAgents::default(),
            in_use: InUse::default(),
            closing: watch::channel(false).0,
        }
    }
}

impl Subscriber for Console {
    fn on_event(&self, event: &Event<'_>) {
        self.charts.record(event, unix_now());
        self.feed.record(event);
        self.agents.record(event);
        self.in_use.record(event);
    }
}

impl Console {
    /// A console with nothing seen yet; subscribe it to the telemetry it shows.
    pub fn new() -> Console {
        Console::default()
    }

    /// Ends the open event streams: the listener is stopping.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// The console's answer to `request`, or `None` when the path is not the console's (the
    /// API's then).
    pub fn handle<B>(&self, request: &Request<B>) -> Option<Response<AdminBody>> {
        let path = request.uri().path();
        if path != "/" && path != "/console" && !path.starts_with("/console/") {
            return None;
        }
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return Some(plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "the console's pages are read with GET; changes go through the API\n",
            ));
        }
        Some(match path {
            "/" => {
                let mut response = plain(StatusCode::SEE_OTHER, "the console is at /console\n");
                response
                    .headers_mut()
                    .insert(LOCATION, HeaderValue::from_static("/console"));
                response
            }
            "/console" | "/console/" => asset(assets::PAGE),
            "/console/console.js" => asset(assets::SCRIPT),
            "/console/console.css" => asset(assets::STYLE),
            "/console/icon.svg" => asset(assets::ICON),
            "/console/agents" => json(&self.agents.snapshot()),
            "/console/charts" => json(&self.charts.snapshot(unix_now())),
            "/console/certificates" => json(&self.in_use.snapshot()),
            "/console/events" => self.events(request),
            _ => plain(
                StatusCode::NOT_FOUND,
                "no such console page; the console is at /console\n",
            ),
        })
    }

    /// The feed as Server-Sent Events, after the `Last-Event-ID` the browser sends when it
    /// reconnects.
    fn events<B>(&self, request: &Request<B>) -> Response<AdminBody> {
        let after = request
            .headers()
            .get("last-event-id")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let stream = EventStream::follow(&self.feed, after, self.closing.subscribe());
        respond(StatusCode::OK, "text/event-stream", stream.boxed())
    }
}

/// A response with the console's headers.
fn respond(status: StatusCode, content_type: &'static str, body: AdminBody) -> Response<AdminBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    assets::secure(headers);
    response
}

fn asset(asset: Asset) -> Response<AdminBody> {
    respond(StatusCode::OK, asset.content_type, whole(asset.body))
}

fn json(value: &Value) -> Response<AdminBody> {
    respond(StatusCode::OK, "application/json", whole(value.to_string()))
}

fn plain(status: StatusCode, text: &'static str) -> Response<AdminBody> {
    respond(status, "text/plain; charset=utf-8", whole(text))
}

fn whole(body: impl Into<Bytes>) -> AdminBody {
    Full::new(body.into()).boxed()
}

#[cfg(test)]
mod tests {
    use http::header::{CONTENT_SECURITY_POLICY, X_CONTENT_TYPE_OPTIONS};

    use super::*;

    fn get(console: &Console, method: Method, path: &str) -> Option<Response<AdminBody>> {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(())
            .unwrap();
        console.handle(&request)
    }

    #[test]
    fn the_console_answers_its_paths_with_its_headers_and_leaves_the_rest_to_the_api() {
        let console = Console::new();
        for path in ["/certificate_authorities", "/openapi.json", "/consoles"] {
            assert!(get(&console, Method::GET, path).is_none(), "{path}");
        }
        let root = get(&console, Method::GET, "/").unwrap();
        assert_eq!(root.status(), StatusCode::SEE_OTHER);
        assert_eq!(root.headers()[LOCATION], "/console");
        for (path, status, media) in [
            ("/console", StatusCode::OK, "text/html; charset=utf-8"),
            (
                "/console/console.js",
                StatusCode::OK,
                "text/javascript; charset=utf-8",
            ),
            ("/console/agents", StatusCode::OK, "application/json"),
            (
                "/console/nothing",
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
            ),
        ] {
            let response = get(&console, Method::GET, path).unwrap();
            assert_eq!(response.status(), status, "{path}");
            let headers = response.headers();
            assert_eq!(headers[CONTENT_TYPE], media, "{path}");
            assert!(
                headers[CONTENT_SECURITY_POLICY]
                    .to_str()
                    .unwrap()
                    .starts_with("default-src 'self'; script-src 'self';"),
                "{path}"
            );
            assert_eq!(headers[X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
        }
        let posted = get(&console, Method::POST, "/console").unwrap();
        assert_eq!(posted.status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[test]
    fn the_page_runs_no_inline_script_and_writes_no_markup_from_data() {
        // The CSP forbids inline script; the page must not need any.
        assert!(!assets::PAGE.body.contains("<script>"));
        // No inline event handler: no ` onNAME=` attribute.
        let handler = assets::PAGE.body.split(" on").skip(1).find(|after| {
            let name: String = after.chars().take_while(char::is_ascii_lowercase).collect();
            !name.is_empty() && after[name.len()..].starts_with('=')
        });
        assert_eq!(handler, None);
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
        ] {
            assert!(!assets::SCRIPT.body.contains(sink), "{sink}");
        }
    }
}
