//! Whether a request may reach the upstream at all; the one place a later access policy replaces.

use moat_policy::{HttpRequest, PolicyDecision, Request, Rule};
use moat_trust::CaBundle;

use super::forward::CheckedHead;
use super::pages::Refusal;
use crate::access;
use crate::connection::ConnectionInfo;

/// Asks the endpoint's access rules about one request, judged by its canonical path and
/// checked host: `Ok(decision)` when it may go upstream,
/// the 403 refusal naming the rule otherwise. The decision is logged when it refuses, with the
/// detail (which selector failed) that the page leaves out.
pub(super) fn admit_by_policy<B>(
    rules: &[Rule],
    client_cas: Option<&CaBundle>,
    info: &ConnectionInfo,
    request: &http::Request<B>,
    head: &CheckedHead,
) -> Result<PolicyDecision, Refusal> {
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
    let client = info
        .client
        .as_deref()
        .map(|identity| access::client(identity, client_cas));
    let decision = moat_policy::evaluate(rules, &facts, client.as_ref());
    if decision.is_allowed() {
        Ok(decision)
    } else {
        tracing::info!(
            endpoint = %info.endpoint,
            rule = decision.rule.as_deref().unwrap_or("-"),
            detail = %decision.explanation,
            "request refused by the access policy"
        );
        Err(Refusal::Policy(Box::new(decision)))
    }
}

/// Lets a request through when the endpoint does not ask for client certificates
/// (`asks_for_certificate` is false: no `mutual_tls_cas`), or when the client presented a verified
/// one. In `request` mode the handshake lets certificate-less clients in so that this answer can
/// be a readable 403 page instead of a TLS alert; under `require-and-verify` the handshake already
/// refused them, and refusing here too keeps such a connection from slipping through.
pub(super) fn admit(
    asks_for_certificate: bool,
    has_client_certificate: bool,
) -> Result<(), Refusal> {
    if !asks_for_certificate || has_client_certificate {
        Ok(())
    } else {
        Err(Refusal::ClientCertificateRequired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_without_certificate_is_refused_and_with_one_admitted() {
        assert_eq!(admit(true, false), Err(Refusal::ClientCertificateRequired));
        assert_eq!(admit(true, true), Ok(()));
    }

    #[test]
    fn endpoint_without_client_cas_admits_everyone() {
        assert_eq!(admit(false, false), Ok(()));
    }
}
