//! Header rewriting between client and upstream: hop-by-hop removal, forwarding headers, identity.

use std::net::{IpAddr, SocketAddr};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use moat_trust::{ClientIdentity, SubjectAltName};

/// Headers that describe one hop of a connection and never travel past it (RFC 9110 7.6.1), plus
/// the proxy credentials that are meant for the hop they were sent to, and `HTTP2-Settings`,
/// which only means something with an `Upgrade: h2c` moat never passes on.
const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "http2-settings",
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

/// Forwarding headers: moat is the first proxy its clients reach, so what a client claims in
/// them is false by definition and is removed before moat writes its own.
const FORWARDING_EXACT: [&str; 2] = ["forwarded", "x-real-ip"];

/// Prefix of the `X-Forwarded-*` family (`-For`, `-Proto`, `-Host`, `-Port`, `-Prefix`, ...).
const FORWARDING_PREFIX: &str = "x-forwarded-";

/// True when the message asks to switch to WebSocket, the one protocol moat relays after a
/// `101` (RFC 6455: a `GET` whose `Upgrade` is `websocket` and whose `Connection` says `upgrade`).
/// Any other `Upgrade` (`h2c`, `TLS/1.2`, a list) is removed instead: after a switch moat relays
/// raw bytes, and an `h2c` upgrade would carry requests that no rule judges and no audit records.
pub(super) fn wants_websocket(method: &http::Method, headers: &HeaderMap) -> bool {
    let mut upgrades = headers.get_all(header::UPGRADE).iter();
    let only_websocket = match (upgrades.next(), upgrades.next()) {
        (Some(value), None) => value
            .to_str()
            .is_ok_and(|value| value.trim().eq_ignore_ascii_case("websocket")),
        _ => false,
    };
    method == http::Method::GET
        && only_websocket
        && connection_tokens(headers).any(|t| t == "upgrade")
}

/// True when the message carries an `Upgrade` header at all (for the log line when one is dropped).
pub(super) fn names_upgrade(headers: &HeaderMap) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

/// True unless `Transfer-Encoding` names a coding other than one `chunked` (`gzip, chunked`,
/// `chunked, chunked`): hyper decodes only the chunking, and the upstream request is re-chunked
/// without the other codings, so passing such a body on would silently change it (RFC 9112 6.1
/// answers it with 501).
pub(super) fn transfer_coding_is_chunked_only(headers: &HeaderMap) -> bool {
    let mut chunked = 0;
    for value in headers.get_all(header::TRANSFER_ENCODING) {
        let Ok(value) = value.to_str() else {
            return false;
        };
        for coding in value.split(',') {
            if !coding.trim().eq_ignore_ascii_case("chunked") {
                return false;
            }
            chunked += 1;
        }
    }
    chunked <= 1
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

/// Sets `X-Forwarded-For`, `X-Forwarded-Proto: https`, `X-Forwarded-Host` and `Forwarded`
/// (RFC 7239) to what moat saw, so the upstream learns who called and how. Whatever the client
/// sent in them was removed by [`strip_client_claims`]: moat is the first hop, so they name only it.
pub(super) fn add_forwarding(headers: &mut HeaderMap, forwarded: &ForwardedFor<'_>) {
    let client = forwarded.client;
    headers.insert("x-forwarded-for", client.ip.clone());
    headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
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
    if let Ok(value) = HeaderValue::from_str(&element) {
        headers.insert(header::FORWARDED, value);
    }
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

/// Removes every identity and forwarding header a client sent, in every spelling: names are
/// compared without case and with `_` read as `-`, because CGI, WSGI, PHP and many frameworks
/// turn `Moat_Client_Subject` and `Moat-Client-Subject` into the same variable
/// (`HTTP_MOAT_CLIENT_SUBJECT`). Without this a client could claim an identity or an address.
pub(super) fn strip_client_claims(headers: &mut HeaderMap) {
    let claimed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_moat_controlled(name.as_str()))
        .cloned()
        .collect();
    for name in claimed {
        headers.remove(name);
    }
}

/// True when `name` (lowercase, as the http crate stores it) is, read with `_` as `-`, one of
/// the headers only moat may set.
fn is_moat_controlled(name: &str) -> bool {
    let folded = name.replace('_', "-");
    let folded = folded.as_str();
    IDENTITY_EXACT.contains(&folded)
        || FORWARDING_EXACT.contains(&folded)
        || folded.starts_with(IDENTITY_PREFIX)
        || folded.starts_with(FORWARDING_PREFIX)
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
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut headers = map(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "gzip, trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA"),
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
        assert!(wants_websocket(&http::Method::GET, &headers));
        remove_hop_by_hop(&mut headers, true);
        assert_eq!(headers["upgrade"], "websocket");
        assert_eq!(headers["connection"], "upgrade");
        assert!(!headers.contains_key("x-a"));
    }

    #[test]
    fn only_a_get_upgrading_to_websocket_alone_is_relayed() {
        let get = http::Method::GET;
        let upgrade = |value: &str| map(&[("connection", "Upgrade"), ("upgrade", value)]);
        assert!(wants_websocket(&get, &upgrade("websocket")));
        assert!(wants_websocket(&get, &upgrade("WebSocket")));
        for refused in [
            "h2c",
            "websocket, h2c",
            "h2c, websocket",
            "TLS/1.2",
            "websocket/13x",
        ] {
            assert!(!wants_websocket(&get, &upgrade(refused)), "{refused}");
        }
        assert!(!wants_websocket(&http::Method::POST, &upgrade("websocket")));
        assert!(!wants_websocket(&get, &map(&[("upgrade", "websocket")])));
        let mut twice = upgrade("websocket");
        twice.append(header::UPGRADE, HeaderValue::from_static("h2c"));
        assert!(!wants_websocket(&get, &twice));
    }

    #[test]
    fn forwarding_headers_name_only_what_moat_saw() {
        let mut headers = map(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-for", "10.0.0.2"),
            ("forwarded", "for=10.0.0.1;host=evil.example;proto=http"),
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-port", "80"),
            ("x-real-ip", "10.0.0.1"),
        ]);
        strip_client_claims(&mut headers);
        let peer: SocketAddr = "[2001:db8::1]:5000".parse().unwrap();
        add_forwarding(
            &mut headers,
            &ForwardedFor {
                client: &ClientAddress::of(peer),
                host: Some("app.example.com:8443"),
            },
        );
        let all = |name: &str| {
            headers
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(all("x-forwarded-for"), vec!["2001:db8::1"]);
        assert_eq!(all("x-forwarded-proto"), vec!["https"]);
        assert_eq!(all("x-forwarded-host"), vec!["app.example.com:8443"]);
        assert_eq!(
            all("forwarded"),
            vec!["for=\"[2001:db8::1]\";host=\"app.example.com:8443\";proto=https"]
        );
        assert!(all("x-forwarded-port").is_empty());
        assert!(all("x-real-ip").is_empty());
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
    fn identity_and_forwarding_headers_are_removed_in_every_spelling() {
        let claimed = [
            "Client-Cert",
            "client-cert-chain",
            "Client_Cert",
            "CLIENT_CERT_CHAIN",
            "Moat-Client-Subject",
            "Moat_Client_Subject",
            "moat_client-fingerprint_sha256",
            "moat-client-anything",
            "X_Forwarded_For",
            "x-forwarded_host",
            "X-Forwarded-Proto",
            "x_real_ip",
            "Forwarded",
        ];
        let mut pairs: Vec<(&str, &str)> = claimed.iter().map(|name| (*name, "spoofed")).collect();
        pairs.extend([
            ("client-certificate", "kept"),
            ("moat_clients", "kept"),
            ("x_custom_header", "kept"),
        ]);
        let mut headers = map(&pairs);
        strip_client_claims(&mut headers);
        let mut names: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            vec!["client-certificate", "moat_clients", "x_custom_header"]
        );
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
