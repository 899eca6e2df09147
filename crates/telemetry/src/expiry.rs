//! When the server certificates, CAs and CRLs in use run out: gauges for alerting, and a log
//! warning for anything that expires within [`EXPIRY_WARNING_WINDOW`].

use std::time::Duration;

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
