//! Header rewriting between client and upstream: hop-by-hop removal, forwarding headers, identity.

use std::net::{IpAddr, SocketAddr};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use moat_trust::{ClientIdentity, SubjectAltName};

/// Headers that describe one hop of a connection and never travel past it (RFC 9110 7.6.1), plus
/// the proxy credentials that are meant for the hop they were sent to.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
    "expect",
];

/// The RFC 9440 headers, removed from every client request so that only moat can set them.
const IDENTITY_EXACT: [&str; 2] = ["client-cert", "client-cert-chain"];

/// Prefix of moat's readable identity headers, removed from every client request for the same reason.
const IDENTITY_PREFIX: &str = "moat-client-";

/// True when the message asks to switch protocols on this connection (HTTP/1.1 `Upgrade`).
pub(super) fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_tokens(headers).any(|t| t == "upgrade")
}

/// Lowercased tokens of every `Connection` header.
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = String> + '_ {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
}

/// Removes hop-by-hop headers and the headers `Connection` names. When `keep_upgrade` is set the
/// `Upgrade` header survives and `Connection: upgrade` is re-added, so that a protocol switch can
/// be negotiated end to end. `TE: trailers` survives because it is the one TE value a proxy may
/// pass on (RFC 9110 10.1.4).
pub(super) fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<String> = connection_tokens(headers).collect();
    for name in named {
        if keep_upgrade && name == "upgrade" {
            continue;
        }
        if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
            headers.remove(name);
        }
    }
    let te_trailers = headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("trailers")
        });
    for name in HOP_BY_HOP {
        if keep_upgrade && name == "upgrade" {
            continue;
        }
        headers.remove(name);
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// HTTP/2 lets a client split `Cookie` into several fields; an HTTP/1.1 upstream expects one
/// (RFC 9113 8.2.3), so they are joined with `; `.
pub(super) fn join_cookies(headers: &mut HeaderMap) {
    if headers.get_all(header::COOKIE).iter().count() < 2 {
        return;
    }
    let joined = headers
        .get_all(header::COOKIE)
        .iter()
        .map(|v| v.as_bytes())
        .collect::<Vec<_>>()
        .join(&b"; "[..]);
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, value);
    }
}

/// The client's address as the forwarding headers write it, formatted once per connection
/// rather than for every request.
#[derive(Debug, Clone)]
pub(super) struct ClientAddress {
    /// The address alone, the `X-Forwarded-For` value when the client sent none.
    ip: HeaderValue,
    /// The RFC 7239 node: IPv6 addresses are bracketed and therefore quoted (section 6).
    node: String,
}

impl ClientAddress {
    /// The forwarding text of `peer`. A dual-stack listener reports IPv4 clients as
    /// `::ffff:a.b.c.d`; upstreams expect `a.b.c.d`.
    pub(super) fn of(peer: SocketAddr) -> ClientAddress {
        let ip = peer.ip().to_canonical();
        let text = ip.to_string();
        let node = match ip {
            IpAddr::V4(_) => text.clone(),
            IpAddr::V6(_) => format!("\"[{text}]\""),
        };
        ClientAddress {
            // An address is always visible ASCII.
            ip: HeaderValue::from_str(&text)
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            node,
        }
    }
}

/// What the forwarding headers say about the client's side of the proxy.
pub(super) struct ForwardedFor<'a> {
    /// The client's address.
    pub client: &'a ClientAddress,
    /// The host the client asked for (Host header or HTTP/2 authority), if any.
    pub host: Option<&'a str>,
}

/// Appends the client to `X-Forwarded-For` and `Forwarded` (RFC 7239) and sets
/// `X-Forwarded-Proto: https` and `X-Forwarded-Host`, so the upstream sees who called and how.
pub(super) fn add_forwarding(headers: &mut HeaderMap, forwarded: &ForwardedFor<'_>) {
    let client = forwarded.client;
    // A client may send several X-Forwarded-For fields; they form one list (RFC 9110 5.3).
    let xff_name = HeaderName::from_static("x-forwarded-for");
    let xff = match combined_value(headers, &xff_name) {
        Some(existing) => {
            let ip = client.ip.to_str().unwrap_or_default();
            HeaderValue::from_str(&format!("{existing}, {ip}")).ok()
        }
        None => Some(client.ip.clone()),
    };
    headers.remove(&xff_name);
    if let Some(value) = xff {
        headers.insert(xff_name, value);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
    headers.remove("x-forwarded-host");
    if let Some(value) = forwarded.host.and_then(|h| HeaderValue::from_str(h).ok()) {
        headers.insert("x-forwarded-host", value);
    }

    let mut element = String::with_capacity(64);
    element.push_str("for=");
    element.push_str(&client.node);
    if let Some(host) = forwarded.host.filter(|h| is_visible_ascii(h)) {
        element.push_str(";host=");
        push_forwarded_value(&mut element, host);
    }
    element.push_str(";proto=https");
    let combined = match combined_value(headers, &header::FORWARDED) {
        Some(existing) => format!("{existing}, {element}"),
        None => element,
    };
    headers.remove(header::FORWARDED);
    if let Ok(value) = HeaderValue::from_str(&combined) {
        headers.insert(header::FORWARDED, value);
    }
}

/// All fields of one header joined with `, `, when any is valid text.
fn combined_value(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let parts: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// Appends an RFC 7239 value: a token when it is one, otherwise a quoted string.
fn push_forwarded_value(out: &mut String, value: &str) {
    let is_token = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if is_token {
        out.push_str(value);
    } else {
        out.push('"');
        for c in value.chars() {
            if c == '\\' || c == '"' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    }
}

fn is_visible_ascii(value: &str) -> bool {
    value.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// Removes every identity header a client sent: `Client-Cert`, `Client-Cert-Chain` and any
/// `Moat-Client-*`. Without this a client could claim any identity to the upstream.
pub(super) fn strip_identity(headers: &mut HeaderMap) {
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let name = name.as_str();
            IDENTITY_EXACT.contains(&name) || name.starts_with(IDENTITY_PREFIX)
        })
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(name);
    }
}

/// Adds the verified client certificate as RFC 9440 `Client-Cert` / `Client-Cert-Chain` and the
/// readable `Moat-Client-*` headers, so the upstream learns who called without parsing DER.
pub(super) fn add_identity(headers: &mut HeaderMap, identity: &ClientIdentity) {
    insert_text(
        headers,
        "client-cert",
        &sf_byte_sequence(identity.certificate.as_ref()),
    );
    if !identity.chain.is_empty() {
        let chain = identity
            .chain
            .iter()
            .map(|c| sf_byte_sequence(c.as_ref()))
            .collect::<Vec<_>>()
            .join(", ");
        insert_text(headers, "client-cert-chain", &chain);
    }
    insert_text(headers, "moat-client-subject", &identity.subject);
    insert_text(headers, "moat-client-issuer", &identity.issuer);
    insert_text(headers, "moat-client-serial", &identity.serial_hex);
    insert_text(
        headers,
        "moat-client-fingerprint-sha256",
        &identity.fingerprint_sha256,
    );
    if let Some(not_after) = rfc3339(identity.not_after) {
        insert_text(headers, "moat-client-not-after", &not_after);
    }
    if !identity.sans.is_empty() {
        let sans = identity
            .sans
            .iter()
            .map(san_text)
            .collect::<Vec<_>>()
            .join(", ");
        // Each SAN is already header-safe; escaping the list again would mangle its `%2C`s.
        if let Ok(value) = HeaderValue::from_str(&sans) {
            headers.insert("moat-client-san", value);
        }
    }
}

/// An RFC 8941 byte sequence: base64 between colons.
fn sf_byte_sequence(der: &[u8]) -> String {
    format!(":{}:", BASE64.encode(der))
}

/// One SAN as `TYPE:value`, the way `openssl x509 -text` names the types, made header-safe
/// (see [`header_safe`]) with commas percent-encoded too so the list stays splittable on `, `.
fn san_text(san: &SubjectAltName) -> String {
    let (kind, value) = match san {
        SubjectAltName::Dns(name) => ("DNS", name.clone()),
        SubjectAltName::Ip(ip) => ("IP", ip.to_string()),
        SubjectAltName::Uri(uri) => ("URI", uri.clone()),
        SubjectAltName::Email(email) => ("email", email.clone()),
    };
    format!("{kind}:{}", header_safe(&value).replace(',', "%2C"))
}

/// Seconds since the epoch as RFC 3339 UTC, e.g. `2027-01-31T12:00:00Z`.
fn rfc3339(unix_seconds: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp(unix_seconds)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// Inserts `text` as a header value. Certificate fields may hold any Unicode; a header value may
/// only hold visible ASCII and spaces, so every other byte (and `%` itself, to stay unambiguous)
/// is percent-encoded from its UTF-8 form.
fn insert_text(headers: &mut HeaderMap, name: &'static str, text: &str) {
    let value = header_safe(text);
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(name, value);
    }
}

/// `text` with every byte outside printable ASCII, `%`, and a space at either end (a header value
/// cannot start or end with whitespace) percent-encoded.
pub(super) fn header_safe(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(bytes.len());
    for (index, &byte) in bytes.iter().enumerate() {
        let edge_space = byte == b' ' && (index == 0 || index + 1 == bytes.len());
        if (0x20..=0x7e).contains(&byte) && byte != b'%' && !edge_space {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn every_x_forwarded_for_field_is_kept_and_the_peer_appended() {
        let mut headers = map(&[
            ("x-forwarded-for", "198.51.100.1"),
            ("x-forwarded-for", "203.0.113.9"),
        ]);
        let peer: SocketAddr = "[::ffff:127.0.0.1]:5000".parse().unwrap();
        add_forwarding(
            &mut headers,
            &ForwardedFor {
                client: &ClientAddress::of(peer),
                host: None,
            },
        );
        let values: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(values, vec!["198.51.100.1, 203.0.113.9, 127.0.0.1"]);
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut headers = map(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "gzip, trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic Zm9v"),
            ("proxy-connection", "keep-alive"),
            ("x-kept", "yes"),
        ]);
        remove_hop_by_hop(&mut headers, false);
        let names: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, vec!["x-kept", "te"]);
        assert_eq!(headers["te"], "trailers");
    }

    #[test]
    fn upgrade_survives_when_kept_and_connection_is_reset_to_upgrade() {
        let mut headers = map(&[
            ("connection", "Upgrade, x-a"),
            ("upgrade", "websocket"),
            ("x-a", "1"),
        ]);
        assert!(wants_upgrade(&headers));
        remove_hop_by_hop(&mut headers, true);
        assert_eq!(headers["upgrade"], "websocket");
        assert_eq!(headers["connection"], "upgrade");
        assert!(!headers.contains_key("x-a"));
    }

    #[test]
    fn forwarding_headers_append_to_what_the_client_sent() {
        let mut headers = map(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("forwarded", "for=10.0.0.1"),
        ]);
        let peer: SocketAddr = "[2001:db8::1]:5000".parse().unwrap();
        add_forwarding(
            &mut headers,
            &ForwardedFor {
                client: &ClientAddress::of(peer),
                host: Some("app.example.com:8443"),
            },
        );
        assert_eq!(headers["x-forwarded-for"], "10.0.0.1, 2001:db8::1");
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(headers["x-forwarded-host"], "app.example.com:8443");
        assert_eq!(
            headers["forwarded"],
            "for=10.0.0.1, for=\"[2001:db8::1]\";host=\"app.example.com:8443\";proto=https"
        );
    }

    #[test]
    fn ipv4_clients_of_a_dual_stack_listener_are_forwarded_as_ipv4() {
        let mut headers = HeaderMap::new();
        let peer: SocketAddr = "[::ffff:192.0.2.7]:5000".parse().unwrap();
        add_forwarding(
            &mut headers,
            &ForwardedFor {
                client: &ClientAddress::of(peer),
                host: None,
            },
        );
        assert_eq!(headers["x-forwarded-for"], "192.0.2.7");
        assert_eq!(headers["forwarded"], "for=192.0.2.7;proto=https");
    }

    #[test]
    fn identity_headers_from_the_client_are_removed_case_insensitively() {
        let mut headers = map(&[
            ("Client-Cert", ":AAAA:"),
            ("client-cert-chain", ":AAAA:"),
            ("Moat-Client-Subject", "CN=admin"),
            ("moat-client-anything", "x"),
            ("client-certificate", "kept"),
        ]);
        strip_identity(&mut headers);
        let names: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, vec!["client-certificate"]);
    }

    #[test]
    fn non_ascii_and_control_characters_are_percent_encoded() {
        assert_eq!(header_safe("CN=Jürgen\n%"), "CN=J%C3%BCrgen%0A%25");
        assert_eq!(header_safe(" a "), "%20a%20");
        assert!(HeaderValue::from_str(&header_safe("\u{7f}x\ty")).is_ok());
    }

    #[test]
    fn not_after_is_rfc3339_utc() {
        assert_eq!(rfc3339(1_800_000_000).unwrap(), "2027-01-15T08:00:00Z");
    }

    #[test]
    fn san_list_header_escapes_commas_and_percent_exactly_once() {
        let identity = ClientIdentity {
            subject: "CN=a".into(),
            common_name: Some("a".into()),
            organizations: Vec::new(),
            organizational_units: Vec::new(),
            issuer: "CN=ca".into(),
            serial_hex: "01".into(),
            fingerprint_sha256: "00".into(),
            not_before: 0,
            not_after: 0,
            sans: vec![
                SubjectAltName::Uri("spiffe://x/a,b%".into()),
                SubjectAltName::Dns("é.example".into()),
            ],
            version: 3,
            certificate: rustls_pki_types::CertificateDer::from(vec![1, 2, 3]),
            chain: Vec::new(),
        };
        let mut headers = HeaderMap::new();
        add_identity(&mut headers, &identity);
        assert_eq!(
            headers["moat-client-san"],
            "URI:spiffe://x/a%2Cb%25, DNS:%C3%A9.example"
        );
    }

    #[test]
    fn sans_are_typed_and_commas_escaped() {
        assert_eq!(
            san_text(&SubjectAltName::Dns("a.example".into())),
            "DNS:a.example"
        );
        assert_eq!(
            san_text(&SubjectAltName::Uri("spiffe://x/a,b".into())),
            "URI:spiffe://x/a%2Cb"
        );
        assert_eq!(
            san_text(&SubjectAltName::Ip("127.0.0.1".parse().unwrap())),
            "IP:127.0.0.1"
        );
    }
}
