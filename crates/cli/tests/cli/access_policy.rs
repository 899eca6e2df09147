//! Access policies end to end: `moat http --policy` driven by curl, `moat tls --policy` by a
//! rustls client, `moat verify` agreeing with the gateway on every case, and `moat config check`
//! naming the rule in errors and warnings.

use crate::gateway_support;

use std::path::Path;

use gateway_support::{
    ClientOptions, Moat, TestCa, Usage, client_config, connect_from, curl, moat_output,
    rustls_exchange_over, rustls_request, start_echo_upstream, start_http_upstream, write_pair,
    write_server_pki,
};
use rustls::AlertDescription;

const POLICY: &str = r#"
[[rules]]
name = "health"
paths = ["/healthz"]
action = "bypass"

[[rules]]
name = "admins"
paths = ["/admin/*"]
action = "allow"
include = [{ common_name = "ops-*" }]

[[rules]]
name = "service-a-api"
paths = ["/api/*"]
action = "allow"
expressions = ["conn.tls.client.subject.common_name == 'service-a'"]

[[rules]]
name = "everyone"
action = "allow"
include = [{ valid_certificate = true }]
"#;

/// `moat verify` with the CA, CRL and policy of [`setup`].
const VERIFY_SETUP: [&str; 7] = [
    "verify",
    "--mutual-tls-cas",
    "cas.pem",
    "--crl",
    "cas.crl",
    "--policy",
    "policy.toml",
];

/// A server certificate for localhost (`server.crt`, trusted via `server-ca.pem`), a client CA
/// (`cas.pem`) with clients ops-alice, dev-bob, service-a and revoked-rita (revoked by
/// `cas.crl`), and `policy.toml`.
fn setup(dir: &Path) {
    write_server_pki(dir, "Policy Test Server CA", "server-ca.pem", 1);
    let clients = TestCa::new("Policy Test Clients CA");
    std::fs::write(dir.join("cas.pem"), &clients.pem).unwrap();
    for (serial, name) in [
        (10, "ops-alice"),
        (11, "dev-bob"),
        (12, "service-a"),
        (13, "revoked-rita"),
    ] {
        write_pair(dir, name, &clients.leaf(name, Usage::Client, serial));
    }
    std::fs::write(dir.join("cas.crl"), clients.crl(&[13]).0).unwrap();
    std::fs::write(dir.join("policy.toml"), POLICY).unwrap();
}

/// curl over HTTPS to `path` as `client` (None: no certificate); returns (status, body, stderr).
fn get(
    dir: &Path,
    port: u16,
    client: Option<&str>,
    path: &str,
    json: bool,
) -> (String, String, String) {
    let url = format!("https://localhost:{port}{path}");
    let resolve = format!("localhost:{port}:127.0.0.1");
    let (cert, key) = client.map_or((String::new(), String::new()), |name| {
        (format!("{name}.crt"), format!("{name}.key"))
    });
    let mut args = vec![
        "--cacert",
        "server-ca.pem",
        "--resolve",
        &resolve,
        "-w",
        "\n%{http_code}",
    ];
    if client.is_some() {
        args.extend(["--cert", &cert, "--key", &key]);
    }
    if json {
        args.extend(["-H", "Accept: application/json"]);
    }
    args.push(&url);
    let (_, stdout, stderr) = curl(dir, &args);
    let (body, status) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    (status.to_owned(), body.to_owned(), stderr)
}

#[test]
fn http_rules_decide_per_request_and_verify_agrees() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    setup(dir);
    let upstream = start_http_upstream().to_string();
    let moat = Moat::serve_mtls(
        dir,
        "http",
        &upstream,
        &["--crl", "cas.crl", "--policy", "policy.toml"],
    );
    let port = moat.port();

    // (client, path, status, what the body or curl's error says)
    let cases: &[(Option<&str>, &str, &str, &str)] = &[
        (None, "/healthz", "200", "hello from upstream /healthz"),
        (
            None,
            "/",
            "403",
            "Access rule &quot;everyone&quot; requires one",
        ),
        (
            None,
            "/admin/users",
            "403",
            "Access rule &quot;admins&quot; requires one",
        ),
        (
            Some("ops-alice"),
            "/admin/users",
            "200",
            "hello from upstream /admin/users",
        ),
        (
            Some("dev-bob"),
            "/admin/users",
            "403",
            "Access denied by rule &quot;admins&quot;",
        ),
        (
            Some("dev-bob"),
            "/admin",
            "403",
            "Access denied by rule &quot;admins&quot;",
        ),
        (Some("dev-bob"), "/", "200", "hello from upstream /"),
        (
            Some("dev-bob"),
            "/healthz",
            "200",
            "hello from upstream /healthz",
        ),
        (
            Some("service-a"),
            "/api/orders",
            "200",
            "hello from upstream /api/orders",
        ),
        (
            Some("dev-bob"),
            "/api/orders",
            "403",
            "Access denied by rule &quot;service-a-api&quot;",
        ),
        (Some("revoked-rita"), "/", "000", "revoked"),
    ];
    for (client, path, status, needle) in cases {
        let (got, body, stderr) = get(dir, port, *client, path, false);
        assert_eq!(
            &got, status,
            "{client:?} {path}: body {body:?} stderr {stderr:?}"
        );
        assert!(
            body.contains(needle) || stderr.contains(needle),
            "{client:?} {path}: {needle:?} not in body {body:?} / stderr {stderr:?}"
        );

        // moat verify reaches the same verdict from the same files.
        let mut args = [&VERIFY_SETUP[..], &["--path", path]].concat();
        let cert = client.map(|name| format!("{name}.crt"));
        if let Some(cert) = &cert {
            args.extend(["--cert", cert]);
        }
        let verdict = moat_output(dir, &args);
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&verdict.stdout),
            String::from_utf8_lossy(&verdict.stderr)
        );
        assert_eq!(
            verdict.status.success(),
            *status == "200",
            "moat verify disagrees with the gateway on {client:?} {path}:\n{printed}"
        );
    }

    // The JSON form names the rule and the cause.
    let (status, body, _) = get(dir, port, Some("dev-bob"), "/admin/users", true);
    assert_eq!(status, "403");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["rule"], "admins");
    assert_eq!(json["code"], "policy_denied");
    let (_, body, _) = get(dir, port, None, "/", true);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (json["rule"].as_str(), json["code"].as_str()),
        (Some("everyone"), Some("client_certificate_required"))
    );

    // The operator's log says which selector failed; the page does not.
    moat.wait_for_log("no include selector matched (common_name = \"ops-*\")");
}

#[test]
fn verify_prints_each_step_and_the_deciding_rule() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    setup(dir);
    let base = VERIFY_SETUP;

    let mut args = base.to_vec();
    args.extend(["--cert", "dev-bob.crt", "--path", "/admin/x"]);
    let output = moat_output(dir, &args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stdout.contains("certificate: CN=dev-bob"), "{stdout}");
    assert!(
        stdout.contains(
            "chain       ok: chains to CN=Policy Test Clients CA (cas.pem, certificate #1)"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("revocation  ok: not listed in the 1 loaded CRL(s)"),
        "{stdout}"
    );
    assert!(stdout.contains("rule \"admins\" refuses this certificate: no include selector matched (common_name = \"ops-*\")"), "{stdout}");
    assert!(
        stderr.contains("REFUSED with 403: not_allowed by rule \"admins\""),
        "{stderr}"
    );

    let mut args = base.to_vec();
    args.extend(["--cert", "revoked-rita.crt"]);
    let output = moat_output(dir, &args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("revocation  FAILED: revoked"), "{stdout}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("REFUSED at the handshake: revoked"));

    let mut args = base.to_vec();
    args.extend(["--cert", "ops-alice.crt", "--path", "/admin"]);
    let output = moat_output(dir, &args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("rule \"admins\" allows: include common_name = \"ops-*\" matched"),
        "{stdout}"
    );
    assert!(stdout.ends_with("verdict: PASS\n"), "{stdout}");
}

/// `setup`, then `moat tls` (echoing upstream) with `tls-policy.toml` holding one allow rule
/// `name` whose tests are `tests` (TOML lines).
fn serve_tls_rule(name: &str, tests: &str) -> (tempfile::TempDir, Moat) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    setup(dir);
    std::fs::write(
        dir.join("tls-policy.toml"),
        format!("[[rules]]\nname = \"{name}\"\naction = \"allow\"\n{tests}\n"),
    )
    .unwrap();
    let echo = start_echo_upstream().to_string();
    let moat = Moat::serve_mtls(dir, "tls", &echo, &["--policy", "tls-policy.toml"]);
    (scratch, moat)
}

#[test]
fn tls_rules_refuse_the_handshake_with_access_denied() {
    let (scratch, moat) = serve_tls_rule(
        "service-a-only",
        "expressions = [\"conn.tls.client.subject.common_name == 'service-a'\"]",
    );
    let dir = scratch.path();
    let send = |client: &str, tls12_only: bool| {
        let cert = dir.join(format!("{client}.crt"));
        let key = dir.join(format!("{client}.key"));
        rustls_request(
            moat.port(),
            &ClientOptions {
                server_ca: &dir.join("server-ca.pem"),
                identity: Some((&cert, &key)),
                tls12_only,
                send: b"ping\n",
                half_close: true,
            },
        )
    };
    for tls12_only in [false, true] {
        assert_eq!(send("service-a", tls12_only).unwrap(), "ping\n");
        assert_eq!(
            send("dev-bob", tls12_only),
            Err(rustls::Error::AlertReceived(AlertDescription::AccessDenied))
        );
    }
    moat.wait_for_log("client certificate refused by the access policy");
    moat.wait_for_log("rule=\"service-a-only\"");
}

/// Sends "ping" to a `moat tls` endpoint as service-a from each of `sources` in turn, all with
/// one client configuration (so each connection offers the session of the one before);
/// returns what each connection saw and how its handshake went.
fn ping_from(
    dir: &Path,
    port: u16,
    tls12_only: bool,
    sources: &[[u8; 4]],
) -> Vec<(rustls::Error, Option<rustls::HandshakeKind>)> {
    let (cert, key) = (dir.join("service-a.crt"), dir.join("service-a.key"));
    let options = ClientOptions {
        server_ca: &dir.join("server-ca.pem"),
        identity: Some((&cert, &key)),
        tls12_only,
        send: b"ping\n",
        half_close: true,
    };
    let config = client_config(&options);
    sources
        .iter()
        .map(|source| {
            let socket = connect_from(std::net::IpAddr::from(*source), port);
            let exchange =
                rustls_exchange_over(socket, config.clone(), Some("localhost"), &options);
            let outcome = match exchange.outcome {
                Ok(echoed) => rustls::Error::General(echoed),
                Err(error) => error,
            };
            (outcome, exchange.handshake)
        })
        .collect()
}

#[test]
fn a_tls_session_cannot_resume_past_a_rule_on_the_client_address() {
    let (scratch, moat) = serve_tls_rule("local-only", "require = [{ source_ip = \"127.0.0.1\" }]");
    let dir = scratch.path();
    moat.wait_for_log("session resumption is off: the access rules read the client's address");
    let (allowed, denied) = ([127, 0, 0, 1], [127, 0, 0, 2]);
    let echoed = rustls::Error::General("ping\n".to_owned());
    let refused = rustls::Error::AlertReceived(AlertDescription::AccessDenied);
    let full = Some(rustls::HandshakeKind::Full);
    for tls12_only in [false, true] {
        // Before the fix the second connection resumed the first one's session, which rustls
        // does without calling the verifier that applies the rules, and was let in.
        let seen = ping_from(dir, moat.port(), tls12_only, &[allowed, denied, allowed]);
        let outcomes: Vec<_> = seen.iter().map(|(outcome, _)| outcome.clone()).collect();
        assert_eq!(
            outcomes,
            [echoed.clone(), refused.clone(), echoed.clone()],
            "TLS 1.2 only: {tls12_only}"
        );
        // The refused client's TLS 1.3 handshake ends on its side before the alert arrives.
        assert_eq!((seen[0].1, seen[2].1), (full, full), "{tls12_only}");
        assert_ne!(seen[1].1, Some(rustls::HandshakeKind::Resumed));
    }
    let log = moat.wait_for_log("client certificate refused by the access policy");
    let refusal = log
        .lines()
        .find(|line| line.contains("refused by the access policy"))
        .unwrap();
    assert!(refusal.contains("peer=127.0.0.2:"), "{refusal}");
    assert!(refusal.contains("rule=\"local-only\""), "{refusal}");
    // So does the audit event (on stdout) of each refused handshake, and of no other.
    let events: Vec<serde_json::Value> =
        std::iter::from_fn(|| moat.next_stdout_line(std::time::Duration::from_secs(2)))
            .map(|line| serde_json::from_str(&line).unwrap())
            .filter(|event: &serde_json::Value| event["event"] == "tls_handshake")
            .take(6)
            .collect();
    for event in &events {
        let from_denied = event["peer"].as_str().unwrap().starts_with("127.0.0.2:");
        let reason = if from_denied { "policy_denied" } else { "" };
        assert_eq!(event["reason"].as_str().unwrap_or(""), reason, "{event}");
    }
    assert_eq!(events.len(), 6, "{events:?}");
}

#[test]
fn a_tls_session_resumes_when_the_rules_read_only_the_certificate() {
    let (scratch, moat) = serve_tls_rule(
        "service-a-only",
        "include = [{ common_name = \"service-a\" }]",
    );
    let dir = scratch.path();
    let echoed = rustls::Error::General("ping\n".to_owned());
    let local = [127, 0, 0, 1];
    for tls12_only in [false, true] {
        assert_eq!(
            ping_from(dir, moat.port(), tls12_only, &[local, local]),
            [
                (echoed.clone(), Some(rustls::HandshakeKind::Full)),
                (echoed.clone(), Some(rustls::HandshakeKind::Resumed))
            ],
            "TLS 1.2 only: {tls12_only}"
        );
    }
    assert!(!moat.log().contains("session resumption is off"));
}

#[test]
fn config_check_names_the_rule_in_errors_and_warnings() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    setup(dir);
    let endpoint = "[[endpoints]]\nname = \"app\"\nkind = \"http\"\nupstream = 8080\nmutual_tls_cas = [\"cas.pem\"]\n";
    std::fs::write(
        dir.join("warn.toml"),
        format!(
            "{endpoint}\n[[endpoints.rules]]\nname = \"everyone\"\naction = \"allow\"\n\
             include = [{{ valid_certificate = true }}]\n\n[[endpoints.rules]]\nname = \"admins\"\n\
             paths = [\"/admin/*\"]\naction = \"allow\"\ninclude = [{{ common_name = \"ops-*\" }}]\n\n\
             [[endpoints.rules]]\nname = \"typo\"\npaths = [\"health\"]\naction = \"bypass\"\n"
        ),
    )
    .unwrap();
    let output = moat_output(dir, &["config", "check", "warn.toml"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("warning: warn.toml: endpoints[0] (app): rule \"admins\": unreachable: rule \"everyone\" comes first"), "{stdout}");
    assert!(
        stdout.contains(
            "rule \"typo\": path \"health\" can never match: request paths start with '/'"
        ),
        "{stdout}"
    );
    assert!(stdout.ends_with("ok: 1 endpoint\n"), "{stdout}");

    std::fs::write(
        dir.join("bad.toml"),
        format!(
            "{endpoint}\n[[endpoints.rules]]\nname = \"admins\"\naction = \"allow\"\n\
             include = [{{ cn = \"ops-*\" }}]\nexpressions = [\"conn.tls.client.subject.cn == 'x'\", \"req.path ==\"]\n"
        ),
    )
    .unwrap();
    let output = moat_output(dir, &["config", "check", "bad.toml"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("bad.toml: endpoints[0].rules[0] (\"admins\").include[0]: unknown selector \"cn\"; use one of common_name,"), "{stderr}");
    assert!(stderr.contains("endpoints[0].rules[0] (\"admins\").expressions[0]: \"conn.tls.client.subject.cn == 'x'\" unknown variable conn.tls.client.subject.cn"), "{stderr}");
    assert!(
        stderr.contains(
            "endpoints[0].rules[0] (\"admins\").expressions[1]: \"req.path ==\" does not compile"
        ),
        "{stderr}"
    );

    // --policy errors name the policy file.
    std::fs::write(
        dir.join("bad-policy.toml"),
        "[[rules]]\nname = \"x\"\naction = \"permit\"\n",
    )
    .unwrap();
    let output = moat_output(
        dir,
        &[
            "http",
            "8080",
            "--mutual-tls-cas",
            "cas.pem",
            "--policy",
            "bad-policy.toml",
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "--policy bad-policy.toml: rules[0] (\"x\").action: \"permit\" is not an action"
        ),
        "{stderr}"
    );
}

#[test]
fn verify_reads_an_endpoint_of_a_config_file() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    setup(dir);
    std::fs::write(
        dir.join("moat.toml"),
        "[[endpoints]]\nname = \"db\"\nkind = \"tls\"\nupstream = 5432\ndomain = \"db.example.com\"\n\
         mutual_tls_cas = [\"cas.pem\"]\ncrls = [\"cas.crl\"]\n\n\
         [[endpoints.rules]]\nname = \"db-clients\"\nhosts = [\"db.example.com\"]\naction = \"allow\"\n\
         include = [{ common_name = \"service-*\" }, { issuer = \"other-ca.pem\" }]\n",
    )
    .unwrap();
    let verify = |cert: &str, host: &str| {
        let output = moat_output(
            dir,
            &[
                "verify",
                "--config",
                "moat.toml",
                "--cert",
                cert,
                "--host",
                host,
            ],
        );
        (
            output.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        )
    };
    let (passed, printed) = verify("service-a.crt", "db.example.com");
    assert!(passed, "{printed}");
    assert!(
        printed.contains("rule \"db-clients\" allows: include common_name = \"service-*\" matched"),
        "{printed}"
    );

    let (passed, printed) = verify("dev-bob.crt", "db.example.com");
    assert!(!passed);
    assert!(
        printed.contains("REFUSED at the handshake with the TLS alert access_denied: not_allowed by rule \"db-clients\""),
        "{printed}"
    );

    let (passed, printed) = verify("service-a.crt", "other.example.com");
    assert!(!passed);
    assert!(
        printed.contains("no rule covers host other.example.com"),
        "{printed}"
    );
}
