//! One captured exchange as the inspector keeps it, and its JSON (ngrok's request object, plus
//! the client certificate, the TLS session and the rule that decided).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Version};
use moat_proxy::http::inspect::{CapturedBody, Exchange, ReplayMark, ReplayTarget};
use moat_telemetry::ConnectionInfo;
use moat_trust::{ClientIdentity, SubjectAltName};
use serde_json::{Map, Value, json};

/// What an entry costs besides its headers and bodies, for the ring's byte limit.
const ENTRY_OVERHEAD: usize = 512;

/// A finished exchange, kept in the ring.
#[derive(Debug)]
pub(crate) struct Entry {
    /// ngrok-style: 16 hex digits, unique within this process.
    pub id: String,
    /// What it holds, in bytes (headers, captured bodies and a fixed overhead).
    pub size: usize,
    pub started: SystemTime,
    pub duration: Duration,
    /// The client connection (endpoint, addresses, TLS, certificate), shared with its other
    /// requests: kept, not copied, since every request pays for what is copied here.
    pub info: Arc<ConnectionInfo>,
    pub method: Method,
    pub version: Version,
    pub host: Option<String>,
    pub target: String,
    pub request_headers: HeaderMap,
    pub request_body: CapturedBody,
    pub forwarded: bool,
    pub rule: Option<String>,
    pub status: u16,
    pub response_headers: HeaderMap,
    pub response_body: CapturedBody,
    /// Set when the inspector sent this request again.
    pub replay: Option<ReplayMark>,
    /// True when an edge terminated TLS and admitted the request (this is an agent).
    pub judged_at_edge: bool,
    /// Where to send it again; `None` only in tests.
    pub target_of_replay: Option<ReplayTarget>,
}

impl Entry {
    /// The entry for `exchange`, named `id`.
    pub(crate) fn new(id: String, exchange: Exchange) -> Entry {
        let size = ENTRY_OVERHEAD
            + headers_size(&exchange.request_headers)
            + headers_size(&exchange.response_headers)
            + exchange.request_body.bytes.len()
            + exchange.response_body.bytes.len()
            + exchange.target.len();
        Entry {
            id,
            size,
            started: exchange.started,
            duration: exchange.duration,
            info: exchange.info,
            method: exchange.method,
            version: exchange.version,
            host: exchange.host,
            target: exchange.target,
            request_headers: exchange.request_headers,
            request_body: exchange.request_body,
            forwarded: exchange.forwarded,
            rule: exchange.rule,
            status: exchange.status,
            response_headers: exchange.response_headers,
            response_body: exchange.response_body,
            replay: exchange.replay,
            judged_at_edge: exchange.target_of_replay.judged_at_the_edge(),
            target_of_replay: Some(exchange.target_of_replay),
        }
    }

    pub(crate) fn duration_ms(&self) -> f64 {
        self.duration.as_secs_f64() * 1000.0
    }

    /// The client certificate's subject, or `""` without one.
    pub(crate) fn subject(&self) -> &str {
        self.info
            .client
            .as_ref()
            .map_or("", |client| client.subject.as_str())
    }

    /// The client's address; an edge names it without the port.
    fn remote_addr(&self) -> String {
        let peer = self.info.peer_addr;
        if peer.port() == 0 {
            peer.ip().to_string()
        } else {
            peer.to_string()
        }
    }

    /// The list's view: everything but the bodies' bytes.
    pub(crate) fn summary(&self) -> Value {
        self.to_json(false)
    }

    /// The detail view: with the captured bodies and ngrok's `raw` (the request and the
    /// response as bytes, base64).
    pub(crate) fn detail(&self) -> Value {
        self.to_json(true)
    }

    fn to_json(&self, with_bodies: bool) -> Value {
        let proto = proto(self.version);
        let reason = StatusCode::from_u16(self.status)
            .ok()
            .and_then(|status| status.canonical_reason())
            .unwrap_or("");
        let mut request = json!({
            "method": self.method.as_str(),
            "proto": proto,
            "uri": self.target,
            "headers": headers_json(&self.request_headers),
            "body": body_json(&self.request_body, &self.request_headers, with_bodies),
        });
        let mut response = json!({
            "status": format!("{} {reason}", self.status).trim_end().to_owned(),
            "status_code": self.status,
            "proto": proto,
            "headers": headers_json(&self.response_headers),
            "body": body_json(&self.response_body, &self.response_headers, with_bodies),
        });
        if with_bodies {
            request["raw"] = json!(raw_request(self));
            response["raw"] = json!(raw_response(self, reason));
        }
        json!({
            "uri": format!("/api/requests/http/{}", self.id),
            "id": self.id,
            "tunnel_name": self.info.endpoint,
            "endpoint": self.info.endpoint,
            "remote_addr": self.remote_addr(),
            "start": rfc3339(self.started),
            // ngrok counts nanoseconds.
            "duration": u64::try_from(self.duration.as_nanos()).unwrap_or(u64::MAX),
            "duration_ms": self.duration_ms(),
            "method": self.method.as_str(),
            "host": self.host,
            "path": self.target,
            "status": self.status,
            "rule": self.rule,
            "forwarded": self.forwarded,
            "judged_at_edge": self.judged_at_edge,
            "replay_of": self.replay.as_ref().map(|mark| mark.original.clone()),
            "client": self.info.client.as_deref().map(client_json),
            "tls": {
                "version": (!self.info.tls_version.is_empty()).then_some(self.info.tls_version),
                "cipher": self.info.cipher_suite,
                "sni": self.info.sni,
                "alpn": if self.info.http2 { "h2" } else { "http/1.1" },
            },
            "request": request,
            "response": response,
        })
    }
}

/// The protocol as ngrok writes it.
fn proto(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

fn headers_size(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum()
}

/// `{name: [values]}`; a value that is not UTF-8 shows its bytes lossily.
fn headers_json(headers: &HeaderMap) -> Value {
    let mut object = Map::new();
    for name in headers.keys() {
        let values: Vec<Value> = headers
            .get_all(name)
            .iter()
            .map(|value| Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned()))
            .collect();
        object.insert(name.as_str().to_owned(), Value::Array(values));
    }
    Value::Object(object)
}

/// A body's size and, in the detail view, its captured bytes: as text when they are UTF-8,
/// else base64.
fn body_json(body: &CapturedBody, headers: &HeaderMap, with_bytes: bool) -> Value {
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    let mut object = json!({
        "size": body.total,
        "captured": body.bytes.len(),
        "truncated": body.truncated(),
        "content_type": content_type,
    });
    if with_bytes {
        match std::str::from_utf8(&body.bytes) {
            Ok(text) => {
                object["encoding"] = json!("utf-8");
                object["data"] = json!(text);
            }
            Err(_) => {
                object["encoding"] = json!("base64");
                object["data"] =
                    json!(base64::engine::general_purpose::STANDARD.encode(&body.bytes));
            }
        }
    }
    object
}

pub(crate) fn client_json(client: &ClientIdentity) -> Value {
    json!({
        "subject": client.subject,
        "common_name": client.common_name,
        "issuer": client.issuer,
        "serial": client.serial_hex,
        "fingerprint_sha256": client.fingerprint_sha256,
        "not_before": unix_rfc3339(client.not_before),
        "not_after": unix_rfc3339(client.not_after),
        "sans": client.sans.iter().map(san_text).collect::<Vec<_>>(),
    })
}

/// A subject alternative name as `TYPE:value` (OpenSSL's spelling).
fn san_text(san: &SubjectAltName) -> String {
    match san {
        SubjectAltName::Dns(name) => format!("DNS:{name}"),
        SubjectAltName::Ip(address) => format!("IP:{address}"),
        SubjectAltName::Uri(uri) => format!("URI:{uri}"),
        SubjectAltName::Email(email) => format!("email:{email}"),
    }
}

/// ngrok's `raw`: the message as HTTP/1.1 bytes (head, then the captured body), base64.
fn raw_request(entry: &Entry) -> String {
    let mut raw = format!("{} {} HTTP/1.1\r\n", entry.method, entry.target).into_bytes();
    raw_head_and_body(&mut raw, &entry.request_headers, &entry.request_body.bytes);
    base64::engine::general_purpose::STANDARD.encode(raw)
}

fn raw_response(entry: &Entry, reason: &str) -> String {
    let mut raw = format!("HTTP/1.1 {} {reason}\r\n", entry.status).into_bytes();
    raw_head_and_body(
        &mut raw,
        &entry.response_headers,
        &entry.response_body.bytes,
    );
    base64::engine::general_purpose::STANDARD.encode(raw)
}

fn raw_head_and_body(raw: &mut Vec<u8>, headers: &HeaderMap, body: &Bytes) {
    for (name, value) in headers {
        raw.extend_from_slice(name.as_str().as_bytes());
        raw.extend_from_slice(b": ");
        raw.extend_from_slice(value.as_bytes());
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"\r\n");
    raw.extend_from_slice(body);
}

/// RFC 3339 UTC with milliseconds.
pub(crate) fn rfc3339(time: SystemTime) -> String {
    let time = time::OffsetDateTime::from(time);
    time.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn unix_rfc3339(seconds: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|time| {
            time.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An entry of `size` bytes, for the ring's tests.
    pub(crate) fn entry_of_size(id: &str, size: usize) -> Arc<Entry> {
        let mut entry = sample(id);
        entry.size = size;
        Arc::new(entry)
    }

    /// A GET answered 200, without a client certificate.
    pub(crate) fn sample(id: &str) -> Entry {
        Entry {
            id: id.to_owned(),
            size: ENTRY_OVERHEAD,
            started: SystemTime::UNIX_EPOCH,
            duration: Duration::from_millis(12),
            info: Arc::new(ConnectionInfo {
                endpoint: "app".to_owned(),
                peer_addr: "127.0.0.1:50000".parse().unwrap(),
                local_addr: "127.0.0.1:8443".parse().unwrap(),
                sni: Some("localhost".to_owned()),
                sni_routed: false,
                tls_version: "TLSv1.3",
                cipher_suite: Some("TLS13_AES_128_GCM_SHA256"),
                http2: false,
                client: None,
            }),
            method: Method::GET,
            version: Version::HTTP_11,
            host: Some("localhost".to_owned()),
            target: "/items?page=2".to_owned(),
            request_headers: HeaderMap::new(),
            request_body: CapturedBody::default(),
            forwarded: true,
            rule: None,
            status: 200,
            response_headers: HeaderMap::new(),
            response_body: CapturedBody {
                bytes: Bytes::from_static(b"{\"ok\":true}"),
                total: 11,
            },
            replay: None,
            judged_at_edge: false,
            target_of_replay: None,
        }
    }

    #[test]
    fn the_detail_carries_the_bodies_and_the_summary_does_not() {
        let entry = sample("0000000100000001");
        let summary = entry.summary();
        assert_eq!(summary["uri"], "/api/requests/http/0000000100000001");
        assert_eq!(summary["response"]["status"], "200 OK");
        assert_eq!(summary["response"]["body"]["size"], 11);
        assert!(summary["response"]["body"].get("data").is_none());
        assert_eq!(summary["duration"], 12_000_000);
        let detail = entry.detail();
        assert_eq!(detail["response"]["body"]["data"], "{\"ok\":true}");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(detail["request"]["raw"].as_str().unwrap())
            .unwrap();
        assert!(raw.starts_with(b"GET /items?page=2 HTTP/1.1\r\n"));
    }
}
