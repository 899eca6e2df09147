//! Joining: the agent CA signs the CSR as a client certificate, records it, and binds the grant.

use std::path::Path;
use std::process::Command;

use moat_edge::{AgentCaError, EdgeState, JoinError, RedeemError};
use rcgen::SanType;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

use crate::support::{NOW, assert_private, csr, edge, identity, join_as, token};

/// Runs openssl with `args` in `dir`: (succeeded, stdout and stderr).
fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// `openssl verify -purpose sslclient` of `certificate_pem` against `ca_pem`: (passed, output).
fn openssl_verify(dir: &Path, ca_pem: &str, certificate_pem: &str) -> (bool, String) {
    std::fs::write(dir.join("ca.pem"), ca_pem).expect("write the CA");
    std::fs::write(dir.join("agent.pem"), certificate_pem).expect("write the certificate");
    let args = [
        "verify",
        "-purpose",
        "sslclient",
        "-CAfile",
        "ca.pem",
        "agent.pem",
    ];
    openssl(dir, &args)
}

/// The subject, extended key usages and SANs of a certificate, as openssl prints them.
fn openssl_show(dir: &Path, certificate_pem: &str) -> String {
    std::fs::write(dir.join("show.pem"), certificate_pem).expect("write the certificate");
    let args = [
        "x509",
        "-in",
        "show.pem",
        "-noout",
        "-subject",
        "-ext",
        "extendedKeyUsage,subjectAltName",
    ];
    openssl(dir, &args).1
}

#[tokio::test]
async fn a_joined_agent_gets_a_client_certificate_the_ledger_lists_and_its_grant() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let scratch = tempfile::tempdir().expect("temporary directory");
    let edge = edge(dir.path()).await;
    let key = dir.path().join("agent-ca/ca.key");
    assert_private(&key);

    let made = token(&edge).await;
    // The CSR asks for more than a name; the edge gives it only the name.
    let asked = csr(
        "laptop",
        vec![SanType::DnsName(
            "b.example.com".try_into().expect("a name"),
        )],
        Some("Admins"),
    );
    let joined = edge
        .join(&made.to_text(), asked.as_bytes(), NOW)
        .await
        .expect("joins");
    assert_eq!(joined.agent_name.as_str(), "laptop");
    assert_eq!(joined.grant, made.grant);

    let (ok, output) = openssl_verify(scratch.path(), &joined.ca_pem, &joined.certificate_pem);
    assert!(ok, "{output}");
    let shown = openssl_show(scratch.path(), &joined.certificate_pem);
    assert!(
        shown.contains("subject=CN=laptop\n") || shown.contains("subject=CN = laptop\n"),
        "{shown}"
    );
    assert!(shown.contains("TLS Web Client Authentication"), "{shown}");
    assert!(!shown.contains("Server Authentication"), "{shown}");
    assert!(
        !shown.contains("b.example.com"),
        "no SAN from the CSR: {shown}"
    );

    let ledger: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("agent-ca/ledger.json")).expect("ledger"),
    )
    .expect("JSON");
    let entries = ledger["certificates"].as_array().expect("certificates");
    assert!(
        entries
            .iter()
            .any(|entry| entry["serial"] == joined.serial.as_str()
                && entry["subject"] == "CN=laptop"
                && entry["profile"] == "client"),
        "{ledger}"
    );

    // The bound grant is what the edge checks on later connections.
    let grants = moat_edge::Grants::new(Vec::new()).with(
        edge.store()
            .control_state()
            .await
            .expect("the store")
            .grants
            .iter()
            .map(|row| moat_edge::Grant::from_row(row).expect("a grant")),
    );
    let laptop = identity("laptop", &[]);
    grants
        .permit(&laptop, "app.a.example.com")
        .expect("granted");
    let refusal = grants
        .permit(&laptop, "b.example.com")
        .expect_err("not granted");
    assert_eq!(refusal.allowed, vec!["*.a.example.com".to_owned()]);
    let joined_row = edge
        .store()
        .joined_agent("laptop")
        .await
        .expect("the store")
        .expect("the join is recorded");
    assert_eq!(joined_row.token_id, made.id.as_str());
    assert_eq!(joined_row.serial, joined.serial);
    assert_private(&dir.path().join("store.db"));

    // The token is spent.
    let error = join_as(&edge, &made.to_text(), "laptop-2", NOW)
        .await
        .expect_err("second join");
    assert!(
        matches!(error, JoinError::Redeem(RedeemError::AlreadyUsed { .. })),
        "{error:?}"
    );
}

#[tokio::test]
async fn the_lifetime_is_ninety_days_unless_configured() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let edge = edge(dir.path()).await;
    let joined = edge
        .join(
            &token_at(&edge, now).await,
            csr("", vec![], None).as_bytes(),
            now,
        )
        .await
        .expect("joins");
    assert!(
        joined.agent_name.as_str().starts_with("agent-"),
        "{}",
        joined.agent_name
    );
    let days = days_left(&joined.certificate_pem);
    assert!((89..=90).contains(&days), "{days} days");

    let edge = EdgeState::open(dir.path(), None, crate::support::store(dir.path()).await)
        .await
        .expect("reopens")
        .with_agent_lifetime(std::time::Duration::from_secs(7 * 86_400));
    let joined = edge
        .join(
            &token_at(&edge, now).await,
            csr("short", vec![], None).as_bytes(),
            now,
        )
        .await
        .expect("joins");
    let days = days_left(&joined.certificate_pem);
    assert!((6..=7).contains(&days), "{days} days");
}

async fn token_at(edge: &EdgeState, now: u64) -> String {
    edge.new_token(
        "127.0.0.1:4443",
        Vec::new(),
        std::time::Duration::from_secs(60),
        now,
    )
    .await
    .expect("a token")
    .0
    .to_text()
}

fn days_left(certificate_pem: &str) -> i64 {
    let der = CertificateDer::from_pem_slice(certificate_pem.as_bytes()).expect("PEM");
    let identity = moat_trust::ClientIdentity::from_chain(&[der]).expect("an identity");
    (identity.not_after - identity.not_before) / 86_400
}

#[tokio::test]
async fn a_bad_name_is_refused_naming_the_rule_and_the_token_stays_unused() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let edge = edge(dir.path()).await;
    let made = token(&edge).await;
    for bad in [
        "my laptop",
        "-laptop",
        &"a".repeat(64),
        "laptop.example.com",
    ] {
        let error = edge
            .join(&made.to_text(), csr(bad, vec![], None).as_bytes(), NOW)
            .await
            .expect_err(bad);
        assert!(matches!(error, JoinError::Name(_)), "{bad}: {error:?}");
        assert!(
            error.to_string().contains("1 to 63 letters, digits or '-'"),
            "{error}"
        );
    }
    join_as(&edge, &made.to_text(), "laptop", NOW)
        .await
        .expect("the token still works");
}

#[tokio::test]
async fn a_taken_name_is_refused_before_signing() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let edge = edge(dir.path()).await;
    join_as(&edge, &token(&edge).await.to_text(), "laptop", NOW)
        .await
        .expect("first laptop");
    let second = token(&edge).await;
    let error = join_as(&edge, &second.to_text(), "LAPTOP", NOW)
        .await
        .expect_err("same name");
    assert!(matches!(error, JoinError::NameTaken { .. }), "{error:?}");
    // Refused before signing: the ledger holds one agent certificate; the token is unused.
    let ledger = std::fs::read_to_string(dir.path().join("agent-ca/ledger.json")).expect("ledger");
    assert_eq!(ledger.matches("CN=laptop").count(), 1, "{ledger}");
    join_as(&edge, &second.to_text(), "desktop", NOW)
        .await
        .expect("the token still works");
}

#[tokio::test]
async fn with_agent_cas_no_ca_is_made_and_joining_is_refused() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let cas = dir.path().join("agents.pem");
    let edge = EdgeState::open(
        dir.path(),
        Some(&cas),
        crate::support::store(dir.path()).await,
    )
    .await
    .expect("opens");
    assert!(!dir.path().join("agent-ca").exists(), "no CA made");

    let error = edge
        .new_token(
            "edge.example.com:4443",
            Vec::new(),
            std::time::Duration::from_secs(60),
            NOW,
        )
        .await
        .expect_err("no tokens");
    assert!(
        matches!(
            error,
            JoinError::AgentCa(AgentCaError::JoinUnavailable { .. })
        ),
        "{error:?}"
    );

    // A token made by this edge before it was given --agent-cas.
    let before = tempfile::tempdir().expect("temporary directory");
    let text = token(&crate::support::edge(before.path()).await)
        .await
        .to_text();
    let error = join_as(&edge, &text, "laptop", NOW)
        .await
        .expect_err("joining unavailable");
    assert!(
        matches!(
            error,
            JoinError::AgentCa(AgentCaError::JoinUnavailable { .. })
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("{}: ", cas.display())),
        "{message}"
    );
    assert!(
        message.contains("joining with a token is unavailable"),
        "{message}"
    );
}
