//! Whether a request may reach the upstream: the gateway's one admission decision
//! ([`moat_policy::admit_request`]) over the connection's facts, as a 403 refusal when not.

use moat_policy::{Admission, HttpRequest, Request, Rule, admit_request};
use moat_trust::CaBundle;

use super::forward::CheckedHead;
use super::pages::Refusal;
use moat_telemetry::ConnectionInfo;

/// The endpoint's admission settings, as the proxy holds them.
pub(super) struct Admitter<'a> {
    /// Access rules; when there are any, they decide.
    pub rules: &'a [Rule],
    /// True when the endpoint trusts CAs for client certificates (so a client must present one
    /// when there are no rules).
    pub asks_for_certificate: bool,
    /// The client CAs, for rules naming a CA file.
    pub client_cas: Option<&'a CaBundle>,
}

impl Admitter<'_> {
    /// `Ok(rule that decided)` when the request, judged by its canonical path and checked host,
    /// may go upstream; the 403 refusal otherwise, logged with the detail (which selector
    /// failed) that the page leaves out.
    pub(super) fn admit<B>(
        &self,
        info: &ConnectionInfo,
        request: &http::Request<B>,
        head: &CheckedHead,
    ) -> Result<Option<String>, Refusal> {
        let facts = Request {
            source_ip: info.peer_addr.ip(),
            source_port: info.peer_addr.port(),
            server: Some(info.local_addr),
            sni: info.sni.as_deref(),
            tls_version: Some(info.tls_version),
            http: Some(HttpRequest {
                method: request.method().as_str(),
                host: head.host.as_deref(),
                path: head.target.path(),
                query: head.target.query(),
                headers: Some(request.headers()),
            }),
        };
        match admit_request(
            self.rules,
            self.asks_for_certificate,
            self.client_cas,
            &facts,
            info.client.as_deref(),
        ) {
            Admission::Admitted(decision) => Ok(decision.and_then(|decision| decision.rule)),
            Admission::CertificateRequired => Err(Refusal::ClientCertificateRequired),
            Admission::Refused(decision) => {
                tracing::info!(
                    endpoint = %info.endpoint,
                    rule = decision.rule.as_deref().unwrap_or("-"),
                    detail = %decision.explanation,
                    "request refused by the access policy"
                );
                Err(Refusal::Policy(Box::new(decision)))
            }
        }
    }
}
