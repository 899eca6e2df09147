//! Which certificates, CAs and CRLs an endpoint uses, and when each runs out: the items the
//! telemetry's expiry gauges and warnings are made of, read from the endpoint's files.

use std::path::Path;

use moat_config::EndpointConfig;
use moat_pki::inspect::{Finding, inspect_bytes, inspect_file};
use moat_telemetry::expiry::{ExpiringItem, ItemKind};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The `file` label of a server certificate moat's local CA issued in memory.
pub const LOCAL_CA_FILE: &str = "local-ca";

/// Lists the server certificate chain, CAs and CRLs of `endpoint`. `issued_server_leaf` is the
/// certificate moat's local CA issued when the endpoint has no `crt`. Files are read again here
/// (the TLS setup already accepted them); one that cannot be read now is left out with a warning.
pub(crate) fn certificates_in_use(
    endpoint: &EndpointConfig,
    issued_server_leaf: Option<&CertificateDer<'_>>,
) -> Vec<ExpiringItem> {
    let mut items = Vec::new();
    match (&endpoint.crt, issued_server_leaf) {
        (Some(crt), _) => add_file(endpoint, ItemKind::Server, crt, &mut items),
        (None, Some(leaf)) => {
            if let Ok(findings) =
                inspect_bytes(LOCAL_CA_FILE, leaf.as_ref(), OffsetDateTime::now_utc())
            {
                add_findings(
                    endpoint,
                    ItemKind::Server,
                    LOCAL_CA_FILE,
                    findings,
                    &mut items,
                );
            }
        }
        (None, None) => {}
    }
    for ca in &endpoint.mutual_tls_cas {
        add_file(endpoint, ItemKind::Ca, ca, &mut items);
    }
    for crl in &endpoint.crls {
        add_file(endpoint, ItemKind::Crl, crl, &mut items);
    }
    items
}

/// Adds the certificates (or CRLs) of one file.
fn add_file(endpoint: &EndpointConfig, kind: ItemKind, path: &Path, items: &mut Vec<ExpiringItem>) {
    match inspect_file(path) {
        Ok(findings) => add_findings(endpoint, kind, &path.display().to_string(), findings, items),
        Err(error) => tracing::warn!(
            endpoint = %endpoint.name,
            %error,
            "cannot read the file to track its expiry"
        ),
    }
}

/// Adds the findings of `kind`: certificates for server and CA files, CRLs for CRL files.
fn add_findings(
    endpoint: &EndpointConfig,
    kind: ItemKind,
    file: &str,
    findings: Vec<Finding>,
    items: &mut Vec<ExpiringItem>,
) {
    for finding in findings {
        let (subject, time) = match (finding, kind) {
            (Finding::Certificate(report), ItemKind::Server | ItemKind::Ca) => {
                (report.subject, Some(report.not_after))
            }
            (Finding::Crl(report), ItemKind::Crl) => (report.issuer, report.next_update),
            _ => continue,
        };
        let Some(expires_at) = time.as_deref().and_then(unix_seconds) else {
            continue;
        };
        items.push(ExpiringItem {
            endpoint: endpoint.name.clone(),
            kind,
            subject,
            file: file.to_owned(),
            expires_at,
        });
    }
}

fn unix_seconds(rfc3339: &str) -> Option<i64> {
    OffsetDateTime::parse(rfc3339, &Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_certificate_issued_in_memory_is_tracked_under_local_ca() {
        let spec = moat_config::EndpointSpec {
            name: Some("app".into()),
            kind: Some("http".into()),
            upstream: Some("8080".into()),
            ..moat_config::EndpointSpec::default()
        };
        let config = moat_config::Config::from_specs(
            vec![spec],
            None,
            "test",
            moat_config::FieldStyle::Flags,
        )
        .unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        let not_after = OffsetDateTime::from_unix_timestamp(2_000_000_000).unwrap();
        params.not_after = not_after;
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = params.self_signed(&key).unwrap();
        let items = certificates_in_use(&config.endpoints[0], Some(leaf.der()));
        assert_eq!(
            items,
            [ExpiringItem {
                endpoint: "app".into(),
                kind: ItemKind::Server,
                subject: "CN=rcgen self signed cert".into(),
                file: LOCAL_CA_FILE.into(),
                expires_at: 2_000_000_000,
            }]
        );
    }
}
