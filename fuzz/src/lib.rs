//! The fixed request, client certificate and CA that the policy fuzz targets judge rules against.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::LazyLock;

use moat_policy::{Client, HttpRequest, Outcome, Refusal, Request, Rule, evaluate};
use moat_trust::{CaBundle, ClientIdentity};
use rustls_pki_types::CertificateDer;

/// What every judged request carries; built once per process.
pub struct Fixture {
    /// The CA of `fixtures/ca.pem`, which signed the client certificate.
    pub cas: CaBundle,
    /// `fixtures/client.der`: CN=ops-alice, O=Example, OU=Ops, DNS/email/URI/IP SANs, serial 0a1b2c.
    pub identity: ClientIdentity,
    /// A few request headers for `req.headers` in expressions.
    pub headers: http::HeaderMap,
}

/// The one [`Fixture`].
pub static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let cas = CaBundle::from_bytes(Path::new("ca.pem"), include_bytes!("../fixtures/ca.pem"))
        .expect("fixtures/ca.pem is a CA");
    let der = CertificateDer::from(include_bytes!("../fixtures/client.der").to_vec());
    let identity = ClientIdentity::from_chain(&[der]).expect("fixtures/client.der parses");
    let mut headers = http::HeaderMap::new();
    headers.insert("user-agent", http::HeaderValue::from_static("curl/7.88.1"));
    headers.append("x-team", http::HeaderValue::from_static("ops"));
    headers.append("x-team", http::HeaderValue::from_static("db"));
    Fixture {
        cas,
        identity,
        headers,
    }
});

impl Fixture {
    /// `GET https://app.example.com/admin/users?page=2` from 203.0.113.7 over TLS 1.3, or with
    /// `http` false the same connection on a tls endpoint (no HTTP request, no TLS version yet).
    pub fn request(&self, http: bool) -> Request<'_> {
        Request {
            source_ip: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)),
            source_port: 50_000,
            server: Some(SocketAddr::from(([127, 0, 0, 1], 8443))),
            sni: Some("app.example.com"),
            tls_version: http.then_some("TLSv1.3"),
            http: http.then(|| HttpRequest {
                method: "GET",
                host: Some("app.example.com"),
                path: "/admin/users",
                query: Some("page=2"),
                headers: Some(&self.headers),
            }),
        }
    }

    /// The client certificate, verified by the fixture CA.
    pub fn client(&self) -> Client<'_> {
        Client {
            identity: &self.identity,
            ca: self.cas.iter().next(),
        }
    }
}

/// Judges the fixed request by `rules` as an http and as a tls endpoint, with and without the
/// client certificate, and checks what every decision must satisfy: it names one of `rules`
/// (or none covered the request), and "no certificate" is never the answer to a client that
/// presented one.
pub fn judge(rules: &[Rule]) {
    let fixture = &*FIXTURE;
    let client = fixture.client();
    for http in [true, false] {
        let request = fixture.request(http);
        for client in [Some(&client), None] {
            let decision = evaluate(rules, &request, client);
            match &decision.rule {
                Some(name) => assert!(rules.iter().any(|rule| rule.name() == name)),
                None => assert_eq!(decision.outcome, Outcome::Refuse(Refusal::NoMatchingRule)),
            }
            if client.is_some() {
                assert_ne!(decision.outcome, Outcome::Refuse(Refusal::NoCertificate));
            }
            drop(decision.to_string());
        }
    }
}
