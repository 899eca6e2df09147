//! Validation of the operating keys: shared addresses, CA hints, stale CRLs, PROXY protocol.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::error::FieldError;
use crate::model::{
    CrlExpiredPolicy, EndpointConfig, EndpointKind, ProxyProtocolVersion, UpstreamProtocol,
};
use crate::problems::{FieldStyle, Problems};
use crate::spec::EndpointSpec;

/// The validated operating keys of one endpoint that need more than a default.
#[derive(Clone, Copy)]
pub(crate) struct Operations {
    pub(crate) crl_expired: CrlExpiredPolicy,
    pub(crate) upstream_proxy_protocol: Option<ProxyProtocolVersion>,
    pub(crate) upstream_protocol: UpstreamProtocol,
}

/// Checks `crl_expired`, `upstream_proxy_protocol` and `upstream_protocol`; `None` when one is
/// wrong.
pub(crate) fn validate(
    spec: &EndpointSpec,
    kind: Option<EndpointKind>,
    problems: &mut Problems<'_>,
) -> Option<Operations> {
    let crl_expired = match spec.crl_expired.as_deref() {
        None | Some("warn") => Some(CrlExpiredPolicy::Warn),
        Some("refuse") => Some(CrlExpiredPolicy::Refuse),
        Some(other) => {
            problems.push(
                "crl_expired",
                format!("{other:?} is not a policy for expired CRLs; use \"warn\" or \"refuse\""),
            );
            None
        }
    };
    if spec.crl_expired.is_some() && spec.crls.is_empty() {
        problems.push(
            "crl_expired",
            "applies to revocation lists, and none is given; add crls (--crl) or remove it",
        );
    }
    if spec.ca_hints.is_some() && spec.mutual_tls_cas.is_empty() {
        problems.push(
            "ca_hints",
            "names the CAs of client certificates, and none is given; add mutual_tls_cas \
             (--mutual-tls-cas) or remove it",
        );
    }
    let upstream_proxy_protocol = match (spec.upstream_proxy_protocol.as_deref(), kind) {
        (None, _) => Some(None),
        // The HTTP proxy pools upstream connections across clients, so a header naming one
        // client at the start of a connection would be wrong for the next request on it.
        (Some(_), Some(EndpointKind::Http)) => {
            problems.push(
                "upstream_proxy_protocol",
                "applies to tls endpoints only: an http endpoint shares upstream connections \
                 between clients and tells the upstream who connected in the X-Forwarded-For, \
                 Forwarded and Client-Cert headers instead; remove it",
            );
            None
        }
        (Some("1"), _) => Some(Some(ProxyProtocolVersion::V1)),
        (Some("2"), _) => Some(Some(ProxyProtocolVersion::V2)),
        (Some(other), _) => {
            problems.push(
                "upstream_proxy_protocol",
                format!("{other:?} is not a PROXY protocol version; use 1 or 2"),
            );
            None
        }
    };
    let upstream_protocol = match (spec.upstream_protocol.as_deref(), kind) {
        (None, _) => Some(UpstreamProtocol::Auto),
        (Some(_), Some(EndpointKind::Tls)) => {
            problems.push(
                "upstream_protocol",
                "applies to http endpoints only: a tls endpoint passes the client's bytes to the \
                 upstream as they come, whatever protocol they carry; remove it",
            );
            None
        }
        (Some(text), _) => {
            let parsed = UpstreamProtocol::parse(text);
            if parsed.is_none() {
                problems.push(
                    "upstream_protocol",
                    format!(
                        "{text:?} is not an upstream protocol; use \"auto\", \"http1\" or \"http2\""
                    ),
                );
            }
            parsed
        }
    };
    Some(Operations {
        crl_expired: crl_expired?,
        upstream_proxy_protocol: upstream_proxy_protocol?,
        upstream_protocol: upstream_protocol?,
    })
}

/// Endpoints may share a listen address when the SNI tells them apart: their domains must
/// differ and at most one may be the `default` for clients without SNI. Port 0 asks for a fresh
/// port per endpoint, so such addresses are never shared.
pub(crate) fn check_shared_addresses(
    endpoints: &[EndpointConfig],
    indices: &[usize],
    style: FieldStyle,
    list: &mut Vec<FieldError>,
) {
    let mut domains: HashMap<(SocketAddr, String), usize> = HashMap::new();
    let mut defaults: HashMap<SocketAddr, usize> = HashMap::new();
    for (endpoint, &index) in endpoints.iter().zip(indices) {
        // A published endpoint does not listen: the edge serves it.
        if endpoint.listen.port() == 0 || endpoint.publish {
            continue;
        }
        let mut problems = Problems { style, index, list };
        let key = (endpoint.listen, endpoint.domain.to_ascii_lowercase());
        if let Some(first) = domains.insert(key, index) {
            problems.push(
                "domain",
                format!(
                    "{:?} is already served on {} by endpoints[{first}]; endpoints sharing a listen \
                     address are told apart by SNI, so give each its own domain (or its own port)",
                    endpoint.domain, endpoint.listen
                ),
            );
        }
        if endpoint.default
            && let Some(first) = defaults.insert(endpoint.listen, index)
        {
            problems.push(
                "default",
                format!(
                    "endpoints[{first}] is already the default on {}; only one endpoint per \
                     address may take clients without SNI",
                    endpoint.listen
                ),
            );
        }
    }
}
