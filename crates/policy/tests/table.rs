//! The table of policy cases: host × path × certificate → decision and deciding rule.

use std::net::IpAddr;
use std::path::PathBuf;

use moat_policy::{
    Action, Client, Expression, HostPattern, HttpRequest, Outcome, PathPattern, Refusal, Request,
    Rule, RuleParts, Selector, SelectorValue, certificate_required_at_handshake, evaluate, lint,
    rules_use_connection_facts,
};
use moat_trust::{CaBundle, ClientIdentity};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType, SerialNumber,
};

/// A CA written to `<dir>/<file>` and the identities of the leaves it signs.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    bundle: CaBundle,
}

impl Ca {
    fn new(dir: &std::path::Path, file: &str, common_name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let path: PathBuf = dir.join(file);
        std::fs::write(&path, cert.pem()).unwrap();
        Ca {
            issuer: Issuer::new(params, key),
            bundle: CaBundle::from_files(&[path]).unwrap(),
        }
    }

    fn leaf(&self, cn: &str, org: &str, sans: Vec<SanType>, serial: u64) -> ClientIdentity {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .distinguished_name
            .push(DnType::OrganizationName, org);
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, "Platform");
        params.subject_alt_names = sans;
        params.serial_number = Some(SerialNumber::from(serial.to_be_bytes().to_vec()));
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        ClientIdentity::from_chain(&[cert.der().clone()]).unwrap()
    }
}

/// host, path, source address, client (certificate and its CA bundle), expected outcome and rule.
type Case<'a> = (
    &'a str,
    &'a str,
    &'a str,
    Option<(&'a ClientIdentity, &'a CaBundle)>,
    Outcome,
    Option<&'a str>,
);

fn selector(name: &str, value: &str) -> Selector {
    let value = match value {
        "true" => SelectorValue::Bool(true),
        text => SelectorValue::Text(text.to_owned()),
    };
    Selector::parse(name, value).unwrap()
}

fn rule(name: &str, hosts: &[&str], paths: &[&str], action: Action) -> RuleParts {
    RuleParts {
        name: name.to_owned(),
        hosts: hosts.iter().map(|h| HostPattern::new(h)).collect(),
        paths: paths.iter().map(|p| PathPattern::new(p)).collect(),
        action,
        include: Vec::new(),
        require: Vec::new(),
        exclude: Vec::new(),
        expressions: Vec::new(),
    }
}

fn request<'a>(host: &'a str, path: &'a str, source_ip: &str) -> Request<'a> {
    Request {
        source_ip: source_ip.parse::<IpAddr>().unwrap(),
        source_port: 50_000,
        server: None,
        sni: Some(host),
        tls_version: Some("TLSv1.3"),
        http: Some(HttpRequest {
            method: "GET",
            host: Some(host),
            path,
            query: None,
            headers: None,
        }),
    }
}

#[test]
fn table_of_policy_cases() {
    let dir = tempfile::tempdir().unwrap();
    let clients = Ca::new(dir.path(), "clients-ca.pem", "Clients CA");
    let partners = Ca::new(dir.path(), "partners-ca.pem", "Partners CA");

    let ops = clients.leaf(
        "ops-alice",
        "Example",
        vec![SanType::Rfc822Name("alice@example.com".try_into().unwrap())],
        0x0a,
    );
    let intern = clients.leaf("ops-intern", "Example", vec![], 0x0b);
    let dev = clients.leaf("dev-bob", "Example", vec![], 0x0c);
    let service_a = clients.leaf(
        "service-a",
        "Example",
        vec![
            SanType::DnsName("a.svc.internal".try_into().unwrap()),
            SanType::URI("spiffe://example.org/ns/prod/sa/a".try_into().unwrap()),
        ],
        0x0d,
    );
    let partner = partners.leaf("partner-carol", "Partner Inc", vec![], 0x0e);

    let mut health = rule("health", &[], &["/healthz"], Action::Bypass);
    health.hosts = Vec::new();
    let blocked = rule(
        "blocked",
        &["app.example.com"],
        &["/internal/*"],
        Action::Deny,
    );
    let mut admins = rule("admins", &["app.example.com"], &["/admin/*"], Action::Allow);
    admins.include = vec![selector("common_name", "ops-*")];
    admins.require = vec![selector("organization", "Example")];
    admins.exclude = vec![selector("serial", "00:0B")];
    let mut spiffe = rule("spiffe", &["*.api.example.com"], &[], Action::Allow);
    spiffe.include = vec![
        selector("san_uri", "spiffe://example.org/ns/prod/*"),
        selector("san_dns", "*.SVC.internal"),
    ];
    let mut ngrok = rule("ngrok-port", &["ngrok.example.com"], &[], Action::Allow);
    ngrok.expressions =
        vec![Expression::compile("conn.tls.client.subject.common_name == 'service-a'").unwrap()];
    let mut office = rule("office", &["intranet.example.com"], &[], Action::Allow);
    office.include = vec![selector("source_ip", "10.0.0.0/8")];
    office.require = vec![selector("issuer", "clients-ca.pem")];
    let mut partner_rule = rule("partners", &["partners.example.com"], &[], Action::Allow);
    partner_rule.include = vec![selector("issuer", "CN=Partners CA")];
    partner_rule.expressions = vec![
        Expression::compile("'Partner Inc' in conn.tls.client.subject.organization").unwrap(),
        Expression::compile("req.url.path.startsWith('/shared')").unwrap(),
    ];
    let mut fingerprint = rule("pinned", &["pinned.example.com"], &[], Action::Allow);
    fingerprint.include = vec![selector("fingerprint_sha256", &dev.fingerprint_sha256)];
    let mut email = rule("mail", &["mail.example.com"], &[], Action::Allow);
    email.include = vec![selector("san_email", "*@EXAMPLE.com")];
    let mut everyone = rule("everyone", &["app.example.com"], &[], Action::Allow);
    everyone.include = vec![selector("valid_certificate", "true")];

    let rules: Vec<Rule> = [
        health,
        blocked,
        admins,
        spiffe,
        ngrok,
        office,
        partner_rule,
        fingerprint,
        email,
        everyone,
    ]
    .into_iter()
    .map(|parts| Rule::new(parts).unwrap())
    .collect();
    assert!(!certificate_required_at_handshake(&rules));

    use Outcome::{Allow, Bypass, Refuse};
    let cases: Vec<Case<'_>> = vec![
        // Bypass paths need no certificate, on any host.
        (
            "app.example.com",
            "/healthz",
            "127.0.0.1",
            None,
            Bypass,
            Some("health"),
        ),
        (
            "other.example.com",
            "/healthz",
            "127.0.0.1",
            Some((&dev, &clients.bundle)),
            Bypass,
            Some("health"),
        ),
        // First match: deny comes before "everyone".
        (
            "app.example.com",
            "/internal/metrics",
            "127.0.0.1",
            Some((&ops, &clients.bundle)),
            Refuse(Refusal::DeniedByRule),
            Some("blocked"),
        ),
        // include ∧ require ∧ ¬exclude.
        (
            "app.example.com",
            "/admin/users",
            "127.0.0.1",
            Some((&ops, &clients.bundle)),
            Allow,
            Some("admins"),
        ),
        (
            "app.example.com",
            "/admin",
            "127.0.0.1",
            Some((&ops, &clients.bundle)),
            Allow,
            Some("admins"),
        ),
        (
            "app.example.com",
            "/admin/users",
            "127.0.0.1",
            Some((&intern, &clients.bundle)),
            Refuse(Refusal::NotAllowed),
            Some("admins"),
        ),
        (
            "app.example.com",
            "/admin/users",
            "127.0.0.1",
            Some((&dev, &clients.bundle)),
            Refuse(Refusal::NotAllowed),
            Some("admins"),
        ),
        (
            "app.example.com",
            "/admin/users",
            "127.0.0.1",
            None,
            Refuse(Refusal::NoCertificate),
            Some("admins"),
        ),
        // Everything else on the host: any valid certificate.
        (
            "app.example.com",
            "/",
            "127.0.0.1",
            Some((&dev, &clients.bundle)),
            Allow,
            Some("everyone"),
        ),
        (
            "APP.example.com:8443",
            "/reports",
            "127.0.0.1",
            Some((&intern, &clients.bundle)),
            Allow,
            Some("everyone"),
        ),
        (
            "app.example.com",
            "/",
            "127.0.0.1",
            None,
            Refuse(Refusal::NoCertificate),
            Some("everyone"),
        ),
        // SAN selectors on a wildcard host.
        (
            "orders.api.example.com",
            "/v1",
            "127.0.0.1",
            Some((&service_a, &clients.bundle)),
            Allow,
            Some("spiffe"),
        ),
        (
            "orders.api.example.com",
            "/v1",
            "127.0.0.1",
            Some((&dev, &clients.bundle)),
            Refuse(Refusal::NotAllowed),
            Some("spiffe"),
        ),
        // ngrok's documented expression, verbatim.
        (
            "ngrok.example.com",
            "/",
            "127.0.0.1",
            Some((&service_a, &clients.bundle)),
            Allow,
            Some("ngrok-port"),
        ),
        (
            "ngrok.example.com",
            "/",
            "127.0.0.1",
            Some((&dev, &clients.bundle)),
            Refuse(Refusal::NotAllowed),
            Some("ngrok-port"),
        ),
        // source_ip, and issuer by CA file name.
        (
            "intranet.example.com",
            "/",
            "10.1.2.3",
            Some((&dev, &clients.bundle)),
            Allow,
            Some("office"),
        ),
        (
            "intranet.example.com",
            "/",
            "::ffff:10.1.2.3",
            Some((&dev, &clients.bundle)),
            Allow,
            Some("office"),
        ),
        (
            "intranet.example.com",
            "/",
            "192.0.2.7",
            Some((&dev, &clients.bundle)),
            Refuse(Refusal::NotAllowed),
            Some("office"),
        ),
        (
            "intranet.example.com",
            "/",
            "10.1.2.3",
            Some((&partner, &partners.bundle)),
            Refuse(Refusal::NotAllowed),
            Some("office"),
        ),
        // issuer by subject plus CEL over the subject and the request.
        (
            "partners.example.com",
            "/shared/doc",
            "127.0.0.1",
            Some((&partner, &partners.bundle)),
            Allow,
            Some("partners"),
        ),
        (
            "partners.example.com",
            "/private",
            "127.0.0.1",
            Some((&partner, &partners.bundle)),
            Refuse(Refusal::NotAllowed),
            Some("partners"),
        ),
        (
            "partners.example.com",
            "/shared/doc",
            "127.0.0.1",
            Some((&dev, &clients.bundle)),
            Refuse(Refusal::NotAllowed),
            Some("partners"),
        ),
        // Pinned fingerprint, email SAN without case.
        (
            "pinned.example.com",
            "/",
            "127.0.0.1",
            Some((&dev, &clients.bundle)),
            Allow,
            Some("pinned"),
        ),
        (
            "pinned.example.com",
            "/",
            "127.0.0.1",
            Some((&ops, &clients.bundle)),
            Refuse(Refusal::NotAllowed),
            Some("pinned"),
        ),
        (
            "mail.example.com",
            "/",
            "127.0.0.1",
            Some((&ops, &clients.bundle)),
            Allow,
            Some("mail"),
        ),
        // No rule covers the host: refused.
        (
            "unknown.example.org",
            "/",
            "127.0.0.1",
            Some((&ops, &clients.bundle)),
            Refuse(Refusal::NoMatchingRule),
            None,
        ),
    ];
    for (host, path, source_ip, client, outcome, rule) in cases {
        let request = request(host, path, source_ip);
        let client = client.map(|(identity, bundle)| Client {
            identity,
            ca: bundle.issuer_of(identity),
        });
        let decision = evaluate(&rules, &request, client.as_ref());
        let who = client.map_or("(no certificate)".to_owned(), |c| {
            c.identity.subject.clone()
        });
        assert_eq!(
            (decision.outcome, decision.rule.as_deref()),
            (outcome, rule),
            "{host}{path} from {source_ip} as {who}: {}",
            decision.explanation
        );
    }
}

#[test]
fn refusals_say_which_test_failed() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca.pem", "CA");
    let dev = ca.leaf("dev-bob", "Example", vec![], 7);
    let mut admins = rule("admins", &[], &["/admin/*"], Action::Allow);
    admins.include = vec![selector("common_name", "ops-*")];
    let rules = vec![Rule::new(admins).unwrap()];
    let client = Client {
        identity: &dev,
        ca: None,
    };
    let decision = evaluate(
        &rules,
        &request("a", "/admin/x", "127.0.0.1"),
        Some(&client),
    );
    assert_eq!(
        decision.explanation,
        "rule \"admins\" refuses this certificate: no include selector matched (common_name = \"ops-*\")"
    );
}

#[test]
fn rules_that_cannot_decide_are_refused_or_warned() {
    assert!(Rule::new(rule("empty", &[], &[], Action::Allow)).is_err());
    let mut deny_with_selector = rule("d", &[], &[], Action::Deny);
    deny_with_selector.include = vec![selector("common_name", "x")];
    assert!(Rule::new(deny_with_selector).is_err());

    let mut everyone = rule("everyone", &[], &[], Action::Allow);
    everyone.include = vec![selector("valid_certificate", "true")];
    let mut admins = rule("admins", &["app.example.com"], &["/admin/*"], Action::Allow);
    admins.include = vec![selector("common_name", "ops-*")];
    let odd = rule("odd", &["app.example.com:443"], &["admin"], Action::Bypass);
    let rules: Vec<Rule> = [everyone, admins, odd]
        .into_iter()
        .map(|p| Rule::new(p).unwrap())
        .collect();
    let warnings: Vec<String> = lint(&rules).iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 4, "{warnings:#?}");
    assert!(warnings[0].starts_with("rule \"admins\": unreachable: rule \"everyone\" comes first"));
    assert!(warnings[1].contains("host \"app.example.com:443\" can never match"));
    assert!(warnings[2].contains("path \"admin\" can never match"));
    assert!(warnings[3].starts_with("rule \"odd\": unreachable"));
}

#[test]
fn expressions_see_request_headers_and_a_missing_one_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca.pem", "CA");
    let dev = ca.leaf("dev-bob", "Example", vec![], 7);
    let mut team = rule("blue-team", &[], &[], Action::Allow);
    team.expressions = vec![
        Expression::compile("'blue' in req.headers['x-team'] && req.method == 'GET'").unwrap(),
        Expression::compile("conn.tls.version == 'TLSv1.3' && conn.client_ip == '127.0.0.1'")
            .unwrap(),
    ];
    let rules = vec![Rule::new(team).unwrap()];
    let client = Client {
        identity: &dev,
        ca: None,
    };
    let mut headers = http::HeaderMap::new();
    headers.append("X-Team", "red".parse().unwrap());
    headers.append("X-Team", "blue".parse().unwrap());
    let mut with_header = request("a", "/", "127.0.0.1");
    if let Some(http) = with_header.http.as_mut() {
        http.headers = Some(&headers);
    }
    let decision = evaluate(&rules, &with_header, Some(&client));
    assert_eq!(decision.outcome, Outcome::Allow, "{}", decision.explanation);

    let decision = evaluate(&rules, &request("a", "/", "127.0.0.1"), Some(&client));
    assert_eq!(decision.outcome, Outcome::Refuse(Refusal::NotAllowed));
    assert!(
        decision.explanation.contains("could not be evaluated"),
        "{}",
        decision.explanation
    );
}

#[test]
fn handshake_demands_a_certificate_unless_a_rule_bypasses_or_covers_some_paths() {
    let mut by_host = rule("by-host", &["app.example.com"], &[], Action::Allow);
    by_host.include = vec![selector("valid_certificate", "true")];
    let by_host = Rule::new(by_host).unwrap();
    assert!(certificate_required_at_handshake(std::slice::from_ref(
        &by_host
    )));

    let mut by_path = rule("by-path", &[], &["/admin/*"], Action::Allow);
    by_path.include = vec![selector("common_name", "ops-*")];
    let by_path = Rule::new(by_path).unwrap();
    assert!(!certificate_required_at_handshake(&[
        by_host.clone(),
        by_path
    ]));

    let bypass = Rule::new(rule("public", &["www.example.com"], &[], Action::Bypass)).unwrap();
    assert!(!certificate_required_at_handshake(&[by_host, bypass]));
}

#[test]
fn only_certificate_and_host_rules_give_a_resumed_session_the_same_verdict() {
    let allow = |parts: RuleParts| Rule::new(parts).unwrap();
    let mut by_name = rule("by-name", &[], &[], Action::Allow);
    by_name.include = vec![selector("common_name", "alice")];
    // The SNI of a resumed session is the one it was made under.
    let mut by_host = rule("by-host", &["db.example.com"], &[], Action::Allow);
    by_host.include = vec![selector("valid_certificate", "true")];
    let same_verdict = [allow(by_name), allow(by_host)];
    assert!(!rules_use_connection_facts(&same_verdict));

    let mut by_address = rule("by-address", &[], &[], Action::Allow);
    by_address.require = vec![selector("source_ip", "10.0.0.0/8")];
    let mut by_port = rule("by-port", &[], &[], Action::Allow);
    by_port.expressions = vec![Expression::compile("conn.client_port == 5000").unwrap()];
    for connection_rule in [by_address, by_port] {
        let name = connection_rule.name.clone();
        let mut rules = same_verdict.to_vec();
        rules.push(allow(connection_rule));
        assert!(rules_use_connection_facts(&rules), "{name}");
    }
}
