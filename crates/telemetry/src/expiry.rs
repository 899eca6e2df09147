//! When the server certificates, CAs and CRLs in use run out: gauges for alerting, and a log
//! warning for anything that expires within [`EXPIRY_WARNING_WINDOW`].

use std::path::Path;
use std::time::Duration;

use moat_config::EndpointConfig;
use moat_pki::inspect::{Finding, inspect_bytes, inspect_file};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// How far ahead startup and reloads warn about expiring certificates, CAs and CRLs.
pub const EXPIRY_WARNING_WINDOW: Duration = Duration::from_secs(14 * 24 * 60 * 60);

/// What an expiring item is, as the `kind` label names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ItemKind {
    /// The endpoint's server certificate or one of its intermediates.
    Server,
    /// A CA trusted for client certificates.
    Ca,
    /// A CRL; it "expires" at its nextUpdate.
    Crl,
}

impl ItemKind {
    /// `server`, `ca` or `crl`.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::Server => "server",
            ItemKind::Ca => "ca",
            ItemKind::Crl => "crl",
        }
    }
}

/// One certificate or CRL an endpoint uses, and when it runs out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiringItem {
    /// The endpoint using it.
    pub endpoint: String,
    /// Server certificate, CA or CRL.
    pub kind: ItemKind,
    /// The certificate's subject, or the CRL's issuer.
    pub subject: String,
    /// The file it was read from (`local-ca` for a certificate moat issued itself).
    pub file: String,
    /// notAfter (nextUpdate for a CRL), Unix seconds.
    pub expires_at: i64,
}

/// The `file` label of a server certificate moat's local CA issued in memory.
pub const LOCAL_CA_FILE: &str = "local-ca";

/// Lists the server certificate chain, CAs and CRLs of `endpoint`. `issued_server_leaf` is the
/// certificate moat's local CA issued when the endpoint has no `crt`. Files are read again here
/// (the TLS setup already accepted them); one that cannot be read now is left out with a warning.
pub fn certificates_in_use(
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

/// Logs a warning for every item that runs out within `window` of `now` (or already has), and
/// returns those items. Called at startup and after every reload.
pub fn warn_expiring(
    items: &[ExpiringItem],
    now: OffsetDateTime,
    window: Duration,
) -> Vec<ExpiringItem> {
    let now_secs = now.unix_timestamp();
    let horizon = now_secs.saturating_add(i64::try_from(window.as_secs()).unwrap_or(i64::MAX));
    let expiring: Vec<ExpiringItem> = items
        .iter()
        .filter(|item| item.expires_at <= horizon)
        .cloned()
        .collect();
    for item in &expiring {
        let when = OffsetDateTime::from_unix_timestamp(item.expires_at)
            .ok()
            .and_then(|time| time.format(&Rfc3339).ok())
            .unwrap_or_default();
        let days_left = (item.expires_at - now_secs).div_euclid(86_400);
        let (what, fix) = match item.kind {
            ItemKind::Server => ("server certificate", "renew it and reload moat"),
            ItemKind::Ca => (
                "CA certificate",
                "renew the CA and add the new one to the bundle",
            ),
            ItemKind::Crl => (
                "CRL (nextUpdate)",
                "publish a fresh CRL (moat pki crl) and reload moat",
            ),
        };
        if item.expires_at <= now_secs {
            tracing::warn!(
                endpoint = %item.endpoint,
                kind = item.kind.as_str(),
                subject = %item.subject,
                file = %item.file,
                expires = %when,
                "{what} has expired; {fix}"
            );
        } else {
            tracing::warn!(
                endpoint = %item.endpoint,
                kind = item.kind.as_str(),
                subject = %item.subject,
                file = %item.file,
                expires = %when,
                days_left,
                "{what} expires within 14 days; {fix}"
            );
        }
    }
    expiring
}

fn unix_seconds(rfc3339: &str) -> Option<i64> {
    OffsetDateTime::parse(rfc3339, &Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(kind: ItemKind, expires_at: i64) -> ExpiringItem {
        ExpiringItem {
            endpoint: "app".into(),
            kind,
            subject: "CN=x".into(),
            file: "x.pem".into(),
            expires_at,
        }
    }

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

    #[test]
    fn only_items_inside_the_window_are_reported() {
        let now = OffsetDateTime::from_unix_timestamp(1_000_000_000).unwrap();
        let day = 86_400;
        let items = [
            item(ItemKind::Server, 1_000_000_000 + 13 * day),
            item(ItemKind::Ca, 1_000_000_000 + 15 * day),
            item(ItemKind::Crl, 1_000_000_000 - day),
        ];
        let expiring = warn_expiring(&items, now, EXPIRY_WARNING_WINDOW);
        let kinds: Vec<ItemKind> = expiring.iter().map(|item| item.kind).collect();
        assert_eq!(kinds, [ItemKind::Server, ItemKind::Crl]);
    }
}
