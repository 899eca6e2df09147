//! The policy file of `moat http` reread on SIGHUP or when it changes, and kept when broken.

use crate::gateway_support;

use super::{Setup, get_as, replace};

use std::path::Path;

use gateway_support::{Moat, start_http_upstream};

/// A `--policy` file letting in only the client whose CN is `name`.
fn policy_allowing(name: &str) -> String {
    format!(
        "[[rules]]\nname = \"only-{name}\"\naction = \"allow\"\ninclude = [{{ common_name = \"{name}\" }}]\n"
    )
}

/// The status line of one GET as `name`.
fn status_as(dir: &Path, port: u16, name: &str) -> String {
    let response = get_as(dir, port, name).unwrap();
    response.lines().next().unwrap_or_default().to_owned()
}

/// `moat http --policy policy.toml EXTRA` letting in alice, and bob refused.
fn start_with_policy(setup: &Setup, extra: &[&str]) -> Moat {
    let path = setup.path();
    std::fs::write(path.join("policy.toml"), policy_allowing("alice")).unwrap();
    let upstream = start_http_upstream().to_string();
    let mut flags = vec!["--policy", "policy.toml"];
    flags.extend_from_slice(extra);
    let moat = Moat::serve_mtls(path, "http", &upstream, &flags);
    assert_eq!(status_as(path, moat.port(), "alice"), "HTTP/1.1 200 OK");
    assert_eq!(
        status_as(path, moat.port(), "bob"),
        "HTTP/1.1 403 Forbidden"
    );
    moat
}

/// After a reload that switched the policy from alice to bob.
fn assert_policy_switched_to_bob(path: &Path, moat: &Moat) {
    let log = moat.wait_for_log("reload complete");
    assert!(
        log.contains("reload: endpoint http: policy.toml changed"),
        "{log}"
    );
    // The rules are the file's change, not a change of the flags.
    assert!(!log.contains("configuration changed"), "{log}");
    assert_eq!(
        status_as(path, moat.port(), "alice"),
        "HTTP/1.1 403 Forbidden"
    );
    assert_eq!(status_as(path, moat.port(), "bob"), "HTTP/1.1 200 OK");
}

#[test]
fn sighup_rereads_the_policy_file_of_moat_http() {
    let setup = Setup::new();
    let path = setup.path();
    let moat = start_with_policy(&setup, &[]);
    replace(&path.join("policy.toml"), policy_allowing("bob"));
    moat.signal("HUP");
    assert_policy_switched_to_bob(path, &moat);
}

#[test]
fn watch_reloads_moat_http_when_its_policy_file_changes() {
    let setup = Setup::new();
    let path = setup.path();
    let moat = start_with_policy(&setup, &["--watch"]);
    replace(&path.join("policy.toml"), policy_allowing("bob"));
    assert_policy_switched_to_bob(path, &moat);
    let log = moat.log();
    assert!(log.contains("trigger=\"--watch: policy.toml\""), "{log}");
}

#[test]
fn a_broken_policy_file_on_reload_keeps_the_old_rules() {
    let setup = Setup::new();
    let path = setup.path();
    let moat = start_with_policy(&setup, &[]);
    replace(
        &path.join("policy.toml"),
        "[[rules]]\nname = \"typo\"\naction = \"allow\"\ninclude = [{ commonname = \"bob\" }]\n",
    );
    moat.signal("HUP");
    let log = moat.wait_for_log("reload failed");
    let failure: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("reload failed"))
        .collect();
    assert_eq!(failure.len(), 1, "{log}");
    assert!(
        failure[0].contains(
            "reload failed, still serving the previous configuration: moat http: --policy \
             policy.toml: rules[0] (\"typo\").include[0]: unknown selector \"commonname\""
        ),
        "{log}"
    );
    assert_eq!(status_as(path, moat.port(), "alice"), "HTTP/1.1 200 OK");
    assert_eq!(
        status_as(path, moat.port(), "bob"),
        "HTTP/1.1 403 Forbidden"
    );
}
