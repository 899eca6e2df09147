//! The operating keys: shared addresses, `default`, `ca_hints`, `crl_expired`, PROXY protocol, upstream protocol.

use moat_config::{Config, ConfigError, CrlExpiredPolicy, ProxyProtocolVersion, UpstreamProtocol};

fn parse(text: &str) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    for name in ["cas.pem", "ca.crl"] {
        std::fs::write(dir.path().join(name), "placeholder").unwrap();
    }
    Config::from_toml_str(text, "moat.toml", dir.path())
}

fn problems(error: ConfigError) -> Vec<String> {
    error.to_string().lines().map(str::to_string).collect()
}

fn endpoint(name: &str, listen: &str, domain: &str, extra: &str) -> String {
    format!(
        "[[endpoints]]\nname = \"{name}\"\nkind = \"tls\"\nlisten = \"{listen}\"\ndomain = \"{domain}\"\n\
         upstream = 5432\n{extra}\n"
    )
}

#[test]
fn endpoints_with_distinct_domains_share_an_address_and_one_is_the_default() {
    let text = [
        endpoint("a", "127.0.0.1:8443", "a.example.com", "default = true"),
        endpoint("b", "127.0.0.1:8443", "b.example.com", ""),
        endpoint(
            "c",
            "127.0.0.1:9443",
            "a.example.com",
            "mutual_tls_cas = [\"cas.pem\"]\ncrls = [\"ca.crl\"]\nca_hints = false\n\
             crl_expired = \"refuse\"\nupstream_proxy_protocol = 2\nsession_resumption = false",
        ),
    ]
    .concat();
    let config = parse(&text).unwrap();
    let [a, b, c] = &config.endpoints[..] else {
        panic!("three endpoints")
    };
    assert!(a.default && !b.default);
    assert!(a.ca_hints, "CA names are sent by default");
    assert_eq!(a.crl_expired, CrlExpiredPolicy::Warn);
    assert_eq!(a.upstream_proxy_protocol, None);
    assert!(!c.ca_hints);
    assert!(a.session_resumption, "sessions resume by default");
    assert!(!c.session_resumption);
    assert_eq!(c.crl_expired, CrlExpiredPolicy::Refuse);
    assert_eq!(c.upstream_proxy_protocol, Some(ProxyProtocolVersion::V2));
}

#[test]
fn a_shared_address_needs_distinct_domains_and_at_most_one_default() {
    let text = [
        endpoint("a", "127.0.0.1:8443", "app.example.com", "default = true"),
        endpoint("b", "127.0.0.1:8443", "APP.example.com", "default = true"),
    ]
    .concat();
    assert_eq!(
        problems(parse(&text).unwrap_err()),
        vec![
            "moat.toml: endpoints[1].domain: \"APP.example.com\" is already served on 127.0.0.1:8443 by endpoints[0]; endpoints sharing a listen address are told apart by SNI, so give each its own domain (or its own port)",
            "moat.toml: endpoints[1].default: endpoints[0] is already the default on 127.0.0.1:8443; only one endpoint per address may take clients without SNI",
        ]
    );
}

#[test]
fn port_zero_gives_each_endpoint_its_own_socket() {
    let text = [
        endpoint("a", "127.0.0.1:0", "localhost", ""),
        endpoint("b", "127.0.0.1:0", "localhost", ""),
    ]
    .concat();
    assert_eq!(parse(&text).unwrap().endpoints.len(), 2);
}

#[test]
fn wrong_operating_values_are_named_with_the_fix() {
    let http = "[[endpoints]]\nname = \"web\"\nkind = \"http\"\nupstream = 8080\n\
                upstream_proxy_protocol = 1\ncrl_expired = \"refuse\"\nca_hints = false\n";
    assert_eq!(
        problems(parse(http).unwrap_err()),
        vec![
            "moat.toml: endpoints[0].crl_expired: applies to revocation lists, and none is given; add crls (--crl) or remove it",
            "moat.toml: endpoints[0].ca_hints: names the CAs of client certificates, and none is given; add mutual_tls_cas (--mutual-tls-cas) or remove it",
            "moat.toml: endpoints[0].upstream_proxy_protocol: applies to tls endpoints only: an http endpoint shares upstream connections between clients and tells the upstream who connected in the X-Forwarded-For, Forwarded and Client-Cert headers instead; remove it",
        ]
    );
    let tls = endpoint(
        "db",
        "127.0.0.1:5000",
        "localhost",
        "mutual_tls_cas = [\"cas.pem\"]\ncrls = [\"ca.crl\"]\nupstream_proxy_protocol = 3\ncrl_expired = \"ignore\"",
    );
    assert_eq!(
        problems(parse(&tls).unwrap_err()),
        vec![
            "moat.toml: endpoints[0].crl_expired: \"ignore\" is not a policy for expired CRLs; use \"warn\" or \"refuse\"",
            "moat.toml: endpoints[0].upstream_proxy_protocol: \"3\" is not a PROXY protocol version; use 1 or 2",
        ]
    );
}

#[test]
fn upstream_protocol_is_auto_unless_an_http_endpoint_names_another() {
    let http = |extra: &str| {
        format!("[[endpoints]]\nname = \"web\"\nkind = \"http\"\nupstream = 8080\n{extra}\n")
    };
    for (written, expected) in [
        ("", UpstreamProtocol::Auto),
        ("upstream_protocol = \"auto\"", UpstreamProtocol::Auto),
        ("upstream_protocol = \"http1\"", UpstreamProtocol::Http1),
        ("upstream_protocol = \"http2\"", UpstreamProtocol::Http2),
    ] {
        let config = parse(&http(written)).unwrap();
        assert_eq!(config.endpoints[0].upstream_protocol, expected, "{written}");
    }
    assert_eq!(
        problems(parse(&http("upstream_protocol = \"h2c\"")).unwrap_err()),
        vec![
            "moat.toml: endpoints[0].upstream_protocol: \"h2c\" is not an upstream protocol; use \"auto\", \"http1\" or \"http2\"",
        ]
    );
    let tls = endpoint(
        "db",
        "127.0.0.1:5000",
        "localhost",
        "upstream_protocol = \"http2\"",
    );
    assert_eq!(
        problems(parse(&tls).unwrap_err()),
        vec![
            "moat.toml: endpoints[0].upstream_protocol: applies to http endpoints only: a tls endpoint passes the client's bytes to the upstream as they come, whatever protocol they carry; remove it",
        ]
    );
}
