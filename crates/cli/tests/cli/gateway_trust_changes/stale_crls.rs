//! Stale CRLs (nextUpdate passed): logged at load; `--crl-expired refuse` refuses their clients.

use crate::gateway_support;

use super::{Setup, get_as, replace};

use gateway_support::{Moat, start_http_upstream};

/// `moat http` with a CRL of CA A whose nextUpdate passed yesterday.
fn start_with_stale_crl(setup: &Setup, extra: &[&str]) -> Moat {
    let path = setup.path();
    let yesterday = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    std::fs::write(
        path.join("stale.crl"),
        setup.ca_a.crl_until(&[], yesterday).0,
    )
    .unwrap();
    let upstream = start_http_upstream().to_string();
    let args = [&["--crl", "stale.crl"][..], extra].concat();
    Moat::serve_mtls(path, "http", &upstream, &args)
}

#[test]
fn a_stale_crl_is_logged_at_load_and_by_default_its_clients_still_pass() {
    let setup = Setup::new();
    let moat = start_with_stale_crl(&setup, &[]);
    let log = moat.wait_for_log("CRL is past its nextUpdate");
    let line = log
        .lines()
        .find(|line| line.contains("CRL is past its nextUpdate"))
        .unwrap();
    assert!(
        line.contains("ERROR") && line.contains("stale.crl"),
        "{line}"
    );
    assert!(line.contains("crl_expired = \"warn\""), "{line}");
    assert!(
        get_as(setup.path(), moat.port(), "alice")
            .unwrap()
            .starts_with("HTTP/1.1 200")
    );
}

#[test]
fn crl_expired_refuse_refuses_the_clients_of_that_ca_with_unknown_ca() {
    let setup = Setup::new();
    let moat = start_with_stale_crl(&setup, &["--crl-expired", "refuse"]);
    let port = moat.port();
    assert_eq!(
        get_as(setup.path(), port, "alice").unwrap_err(),
        rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA)
    );
    // CA B has no stale CRL, so its clients pass.
    assert!(
        get_as(setup.path(), port, "bob")
            .unwrap()
            .starts_with("HTTP/1.1 200")
    );

    // A fresh CRL and a SIGHUP (moat http re-reads the files its flags name) let them back in.
    replace(&setup.path().join("stale.crl"), setup.ca_a.crl(&[]).0);
    moat.signal("HUP");
    let log = moat.wait_for_log("reload complete");
    assert!(log.contains("stale.crl changed"), "{log}");
    assert!(
        get_as(setup.path(), port, "alice")
            .unwrap()
            .starts_with("HTTP/1.1 200")
    );
}
