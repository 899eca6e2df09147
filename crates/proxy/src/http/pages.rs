//! The responses moat writes itself (403, 502, 504): a small HTML page, or JSON for API clients.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{BodyExt as _, Full};

use moat_policy::{Outcome, PolicyDecision, Refusal as PolicyRefusal};

use super::ProxyBody;
use super::canonical::PathRejection;
use super::host::HostRejection;

/// Why moat answered a request itself instead of the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The endpoint asks for a client certificate and the client sent none.
    ClientCertificateRequired,
    /// The endpoint's access rules refused the request (the decision names the rule).
    Policy(Box<PolicyDecision>),
    /// A `CONNECT` request (501): moat is a reverse proxy, not a tunnel to arbitrary hosts.
    ConnectNotAllowed,
    /// The upstream could not be reached or broke the exchange.
    UpstreamUnreachable,
    /// The upstream did not answer within `timeouts.upstream_response`.
    UpstreamTimedOut,
    /// The request-target has no canonical path (400).
    InvalidPath(PathRejection),
    /// The request names its host ambiguously or not at all (400).
    InvalidHost(HostRejection),
    /// The request's host is not the endpoint the connection's SNI chose (421).
    MisdirectedRequest,
    /// `Transfer-Encoding` holds a coding other than `chunked`, which moat would not pass on (501).
    UnsupportedTransferCoding,
    /// The client sent its body more slowly than `timeouts.request_body` allows (408).
    RequestBodyTimeout,
    /// The client's body was malformed, e.g. a bad chunk (400).
    InvalidRequestBody,
    /// The client left mid-request; the status (nginx's 499) is only recorded, never sent.
    ClientClosedRequest,
    /// Nothing publishes the host any more (404): the agent behind it stopped or lost its
    /// connection to the edge.
    EndpointOffline {
        /// The host the request named, or the endpoint's domain when it named none.
        host: String,
    },
}

impl Refusal {
    /// The gRPC status code a gRPC client gets for this refusal (grpc/doc/statuscodes.md).
    fn grpc_status(&self) -> u8 {
        const CANCELLED: u8 = 1;
        const INVALID_ARGUMENT: u8 = 3;
        const DEADLINE_EXCEEDED: u8 = 4;
        const PERMISSION_DENIED: u8 = 7;
        const UNIMPLEMENTED: u8 = 12;
        const UNAVAILABLE: u8 = 14;
        const UNAUTHENTICATED: u8 = 16;
        match self {
            Self::ClientCertificateRequired => UNAUTHENTICATED,
            Self::Policy(_) => PERMISSION_DENIED,
            Self::ConnectNotAllowed | Self::UnsupportedTransferCoding => UNIMPLEMENTED,
            Self::UpstreamUnreachable | Self::MisdirectedRequest => UNAVAILABLE,
            Self::EndpointOffline { .. } => UNAVAILABLE,
            Self::UpstreamTimedOut | Self::RequestBodyTimeout => DEADLINE_EXCEEDED,
            Self::InvalidPath(_) | Self::InvalidHost(_) | Self::InvalidRequestBody => {
                INVALID_ARGUMENT
            }
            Self::ClientClosedRequest => CANCELLED,
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::ClientCertificateRequired | Self::Policy(_) => StatusCode::FORBIDDEN,
            Self::ConnectNotAllowed => StatusCode::NOT_IMPLEMENTED,
            Self::UpstreamUnreachable => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimedOut => StatusCode::GATEWAY_TIMEOUT,
            Self::InvalidPath(_) | Self::InvalidHost(_) | Self::InvalidRequestBody => {
                StatusCode::BAD_REQUEST
            }
            Self::MisdirectedRequest => StatusCode::MISDIRECTED_REQUEST,
            Self::EndpointOffline { .. } => StatusCode::NOT_FOUND,
            Self::UnsupportedTransferCoding => StatusCode::NOT_IMPLEMENTED,
            Self::RequestBodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::ClientClosedRequest => {
                StatusCode::from_u16(CLIENT_CLOSED_REQUEST).unwrap_or(StatusCode::BAD_REQUEST)
            }
        }
    }

    /// What the person reading the page needs to know, and what to do about it. A policy
    /// refusal names the rule but not its selectors: those are for the operator's log and
    /// `moat verify`, not for whoever knocks.
    fn message(&self) -> String {
        let text = match self {
            Self::ClientCertificateRequired => CERTIFICATE_REQUIRED,
            Self::Policy(decision) => {
                return match (&decision.outcome, decision.rule.as_deref()) {
                    (Outcome::Refuse(PolicyRefusal::NoCertificate), Some(rule)) => {
                        format!("{CERTIFICATE_REQUIRED} (Access rule \"{rule}\" requires one.)")
                    }
                    (_, Some(rule)) => format!(
                        "Access denied by rule \"{rule}\": the client certificate presented is \
                         not allowed here. Ask the site's operator which certificate this rule \
                         lets in."
                    ),
                    (_, None) => {
                        "Access denied: no access rule covers this host and path.".to_owned()
                    }
                };
            }
            Self::ConnectNotAllowed => {
                "This gateway forwards requests to one service; it does not open CONNECT tunnels."
            }
            Self::UpstreamUnreachable => {
                "The gateway could not reach the service behind it. The service may be down; \
                 try again later."
            }
            Self::UpstreamTimedOut => {
                "The service behind the gateway did not answer in time. Try again later."
            }
            Self::EndpointOffline { host } => {
                return format!(
                    "Endpoint offline: nothing serves {host} right now. The agent that publishes \
                     it is stopped or not connected to this edge; try again once it is back."
                );
            }
            Self::InvalidPath(rejection) => {
                return format!(
                    "Bad request: {rejection}. Send the path with dot segments resolved and \
                     without encoded slashes, backslashes, control characters or ';'."
                );
            }
            Self::InvalidHost(rejection) => {
                return format!(
                    "Bad request: {rejection}. Send exactly one Host header naming the site, \
                     e.g. Host: app.example.com."
                );
            }
            Self::MisdirectedRequest => {
                "This connection was made for another site (its TLS server name chose it), so \
                 it cannot serve this request's host. Connect again using the request's host \
                 as the server name."
            }
            Self::UnsupportedTransferCoding => {
                "The request's Transfer-Encoding holds a coding this gateway does not pass on; \
                 send the body with Transfer-Encoding: chunked or Content-Length only."
            }
            Self::RequestBodyTimeout => {
                "The request body arrived too slowly and was cut off. Try again on a faster \
                 connection."
            }
            Self::InvalidRequestBody => {
                "Bad request: the request body is malformed (e.g. an invalid chunk)."
            }
            Self::ClientClosedRequest => "The client closed the connection before the response.",
        };
        text.to_owned()
    }

    /// The access rule that refused the request, if one did.
    fn rule(&self) -> Option<&str> {
        match self {
            Self::Policy(decision) => decision.rule.as_deref(),
            _ => None,
        }
    }

    /// A short machine-readable code for the JSON form.
    fn code(&self) -> &'static str {
        match self {
            Self::ClientCertificateRequired => "client_certificate_required",
            Self::Policy(decision) => match decision.outcome {
                Outcome::Refuse(PolicyRefusal::NoCertificate) => "client_certificate_required",
                _ => "policy_denied",
            },
            Self::ConnectNotAllowed => "connect_not_allowed",
            Self::UpstreamUnreachable => "upstream_unreachable",
            Self::UpstreamTimedOut => "upstream_timeout",
            Self::InvalidPath(_) => "invalid_path",
            Self::InvalidHost(_) => "invalid_host",
            Self::MisdirectedRequest => "misdirected_request",
            Self::UnsupportedTransferCoding => "unsupported_transfer_coding",
            Self::RequestBodyTimeout => "request_body_timeout",
            Self::InvalidRequestBody => "invalid_request_body",
            Self::ClientClosedRequest => "client_closed_request",
            Self::EndpointOffline { .. } => "endpoint_offline",
        }
    }
}

/// The status an audit event records for a request whose client left before the response
/// began (nginx's convention; never sent on the wire).
pub(super) const CLIENT_CLOSED_REQUEST: u16 = 499;

const CERTIFICATE_REQUIRED: &str = "A client certificate is required to access this site. \
    Present a certificate issued by one of the trusted certificate authorities (for example \
    curl --cert client.crt --key client.key) and try again.";

/// `text` safe inside HTML (rule names come from the configuration, not from clients, but a
/// quote or `<` in one must still not break the page).
fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// How moat's own pages are written for one request, decided from its `Accept` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PageFormat {
    /// A small HTML page, for browsers and anything that does not prefer JSON.
    Html,
    /// `{"error": ..., "code": ..., "status": ...}` for API clients.
    Json,
    /// A gRPC call (`content-type: application/grpc` or `application/grpc+proto` …): gRPC
    /// clients read only `grpc-status` and `grpc-message`, so the answer is HTTP 200 with those
    /// and no body (a "trailers-only" response), as a gRPC server would refuse the call.
    Grpc,
}

impl PageFormat {
    /// gRPC for a gRPC call; else JSON when `Accept` ranks `application/json` above `text/html`
    /// (RFC 9110 12.5.1: the most specific matching range gives each type its quality), else HTML.
    pub(super) fn for_request(headers: &HeaderMap) -> PageFormat {
        if is_grpc(headers) {
            return PageFormat::Grpc;
        }
        let mut json = RangeMatch::default();
        let mut html = RangeMatch::default();
        let items = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','));
        for (range, q) in items.filter_map(parse_media_range) {
            json.consider(range, q, "application", "json");
            html.consider(range, q, "text", "html");
        }
        if json.quality > html.quality {
            PageFormat::Json
        } else {
            PageFormat::Html
        }
    }
}

/// Whether the request is a gRPC call: `application/grpc`, alone or with a `+codec` suffix
/// (gRPC over HTTP/2, section "Requests"). gRPC-Web (`application/grpc-web…`) is not: its
/// clients read HTTP statuses.
fn is_grpc(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    let Some(rest) = media_type
        .get(..16)
        .filter(|head| head.eq_ignore_ascii_case("application/grpc"))
        .map(|_| &media_type[16..])
    else {
        return false;
    };
    rest.is_empty() || rest.starts_with('+')
}

/// The most specific `Accept` range seen so far for one media type, and its quality.
#[derive(Debug, Default)]
struct RangeMatch {
    /// 0 = none, 1 = `*/*`, 2 = `type/*`, 3 = `type/subtype`.
    specificity: u8,
    quality: f32,
}

impl RangeMatch {
    fn consider(&mut self, range: &str, quality: f32, kind: &str, sub: &str) {
        let specificity = match range.split_once('/') {
            Some((k, s)) if k.eq_ignore_ascii_case(kind) && s.eq_ignore_ascii_case(sub) => 3,
            Some((k, "*")) if k.eq_ignore_ascii_case(kind) => 2,
            Some(("*", "*")) => 1,
            _ => return,
        };
        if specificity > self.specificity {
            self.specificity = specificity;
            self.quality = quality;
        }
    }
}

/// `type/subtype;q=0.5` as the range and its quality (1 when absent, 0 when unreadable).
fn parse_media_range(item: &str) -> Option<(&str, f32)> {
    let mut parts = item.split(';');
    let range = parts.next()?.trim();
    if range.is_empty() {
        return None;
    }
    let mut quality = 1.0;
    for param in parts {
        if let Some((name, value)) = param.split_once('=')
            && name.trim().eq_ignore_ascii_case("q")
        {
            quality = value.trim().parse().unwrap_or(0.0);
        }
    }
    Some((range, quality))
}

/// The response for `refusal` in `format`.
pub(super) fn refusal_response(refusal: Refusal, format: PageFormat) -> Response<ProxyBody> {
    let status = refusal.status();
    let (content_type, body) = match format {
        PageFormat::Grpc => return grpc_refusal(&refusal, status),
        PageFormat::Json => {
            let mut body = serde_json::json!({
                "error": refusal.message(),
                "code": refusal.code(),
                "status": status.as_u16(),
            });
            if let Some(rule) = refusal.rule() {
                body["rule"] = serde_json::Value::from(rule);
            }
            ("application/json", format!("{body}\n"))
        }
        PageFormat::Html => {
            let reason = status.canonical_reason().unwrap_or("Error");
            let code = status.as_u16();
            let message = escape_html(&refusal.message());
            let body = format!(
                "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\">\
                 <title>{code} {reason}</title></head>\n<body>\n<h1>{code} {reason}</h1>\n\
                 <p>{message}</p>\n<hr><p>moat</p>\n</body>\n</html>\n"
            );
            ("text/html; charset=utf-8", body)
        }
    };
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The HTTP status moat decided for a request, where the response on the wire says otherwise: a
/// refused gRPC call is answered 200 with a `grpc-status`, and the log, audit event and metrics
/// still record the refusal's status (403, 502, 504…).
#[derive(Debug, Clone, Copy)]
pub(super) struct DecidedStatus(pub StatusCode);

impl DecidedStatus {
    /// The status to record for `response`.
    pub(super) fn of<B>(response: &Response<B>) -> StatusCode {
        response
            .extensions()
            .get::<DecidedStatus>()
            .map_or(response.status(), |decided| decided.0)
    }
}

/// A trailers-only gRPC answer: HTTP 200, `content-type: application/grpc`, `grpc-status` and a
/// percent-encoded `grpc-message`, and no body.
fn grpc_refusal(refusal: &Refusal, status: StatusCode) -> Response<ProxyBody> {
    let mut response = Response::new(
        Full::new(Bytes::new())
            .map_err(|never| match never {})
            .boxed(),
    );
    response.extensions_mut().insert(DecidedStatus(status));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(
        "grpc-status",
        HeaderValue::from(u16::from(refusal.grpc_status())),
    );
    if let Ok(message) = HeaderValue::from_str(&grpc_message(&refusal.message())) {
        headers.insert("grpc-message", message);
    }
    response
}

/// `message` as gRPC's `grpc-message` carries it: UTF-8, with `%` and every byte outside
/// printable ASCII percent-encoded (gRPC over HTTP/2, "Responses").
fn grpc_message(message: &str) -> String {
    let mut encoded = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefers_json(headers: &HeaderMap) -> bool {
        PageFormat::for_request(headers) == PageFormat::Json
    }

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn json_is_chosen_only_when_ranked_above_html() {
        assert!(prefers_json(&accept("application/json")));
        assert!(prefers_json(&accept("text/html;q=0.5, application/json")));
        assert!(!prefers_json(&accept(
            "text/html,application/xhtml+xml,*/*;q=0.8"
        )));
        assert!(!prefers_json(&accept("*/*")));
        assert!(!prefers_json(&HeaderMap::new()));
        assert!(!prefers_json(&accept("application/json;q=0.2, text/*")));
        assert!(prefers_json(&accept("Application/JSON, text/html;q=0.9")));
        assert!(prefers_json(&accept("application/*, text/html;q=0")));
    }

    fn content_type(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn grpc_calls_are_told_by_their_content_type() {
        for (value, grpc) in [
            ("application/grpc", true),
            ("application/grpc+proto", true),
            ("Application/GRPC+json; charset=utf-8", true),
            ("application/grpc-web", false),
            ("application/grpc-web+proto", false),
            ("application/grpcx", false),
            ("application/json", false),
            ("text/plain", false),
        ] {
            let format = PageFormat::for_request(&content_type(value));
            assert_eq!(format == PageFormat::Grpc, grpc, "{value}");
        }
        assert_eq!(PageFormat::for_request(&HeaderMap::new()), PageFormat::Html);
    }

    #[test]
    fn a_refused_grpc_call_gets_its_grpc_status_and_the_refusal_is_recorded() {
        for (refusal, grpc_status, decided) in [
            (
                Refusal::ClientCertificateRequired,
                "16",
                StatusCode::FORBIDDEN,
            ),
            (Refusal::UpstreamUnreachable, "14", StatusCode::BAD_GATEWAY),
            (Refusal::UpstreamTimedOut, "4", StatusCode::GATEWAY_TIMEOUT),
            (
                Refusal::ConnectNotAllowed,
                "12",
                StatusCode::NOT_IMPLEMENTED,
            ),
        ] {
            let message = refusal.message();
            let response = refusal_response(refusal, PageFormat::Grpc);
            assert_eq!(response.status(), StatusCode::OK);
            let headers = response.headers();
            assert_eq!(headers[header::CONTENT_TYPE], "application/grpc");
            assert_eq!(headers["grpc-status"], grpc_status, "{message}");
            assert_eq!(headers["grpc-message"], grpc_message(&message).as_str());
            assert_eq!(DecidedStatus::of(&response), decided);
        }
    }

    #[test]
    fn grpc_messages_percent_encode_percent_and_non_printable_bytes() {
        assert_eq!(
            grpc_message("rule \"admin\" denied"),
            "rule \"admin\" denied"
        );
        assert_eq!(grpc_message("100% sure"), "100%25 sure");
        assert_eq!(grpc_message("caf\u{e9}\n"), "caf%C3%A9%0A");
    }

    #[test]
    fn forbidden_page_says_a_certificate_is_required() {
        let response = refusal_response(Refusal::ClientCertificateRequired, PageFormat::Html);
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
    }
}
