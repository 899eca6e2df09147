//! WebSockets over HTTP/2 (RFC 8441): a client's extended CONNECT becomes an HTTP/1.1 upgrade
//! to the upstream, whose `101` becomes the client's `200`.
//!
//! Browsers open a WebSocket over an HTTP/2 connection they already have with `CONNECT` and
//! `:protocol = websocket`, without `Sec-WebSocket-Key`: the stream itself is the tunnel. Most
//! WebSocket servers speak only the HTTP/1.1 handshake, so moat makes that handshake for the
//! client: its own key, and the upstream's `Sec-WebSocket-Accept` checked against it (the
//! client cannot check it, having sent no key).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};

/// RFC 6455 4.2.2's GUID, appended to the key before hashing.
const WEBSOCKET_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Headers of the upstream's `101` that the client's `200` carries: the subprotocol and
/// extensions the upstream chose (RFC 8441 5).
const NEGOTIATED: [HeaderName; 2] = [
    HeaderName::from_static("sec-websocket-protocol"),
    HeaderName::from_static("sec-websocket-extensions"),
];

/// True for an HTTP/2 WebSocket request: `CONNECT` with `:protocol = websocket`.
pub(super) fn is_websocket<B>(request: &Request<B>) -> bool {
    request.version() == Version::HTTP_2
        && request.method() == Method::CONNECT
        && request
            .extensions()
            .get::<hyper::ext::Protocol>()
            .is_some_and(|protocol| protocol.as_str().eq_ignore_ascii_case("websocket"))
}

/// The `Sec-WebSocket-Accept` an upstream must answer to moat's key.
pub(super) struct ExpectedAccept(String);

/// Turns the head of an extended CONNECT into an HTTP/1.1 WebSocket handshake: `GET`, the
/// `Upgrade` headers and a fresh key (one the client may have sent is replaced). `None` when no
/// random key could be made.
pub(super) fn upstream_handshake(
    method: &mut Method,
    headers: &mut HeaderMap,
) -> Option<ExpectedAccept> {
    let mut nonce = [0u8; 16];
    rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(&mut nonce)
        .ok()?;
    let key = BASE64.encode(nonce);
    *method = Method::GET;
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::SEC_WEBSOCKET_KEY, HeaderValue::from_str(&key).ok()?);
    Some(ExpectedAccept(accept_for(key.as_bytes())))
}

/// RFC 6455 4.2.2: base64(SHA-1(key + GUID)).
fn accept_for(key: &[u8]) -> String {
    let mut input = key.to_vec();
    input.extend_from_slice(WEBSOCKET_GUID);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    BASE64.encode(digest.as_ref())
}

impl ExpectedAccept {
    /// Whether the upstream's `101` answered moat's key, as RFC 6455 4.1 asks a client to check.
    pub(super) fn matches(&self, headers: &HeaderMap) -> bool {
        let mut accepts = headers.get_all(header::SEC_WEBSOCKET_ACCEPT).iter();
        match (accepts.next(), accepts.next()) {
            (Some(accept), None) => accept.as_bytes() == self.0.as_bytes(),
            _ => false,
        }
    }
}

/// The client's `200` for an upgrade the upstream accepted with `upstream_headers`.
pub(super) fn client_response<B>(upstream_headers: &HeaderMap, body: B) -> Response<B> {
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    for name in NEGOTIATED {
        for value in upstream_headers.get_all(&name) {
            response.headers_mut().append(name.clone(), value.clone());
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_is_rfc_6455s_for_its_sample_key() {
        // RFC 6455 1.3's example.
        assert_eq!(
            accept_for(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn the_handshake_has_a_fresh_key_and_only_its_accept_matches() {
        let mut method = Method::CONNECT;
        let mut headers = HeaderMap::new();
        headers.insert(
            header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("Y2xpZW50"),
        );
        let expected = upstream_handshake(&mut method, &mut headers).unwrap();
        assert_eq!(method, Method::GET);
        assert_eq!(headers[header::UPGRADE], "websocket");
        assert_eq!(headers[header::CONNECTION], "upgrade");
        let key = headers[header::SEC_WEBSOCKET_KEY].clone();
        assert_ne!(key, "Y2xpZW50", "the client's key is replaced");
        assert_eq!(BASE64.decode(key.as_bytes()).unwrap().len(), 16);

        let answer = |values: &[&str]| {
            let mut map = HeaderMap::new();
            for value in values {
                map.append(header::SEC_WEBSOCKET_ACCEPT, value.parse().unwrap());
            }
            map
        };
        let right = accept_for(key.as_bytes());
        assert!(expected.matches(&answer(&[&right])));
        assert!(!expected.matches(&answer(&[])));
        assert!(!expected.matches(&answer(&[&accept_for(b"Y2xpZW50")])));
        assert!(!expected.matches(&answer(&[&right, &right])));
    }
}
