//! `[[endpoints.rules]]`: read into moat-policy rules in order, and refused with the rule named.

use std::path::Path;

use moat_config::Config;
use moat_policy::Action;

fn load(dir: &Path, text: &str) -> Result<Config, String> {
    std::fs::write(dir.join("cas.pem"), "placeholder").unwrap();
    Config::from_toml_str(text, "moat.toml", dir).map_err(|error| error.to_string())
}

#[test]
fn rules_are_read_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let config = load(
        dir.path(),
        r#"
[[endpoints]]
name = "app"
kind = "http"
upstream = 8080
mutual_tls_cas = ["cas.pem"]

[[endpoints.rules]]
name = "health"
paths = ["/healthz"]
action = "bypass"

[[endpoints.rules]]
name = "admins"
hosts = ["app.example.com"]
paths = ["/admin/*"]
action = "allow"
include = [{ common_name = "ops-*" }, { san_email = "*@example.com" }]
require = [{ source_ip = "10.0.0.0/8" }]
exclude = [{ serial = "0A" }]
expressions = ["req.method == 'GET'"]
"#,
    )
    .unwrap();
    let rules = &config.endpoints[0].rules;
    let names: Vec<(&str, Action)> = rules.iter().map(|r| (r.name(), r.action())).collect();
    assert_eq!(
        names,
        [("health", Action::Bypass), ("admins", Action::Allow)]
    );
    assert_eq!(rules[1].parts().include.len(), 2);
    assert_eq!(
        rules[1].parts().include[0].to_string(),
        "common_name = \"ops-*\""
    );
}

#[test]
fn rule_mistakes_name_the_rule_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let error = load(
        dir.path(),
        r#"
[[endpoints]]
name = "raw"
kind = "tls"
upstream = 5432

[[endpoints.rules]]
name = "db"
paths = ["/x"]
action = "bypass"

[[endpoints.rules]]
action = "allow"
include = [{ source_ip = "10.0.0.0/33", common_name = "x" }, { valid_certificate = false }]
"#,
    )
    .unwrap_err();
    let lines: Vec<&str> = error.lines().collect();
    assert_eq!(
        lines,
        [
            "moat.toml: endpoints[0].rules: rules decide which client certificates pass, but the endpoint trusts no CA; give the CA file (mutual_tls_cas, --mutual-tls-cas)",
            "moat.toml: endpoints[0].rules[0] (\"db\").paths: a tls endpoint forwards a byte stream and sees no paths; remove paths (rules match the SNI host)",
            "moat.toml: endpoints[0].rules[0] (\"db\").action: \"bypass\" applies to http endpoints only: a tls endpoint demands a certificate at the handshake and refuses with access_denied; remove the rule or use an http endpoint",
            "moat.toml: endpoints[0].rules[1].name: missing; name the rule, e.g. name = \"admins\" (403 pages show it)",
            "moat.toml: endpoints[0].rules[1].include[0]: holds 2 keys; write one selector per table, e.g. { common_name = \"ops-*\" }",
            "moat.toml: endpoints[0].rules[1].include[1]: valid_certificate: only `true` is meaningful; to let clients without a certificate in, use a rule with action = \"bypass\"",
        ]
    );

    let error = load(
        dir.path(),
        "[[endpoints]]\nname = \"app\"\nkind = \"http\"\nupstream = 8080\nmutual_tls_cas = [\"cas.pem\"]\n\
         [[endpoints.rules]]\nname = \"open\"\naction = \"allow\"\n",
    )
    .unwrap_err();
    assert!(
        error.starts_with(
            "moat.toml: endpoints[0].rules[0] (\"open\"): an allow rule needs something to test"
        ),
        "{error}"
    );
}
