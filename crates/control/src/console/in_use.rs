//! The server certificates, CAs and CRLs the edge's endpoints use now — agents' uploads
//! included — as the gateway reports them at start and after every reload.

use std::sync::Mutex;

use moat_telemetry::Event;
use moat_telemetry::expiry::ExpiringItem;
use serde_json::{Value, json};

use crate::times::rfc3339;

/// The last set the gateway reported.
#[derive(Debug, Default)]
pub(crate) struct InUse {
    items: Mutex<Vec<ExpiringItem>>,
}

impl InUse {
    /// Keeps the set of a [`Event::CertificatesInUse`], replacing the one before.
    pub fn record(&self, event: &Event<'_>) {
        if let Event::CertificatesInUse(items) = event {
            *self
                .items
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = items.to_vec();
        }
    }

    /// `{certificates: [{endpoint, kind, subject, not_after}]}`, soonest to expire first.
    pub fn snapshot(&self) -> Value {
        let mut items = self
            .items
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        items.sort_by(|a, b| {
            (a.expires_at, &a.endpoint, &a.subject).cmp(&(b.expires_at, &b.endpoint, &b.subject))
        });
        let certificates: Vec<Value> = items
            .iter()
            .map(|item| {
                json!({
                    "endpoint": item.endpoint,
                    "kind": item.kind.as_str(),
                    "subject": item.subject,
                    "not_after": rfc3339(item.expires_at),
                })
            })
            .collect();
        json!({ "certificates": certificates })
    }
}

#[cfg(test)]
mod tests {
    use moat_telemetry::expiry::ItemKind;

    use super::*;

    #[test]
    fn the_newest_set_replaces_the_last_and_shows_soonest_first() {
        let in_use = InUse::default();
        let item = |endpoint: &str, expires_at| ExpiringItem {
            endpoint: endpoint.to_owned(),
            kind: ItemKind::Ca,
            subject: "CN=Client CA".to_owned(),
            file: "cas.pem".to_owned(),
            expires_at,
        };
        in_use.record(&Event::CertificatesInUse(&[item("old", 0)]));
        in_use.record(&Event::CertificatesInUse(&[
            item("later", 2_000_000_000),
            item("sooner", 1_900_000_000),
        ]));
        let shown = in_use.snapshot();
        assert_eq!(shown["certificates"][0]["endpoint"], "sooner", "{shown}");
        assert_eq!(shown["certificates"][1]["endpoint"], "later", "{shown}");
        assert_eq!(shown["certificates"][0]["kind"], "ca");
        assert_eq!(shown["certificates"].as_array().unwrap().len(), 2);
    }
}
